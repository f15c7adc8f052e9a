"""Everything that talks to a board, in one place (the host side of the wire):

transport.py    a byte pipe (serial port, or the emulator's pty) with timeouts
protocol.py     the bench wire protocol: frames, CRC, message types (docs/specs/wire-protocol.md)
client.py       the bench protocol's host end (HELLO, uploads, results)
repl.py         MicroPython's raw REPL (install copies files with it)
probe.py        ``pokedex-host probe``: which firmware, how much memory, which profile
ports.py        which serial port is the board
kfpkg.py        .kfpkg packages (flash-list.json + images)
flash_plan.py   what goes where in flash, checked against the board profile
flasher.py      kflash, with the profile's baud rates
harness.py      the bench loop: resumable, one result per image
bench.py        ``pokedex-host bench`` (a board, or the emulated one behind a pty)
bench_report.py the bench's report: device vs host reference
"""
