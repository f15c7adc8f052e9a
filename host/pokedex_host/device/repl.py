"""Copying files onto the board over the MicroPython raw REPL (the way mpremote does it),
written on the :mod:`.transport` interface, so no IDE is needed.

Raw REPL: Ctrl-C twice stops the running program, Ctrl-A enters raw mode (the board answers
``raw REPL; CTRL-B to exit\\r\\n>``), code is sent and Ctrl-D runs it (``OK``, the output, ``\\x04``,
the error output, ``\\x04``, ``>``), Ctrl-B leaves raw mode, Ctrl-D in normal mode soft-resets.
"""

from __future__ import annotations

import time
from pathlib import Path

from .transport import Transport, TransportError

CHUNK = 256  # bytes of file data per w(...) call: small enough for MaixPy's GC heap


class ReplExecError(TransportError):
    """Code run on the board raised; carries the board's traceback."""


class RawRepl:
    def __init__(self, t: Transport, timeout: float = 10.0):
        self.t = t
        self.timeout = timeout
        self.in_raw = False
        self.pending = bytearray()

    def _read_until(self, ending: bytes, timeout: float | None = None) -> bytes:
        """Bytes up to and including ``ending``; what came after stays for the next read."""
        end = time.monotonic() + (timeout or self.timeout)
        while True:
            i = self.pending.find(ending)
            if i >= 0:
                out = bytes(self.pending[: i + len(ending)])
                del self.pending[: i + len(ending)]
                return out
            if time.monotonic() > end:
                raise TransportError(
                    f"{self.t.name}: timed out waiting for {ending!r} (got {bytes(self.pending[-60:])!r})",
                    "is a MicroPython board on this port? Close any serial monitor or IDE.",
                )
            self.pending += self.t.read(1024, 0.05)

    def enter(self) -> None:
        self.t.write(b"\r\x03\x03")
        time.sleep(0.1)
        self.t.drain_input()
        self.pending.clear()
        self.t.write(b"\r\x01")
        self._read_until(b"raw REPL; CTRL-B to exit\r\n>")
        self.in_raw = True

    def banner(self) -> str:
        """The firmware's banner line (``MicroPython <git tag> on <build date>; <board> with <mcu>``):
        Ctrl-C twice stops a running program, Ctrl-B leaves the raw REPL or restarts the friendly
        one, and either prints the banner before its ``>>> ``."""
        self.t.write(b"\r\x03\x03")
        time.sleep(0.1)
        self.t.drain_input()
        self.pending.clear()
        self.t.write(b"\x02")
        self.in_raw = False
        text = self._read_until(b">>> ").decode("utf-8", "replace")
        for line in text.splitlines():
            if line.startswith("MicroPython "):
                return line.strip()
        raise TransportError(
            f"{self.t.name}: no MicroPython banner after Ctrl-B (got {text[-80:]!r})",
            "is a MicroPython board on this port? Close any serial monitor or IDE.",
        )

    def exit(self) -> None:
        self.t.write(b"\r\x02")
        self.in_raw = False

    def exec(self, code: str, timeout: float | None = None) -> bytes:
        if not self.in_raw:
            self.enter()
        data = code.encode("utf-8")
        for i in range(0, len(data), 256):
            self.t.write(data[i : i + 256])
        self.t.write(b"\x04")
        ok = self._read_until(b"OK", timeout)
        if not ok.endswith(b"OK"):
            raise TransportError(f"{self.t.name}: raw REPL did not accept the code: {ok!r}")
        out = self._read_until(b"\x04", timeout)[:-1]
        err = self._read_until(b"\x04", timeout)[:-1]
        self._read_until(b">", timeout)
        if err:
            raise ReplExecError(f"{self.t.name}: the board raised: {err.decode('utf-8', 'replace').strip()}")
        return out

    def put(self, local: Path, remote: str, progress=None) -> int:
        data = Path(local).read_bytes()
        try:
            self.exec(f"f=open({remote!r},'wb')\nw=f.write")
            for i in range(0, len(data), CHUNK):
                self.exec(f"w({data[i : i + CHUNK]!r})")
                if progress:
                    progress(min(i + CHUNK, len(data)), len(data))
            self.exec("f.close()")
        except ReplExecError as e:
            from ..errors import PokedexError

            folder = remote.rsplit("/", 1)[0] or "/"
            raise PokedexError(
                f"copying {local} to {remote} failed: {e.message}",
                f"check that {folder} exists on the board (an SD card for /sd), then run install again",
            ) from e
        except TransportError as e:  # the port went away (cable pulled, board reset into the bootloader)
            from ..errors import PokedexError

            raise PokedexError(
                f"copying {local} to {remote} stopped: {e.message}",
                "plug the board back in and run install again (it copies every file again)",
            ) from e
        return len(data)

    def size(self, remote: str) -> int:
        out = self.exec(f"import os\nprint(os.stat({remote!r})[6])")
        return int(out.strip())
