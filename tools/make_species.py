#!/usr/bin/env python3
"""Regenerate host/pokedex_host/data/species.tsv from a `dddd Name` list.

The names are facts (English species names, national-dex order), as published by the npm
package `pokemon@3.3.1` (MIT). Usage: python tools/make_species.py CLASSES_TXT
"""

import sys
import unicodedata
from pathlib import Path

SPECIAL = {"\u2640": "-F", "\u2642": "-M"}


def ascii_name(name: str) -> str:
    for k, v in SPECIAL.items():
        name = name.replace(k, v)
    name = name.replace("\u2019", "'")
    out = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return out


def main() -> None:
    rows = []
    for line in Path(sys.argv[1]).read_text(encoding="utf-8").splitlines():
        dex, name = line.split(" ", 1)
        rows.append(f"{int(dex)}\t{name}\t{ascii_name(name)}")
    dst = Path(__file__).resolve().parent.parent / "host/pokedex_host/data/species.tsv"
    dst.write_text("dex\tname\tascii\n" + "\n".join(rows) + "\n", encoding="utf-8")
    print(f"wrote {len(rows)} species to {dst}")


if __name__ == "__main__":
    main()
