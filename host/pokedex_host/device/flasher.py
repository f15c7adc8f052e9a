"""Running kflash (the PyPI package) with baud fallback and errors a user can act on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import PokedexError

# (substring of kflash's error, what it means, what to try)
KNOWN_FAILURES = [
    (
        "Failed to Connect to K210's Stub",
        "the link dropped when kflash switched to the high baud rate",
        "a lower --baud (115200 always works; CH552-based boards fail at >= 1 Mbaud)",
    ),
    (
        "Greeting fail",
        "the board did not answer on this port",
        "check --port, that no serial monitor holds the port, the USB cable, and the driver",
    ),
    (
        "recv unknown op",
        "something else answered on this port",
        "this is probably not the K210's port: try the other port of the pair, or --port",
    ),
    (
        "Permission denied",
        "no permission to open the serial port",
        "add yourself to the dialout (Linux) group, or run with access to the port",
    ),
    (
        "could not open port",
        "the serial port cannot be opened",
        "check --port and that no other program (IDE, screen, minicom) has it open",
    ),
    ("invalid choice", "kflash does not know this board type", "check `kflash_board` in the board profile"),
]


@dataclass(frozen=True)
class FlashAttempt:
    baud: int
    ok: bool
    error: str | None = None


def explain(message: str) -> tuple[str, str] | None:
    for needle, meaning, fix in KNOWN_FAILURES:
        if needle.lower() in message.lower():
            return meaning, fix
    return None


def kflash_command(port: str, baud: int, board: str, file: Path) -> list[str]:
    """The equivalent kflash command line (what --dry-run prints)."""
    return ["kflash", "-p", port, "-b", str(baud), "-B", board, str(file)]


def run_kflash(port: str, baud: int, board: str, file: Path) -> None:
    from kflash import KFlash  # type: ignore

    KFlash().process(terminal=False, dev=port, baudrate=baud, board=board, file=str(file))


def flash_with_fallback(
    port: str,
    bauds: tuple[int, ...],
    board: str,
    file: Path,
    *,
    runner: Callable[[str, int, str, Path], None] = run_kflash,
    log=print,
) -> list[FlashAttempt]:
    attempts: list[FlashAttempt] = []
    for i, baud in enumerate(bauds):
        log(f"flashing {file.name} to {port} at {baud} baud (board {board})")
        try:
            runner(port, baud, board, file)
            attempts.append(FlashAttempt(baud, True))
            return attempts
        except Exception as e:  # kflash raises bare Exceptions carrying its message
            msg = str(e).strip() or type(e).__name__
            attempts.append(FlashAttempt(baud, False, msg))
            why = explain(msg)
            baud_problem = why is not None and "baud" in why[0]
            if i + 1 < len(bauds) and (baud_problem or why is None):
                log(f"failed at {baud} baud ({msg.splitlines()[0][:120]}); retrying at {bauds[i + 1]} baud")
                continue
            meaning, fix = why or ("kflash failed", "see the message above")
            raise PokedexError(
                f"flashing failed at {baud} baud: {msg.splitlines()[0][:200]} — {meaning}", f"try {fix}"
            ) from e
    raise PokedexError(
        f"flashing {file} to {port} failed at every baud rate: " + "; ".join(f"{a.baud}: {a.error}" for a in attempts),
        "check the cable and the port, then run flash again (kflash writes the whole package again)",
    )
