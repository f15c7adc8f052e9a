"""Where each file goes in flash, checked against the board profile's flash map."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..boards import Board
from ..errors import PokedexError
from ..kmodel import KmodelFormatError, detect_version
from .kfpkg import FlashEntry

SECTOR = 4096  # SPI flash erase granularity
SHA_PREFIX_OVERHEAD = 5 + 32  # kflash prefixes firmware with 1 byte aes flag + u32 length, appends sha256


@dataclass(frozen=True)
class FlashPlan:
    board: Board
    entries: tuple[FlashEntry, ...]
    kmodel_version: int | None
    warnings: tuple[str, ...]

    def table(self) -> str:
        rows = [
            f"  0x{e.address:06X}-0x{e.end + (SHA_PREFIX_OVERHEAD if e.sha256_prefix else 0):06X}  "
            f"{len(e.data):>10,} B  {e.name}"
            for e in self.entries
        ]
        return "\n".join(rows)


def check_kmodel(board: Board, kmodel: Path, data: bytes) -> tuple[int, list[str]]:
    """The kmodel's version, and what to warn about putting it on ``board``; a file that is not a
    kmodel, or a broken v3 (checked whole: the board would load it and misrun), is refused."""
    try:
        version = detect_version(data)
    except KmodelFormatError as e:
        raise PokedexError(f"{kmodel} is not a kmodel: {e.reason}", "pass the model.kmodel build-kmodel wrote") from e
    if version == 3:
        from ..kmodel.interp import Interpreter

        try:
            Interpreter(data, path=str(kmodel))
        except KmodelFormatError as e:
            raise PokedexError(
                f"{kmodel} is a broken kmodel v3 (byte {e.offset}: {e.reason})",
                "rebuild it with build-kmodel; do not put it on a board",
            ) from e
    warnings = []
    if not board.loads(version):
        warnings.append(
            f"{kmodel} is kmodel v{version}; {board.name} firmware loads only "
            + ", ".join(f"v{v}" for v in board.firmware.kmodel_versions)
            + " (kpu.load will fail with ERR_KMODEL_VERSION)"
        )
    return version, warnings


def make_plan(board: Board, firmware: Path | None, kmodel: Path | None) -> FlashPlan:
    entries, warnings, version = [], [], None
    fl = board.flash
    if firmware is None and kmodel is None:
        raise PokedexError("nothing to flash", "pass --firmware BIN and/or --kmodel FILE")
    if firmware is not None:
        data = _read(firmware, "firmware")
        end = fl.firmware_address + len(data) + SHA_PREFIX_OVERHEAD
        if end > fl.model_address:
            raise PokedexError(
                f"firmware {firmware} ({len(data):,} B) runs to 0x{end:X}, "
                f"into the model region at 0x{fl.model_address:X}",
                f"use a smaller firmware image (e.g. the minimum build) for {board.name}",
            )
        entries.append(FlashEntry(fl.firmware_address, Path(firmware).name, data, True))
    if kmodel is not None:
        data = _read(kmodel, "kmodel")
        version, more = check_kmodel(board, kmodel, data)
        warnings += more
        if fl.model_address % SECTOR:
            raise PokedexError(f"{board.path}: model_address 0x{fl.model_address:X} is not 4 KiB aligned")
        end = fl.model_address + len(data)
        if end > fl.model_region_end:
            raise PokedexError(
                f"kmodel {kmodel} ({len(data):,} B) ends at 0x{end:X}, "
                f"past the model region end 0x{fl.model_region_end:X}"
                + (" (the SPIFFS filesystem starts there)" if fl.filesystem else ""),
                "shrink the model, or load it from the SD card instead of flash",
            )
        entries.append(FlashEntry(fl.model_address, Path(kmodel).name, data, False))
    if fl.filesystem:
        for e in entries:
            if e.address < fl.filesystem[1] and e.end > fl.filesystem[0]:
                raise PokedexError(f"{e.name} overlaps the filesystem at 0x{fl.filesystem[0]:X}")
    if board.flash_size and any(e.end > board.flash_size for e in entries):
        raise PokedexError(f"the files do not fit the {board.flash_size:,} B flash of {board.name}")
    return FlashPlan(board, tuple(entries), version, tuple(warnings))


def _read(path: Path, what: str) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise PokedexError(f"{what} file {p} does not exist")
    data = p.read_bytes()
    if not data:
        raise PokedexError(f"{what} file {p} is empty")
    return data
