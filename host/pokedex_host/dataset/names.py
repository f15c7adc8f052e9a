"""Which species a file name means: a dex number, or a name slug (``nidoran-f``, ``mr-mime``)."""

from __future__ import annotations

import re
from functools import lru_cache

from ..species import SPECIES_COUNT, all_species

_NUM = re.compile(r"^0*(\d{1,4})(?:[-_.].*)?$")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


@lru_cache(maxsize=1)
def _by_slug() -> dict[str, int]:
    out = {}
    for s in all_species():
        out[_slug(s.ascii)] = s.dex
        out[_slug(s.ascii.replace("-F", "f").replace("-M", "m"))] = s.dex
    return out


def dex_from_name(stem: str) -> int | None:
    """``25``, ``0025``, ``25-gmax`` -> 25; ``pikachu``, ``pikachu-gmax``, ``nidoran-f`` -> dex; else None."""
    m = _NUM.match(stem)
    if m:
        n = int(m.group(1))
        return n if 1 <= n <= SPECIES_COUNT else None
    table = _by_slug()
    if _slug(stem) in table:
        return table[_slug(stem)]
    parts = re.split(r"[-_.]", stem.lower())
    for k in range(len(parts) - 1, 0, -1):  # drop form suffixes: pikachu-gmax, charizard-mega-x
        if _slug("".join(parts[:k])) in table:
            return table[_slug("".join(parts[:k]))]
    return None
