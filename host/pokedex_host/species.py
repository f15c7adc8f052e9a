"""The 1025 species in national-dex order: the project's one list of names.

``data/species.tsv`` holds ``dex``, the English ``name`` (UTF-8, as on the UART) and an
``ascii`` form for the board's LCD font, which has no é or ♀ (Nidoran♀ → Nidoran-F,
Flabébé → Flabebe). Regenerate with ``tools/make_species.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

SPECIES_FILE = Path(__file__).with_name("data") / "species.tsv"
SPECIES_COUNT = 1025


@dataclass(frozen=True)
class Species:
    dex: int
    name: str
    ascii: str


@lru_cache(maxsize=1)
def all_species() -> tuple[Species, ...]:
    lines = SPECIES_FILE.read_text(encoding="utf-8").splitlines()[1:]
    out = []
    for line in lines:
        dex, name, asc = line.split("\t")
        out.append(Species(int(dex), name, asc))
    return tuple(out)


def by_dex(dex: int) -> Species:
    sp = all_species()
    if not 1 <= dex <= len(sp):
        raise KeyError(f"no species with dex number {dex}")
    return sp[dex - 1]


def classes_txt(dex_list: list[int]) -> str:
    """The board's label file: one line per model output, ``dex<TAB>name<TAB>ascii``.

    Spec: docs/specs/classes-txt.md. Line i names output i.
    """
    rows = []
    for d in dex_list:
        s = by_dex(d)
        rows.append(f"{s.dex:04d}\t{s.name}\t{s.ascii}")
    return "\n".join(rows) + "\n"


def read_classes_txt(path) -> list[tuple[int, str]]:
    """(dex, name) per model output from a classes.txt (the format :func:`classes_txt` writes;
    a line may hold only the dex number)."""
    from pathlib import Path

    from .errors import PokedexError

    rows = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        try:
            dex = int(parts[0].split()[0])
        except (ValueError, IndexError):
            raise PokedexError(
                f"{path}:{i}: {line[:40]!r} does not start with a dex number",
                "each line is dex<TAB>name<TAB>ascii (docs/specs/classes-txt.md)",
            ) from None
        rows.append((dex, parts[1] if len(parts) > 1 else f"#{dex:04d}"))
    return rows


# first national-dex number of each generation (I..IX), and one past the last
GENERATION_STARTS = (1, 152, 252, 387, 494, 650, 722, 810, 906, 1026)


def generation(dex: int) -> int:
    """The generation (1-9) that introduced species ``dex``."""
    for g in range(len(GENERATION_STARTS) - 1):
        if GENERATION_STARTS[g] <= dex < GENERATION_STARTS[g + 1]:
            return g + 1
    raise KeyError(f"no species with dex number {dex}")
