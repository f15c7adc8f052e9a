"""The raw store: ``DATA/raw/all_pokemon/<dex:04d>/<sha256[:16]><ext>`` plus ``DATA/raw/index.jsonl``.

Files are stored byte-for-byte as ingested and named by content, so an exact duplicate from a
second source becomes one more entry in that image's ``sources`` list, never a second file.
Ingest only adds files; nothing in the store is rewritten.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..fsutil import atomic_write_text


@dataclass
class RawImage:
    sha256: str
    dex: int
    file: str  # relative to DATA/raw
    format: str
    mode: str
    width: int
    height: int
    frames: int
    dhash: int
    notes: list[str] = field(default_factory=list)
    sources: list[dict] = field(default_factory=list)  # {"source": ..., "path": ...}


def raw_dir(data: Path) -> Path:
    return Path(data) / "raw"


def index_path(data: Path) -> Path:
    return raw_dir(data) / "index.jsonl"


def load_index(data: Path) -> dict[str, RawImage]:
    p = index_path(data)
    out: dict[str, RawImage] = {}
    if p.exists():
        for line in p.read_text(encoding="utf-8").splitlines():
            if line.strip():
                d = json.loads(line)
                out[d["sha256"]] = RawImage(**d)
    return out


def save_index(data: Path, index: dict[str, RawImage]) -> None:
    rows = sorted(index.values(), key=lambda r: (r.dex, r.sha256))
    atomic_write_text(index_path(data), "".join(json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in rows))
