"""``data preview`` (a contact sheet to look at) and ``data camera-set`` (a materialised,
seeded camera-realistic copy of a split, for evaluation)."""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import PokedexError
from ..fsutil import atomic_write_bytes
from .augment import alpha_from_white, camera_frame, contact_sheet
from .images import to_rgb
from .store import load_index, raw_dir


def _sprite(path: Path) -> Image.Image:
    with Image.open(path) as im:
        im.seek(0)
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            from PIL import ImageOps

            return ImageOps.exif_transpose(im).convert("RGBA")
        return alpha_from_white(to_rgb(im))


def preview(data: Path, out: Path, *, count: int = 24, strength: float = 1.0, size: int = 224, seed: int = 0) -> Path:
    index = load_index(Path(data))
    if not index:
        raise PokedexError(f"{data}/raw has no images", f"run `pokedex-host data ingest SOURCE --out {data}` first")
    by_dex: dict[int, list] = {}
    for r in index.values():
        by_dex.setdefault(r.dex, []).append(r)
    rnd = random.Random(seed)
    dexes = sorted(by_dex)
    rnd.shuffle(dexes)
    picks = [rnd.choice(sorted(by_dex[d], key=lambda r: r.sha256)) for d in dexes[:count]]
    rng = np.random.default_rng(seed)
    frames = [camera_frame(_sprite(raw_dir(Path(data)) / r.file), rng, strength, size) for r in picks]
    buf = io.BytesIO()
    contact_sheet(frames).save(buf, "PNG")
    return atomic_write_bytes(out, buf.getvalue())


def camera_set(data: Path, split: str, out: Path, *, strength: float = 1.0, size: int = 224, seed: int = 0) -> int:
    data = Path(data)
    rows_file = data / "processed" / "yolo_dataset" / "split.csv"
    if not rows_file.exists():
        raise PokedexError(f"{rows_file} is missing", f"run `pokedex-host data process --data {data}` first")
    index = load_index(data)
    n = 0
    for row in csv.DictReader(rows_file.open(encoding="utf-8")):
        if row["split"] != split:
            continue
        r = index[row["sha256"]]
        rng = np.random.default_rng([seed, int(row["sha256"][:12], 16)])
        frame = camera_frame(_sprite(raw_dir(data) / r.file), rng, strength, size)
        buf = io.BytesIO()
        frame.save(buf, "JPEG", quality=95)
        atomic_write_bytes(Path(out) / f"{int(row['dex']):04d}" / (Path(row["file"]).stem + ".jpg"), buf.getvalue())
        n += 1
    return n
