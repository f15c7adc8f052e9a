"""``.kfpkg`` packages: a zip of binaries plus ``flash-list.json``, in the exact text kflash reads.

kflash 1.1.6 does not parse ``flash-list.json`` as plain JSON: it first rewrites every line
matching ``"address": (.*),`` to quote the value (so hex literals survive), then ``json.loads``,
then ``int(address, 0)``. So each ``"address"`` must sit on its own line as ``"address": VALUE,``
— one space after the colon, a comma after an unquoted integer, never the last key of its
object. :func:`flash_list_json` writes exactly that; :func:`parse_like_kflash` reads it back the
way kflash does, and the tests run kflash's own regular expression (read from its source) too.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import PokedexError
from ..fsutil import atomic_write_bytes

KFLASH_ADDRESS_RE = r'"address": (.*),'
ZIP_DATE = (2020, 1, 1, 0, 0, 0)  # fixed timestamps: same inputs, same package bytes


@dataclass(frozen=True)
class FlashEntry:
    address: int
    name: str  # file name inside the package
    data: bytes
    sha256_prefix: bool  # True for firmware images, False for raw data such as a kmodel

    @property
    def end(self) -> int:
        return self.address + len(self.data)


def flash_list_json(entries: list[FlashEntry]) -> str:
    files = [{"address": e.address, "bin": e.name, "sha256Prefix": e.sha256_prefix} for e in entries]
    text = json.dumps({"version": "0.1.0", "files": files}, indent=2) + "\n"
    # json.dumps(indent=2) puts each key on its own line as '"key": value' with ', ' separators
    # turned into ',\n': exactly the form kflash's rewrite expects, address first in each object.
    return text


def parse_like_kflash(text: str, pattern: str = KFLASH_ADDRESS_RE) -> list[tuple[int, str, bool]]:
    rewritten = re.sub(pattern, r'"address": "\1",', text)
    try:
        obj = json.loads(rewritten)
        return [(int(f["address"], 0), f["bin"], bool(f["sha256Prefix"])) for f in obj["files"]]
    except (ValueError, KeyError, TypeError) as e:
        raise PokedexError(f"flash-list.json would not parse in kflash: {e}") from e


def build_kfpkg(entries: list[FlashEntry], out: Path) -> Path:
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise PokedexError(f"two files in one package share a name: {names}")
    text = flash_list_json(entries)
    if parse_like_kflash(text) != [(e.address, e.name, e.sha256_prefix) for e in entries]:
        raise PokedexError("internal error: flash-list.json does not read back as written")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in [("flash-list.json", text.encode())] + [(e.name, e.data) for e in entries]:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, data)
    return atomic_write_bytes(out, buf.getvalue())


def read_kfpkg(path: Path) -> list[tuple[int, str, bool, bytes]]:
    try:
        with zipfile.ZipFile(path) as z:
            entries = parse_like_kflash(z.read("flash-list.json").decode())
            return [(a, b, p, z.read(b)) for a, b, p in entries]
    except (zipfile.BadZipFile, KeyError) as e:
        raise PokedexError(
            f"{path} is not a valid .kfpkg ({e})", "rebuild it with `pokedex-host flash --dry-run`"
        ) from e
