"""Byte sizes as users write them: ``6MB``, ``6MiB``, ``3.5M``, ``6000000``.

Decimal units are powers of ten (``MB`` = 10^6 B, ``KB``/``kB`` = 10^3 B); binary units are
powers of two (``MiB`` = 2^20 B, ``KiB`` = 2^10 B). A bare ``M``/``K``/``G`` is decimal, like
``MB``: the K210's "6 MiB SRAM" is therefore ``6MiB``, not ``6M``.
"""

from __future__ import annotations

import re

from .errors import PokedexError

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
}

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([A-Za-z]*)\s*$")

SIZE_HELP = "Sizes accept 6MB, 6MiB, 3.5M, 6000000: MB/M = 10^6 bytes, MiB = 2^20 bytes, KB/K = 10^3, KiB = 2^10."


def parse_size(text: str | int, *, what: str = "size", allow_zero: bool = False) -> int:
    """Parse a size string into bytes, or raise :class:`PokedexError` naming the value."""
    if isinstance(text, int):
        if text < 0:
            raise PokedexError(f"{what} {text} is negative", SIZE_HELP)
        return text
    m = _SIZE_RE.match(str(text))
    unit = m.group(2).lower() if m else None
    if not m or unit not in _UNITS:
        raise PokedexError(f"{what} {text!r} is not a size", SIZE_HELP)
    value = float(m.group(1)) * _UNITS[unit]
    if value < 0 or (value == 0 and not allow_zero):
        raise PokedexError(f"{what} {text!r} must be greater than zero", SIZE_HELP)
    if value != int(value) and unit in ("", "b"):
        raise PokedexError(f"{what} {text!r} is a fraction of a byte", SIZE_HELP)
    return int(round(value))


def format_size(n: int) -> str:
    """Human form with both units where it matters: ``3,500,000 B (3.50 MB, 3.34 MiB)``."""
    return f"{n:,} B ({n / 1e6:.2f} MB, {n / 2**20:.2f} MiB)"


def short_size(n: int) -> str:
    if n >= 10**6:
        return f"{n / 1e6:.2f} MB"
    if n >= 10**3:
        return f"{n / 1e3:.1f} kB"
    return f"{n} B"
