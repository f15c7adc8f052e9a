"""The emulator's output folder: what a run may replace, and how a run starts one.

A run replaces its output folder whole. A folder is recognised as an emulator output by the
marker file every run writes into it first (:data:`OUTPUT_MARKER`), or, for folders written
before the marker existed, by the run's ``emulator.json``. Any other non-empty folder is refused,
never deleted, so a mistyped ``--out`` cannot take a user's files with it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import PokedexError
from ..fsutil import atomic_write_text

OUTPUT_MARKER = ".pokedex-emulator"  # the first file of every emulator output folder
_MARKER_TEXT = "written by pokedex-host emulate: a later run with this folder as --out replaces it whole\n"


def is_emulator_output(folder: Path) -> bool:
    """Whether ``folder`` holds what an emulator run wrote (the marker, or an older run's
    ``emulator.json``)."""
    return (folder / OUTPUT_MARKER).is_file() or (folder / "emulator.json").is_file()


def check_output(out: Path) -> None:
    """Refuse (PokedexError) an ``out`` that a run may not replace: a file, or a non-empty folder
    that is not an emulator output. A new or empty folder, or an earlier output, passes."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PokedexError(
            f"emulator output {out} is a file, not a folder",
            "pass --out a new folder, or an earlier emulator output (it is replaced)",
        )
    if out.is_dir() and any(out.iterdir()) and not is_emulator_output(out):
        raise PokedexError(
            f"emulator output {out} is a folder of files the emulator did not write (it holds no {OUTPUT_MARKER}); "
            "a run replaces its output folder whole, so they would be deleted",
            "pass --out a new or empty folder, or an earlier emulator output; or move those files away first",
        )


def fresh_output(out: Path) -> Path:
    """``out`` emptied (after :func:`check_output`) and holding only the marker."""
    out = Path(out)
    check_output(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    atomic_write_text(out / OUTPUT_MARKER, _MARKER_TEXT)
    return out
