"""Finding the board's serial port with pyserial's ``list_ports``."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import PokedexError

# USB-serial bridges found on Sipeed K210 boards (VID, PID): name.
KNOWN_BRIDGES = {
    (0x0403, 0x6010): "FT2232 / CH552 (Maix Bit, Maix Dock, Maixduino)",
    (0x1A86, 0x7523): "CH340 (older Maix boards)",
    (0x1A86, 0x55D4): "CH9102",
    (0x0403, 0x6001): "FT232R",
    (0x10C4, 0xEA60): "CP210x",
}


@dataclass(frozen=True)
class Port:
    device: str
    description: str
    vid: int | None
    pid: int | None
    interface: str | None = None

    @property
    def bridge(self) -> str | None:
        return KNOWN_BRIDGES.get((self.vid, self.pid)) if self.vid is not None else None


def list_ports() -> list[Port]:
    from serial.tools import list_ports as lp

    return [Port(p.device, p.description or "", p.vid, p.pid, getattr(p, "interface", None)) for p in lp.comports()]


def pick_port(requested: str | None, ports: list[Port] | None = None) -> str:
    if requested:
        return requested
    ports = list_ports() if ports is None else ports
    boards = [p for p in ports if p.bridge]
    # an FT2232-style bridge shows two ports; the K210's UART is the first (lowest device name)
    if boards and all((p.vid, p.pid) == (0x0403, 0x6010) for p in boards) and len(boards) == 2:
        boards = sorted(boards, key=lambda p: p.device)[:1]
    if len(boards) == 1:
        return boards[0].device
    listing = (
        "\n".join(f"    {p.device}: {p.description}" + (f" [{p.bridge}]" if p.bridge else "") for p in ports)
        or "    (no serial ports at all)"
    )
    if not boards:
        raise PokedexError(
            "no Maix board found on any serial port:\n" + listing,
            "plug the board in with a data (not charge-only) USB cable, check the driver (CH340/FTDI), or pass --port",
        )
    raise PokedexError("several possible boards; say which with --port:\n" + listing, "pass --port DEVICE")
