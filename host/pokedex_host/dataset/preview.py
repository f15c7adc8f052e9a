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


def style_of(r) -> str:
    """The source style of a raw image (``art``, ``sprite_shiny``, ``xy_back``...): its first
    source's file name without the running number."""
    if not r.sources:
        return "unknown"
    stem = Path(r.sources[0]["path"]).stem
    head, _, tail = stem.rpartition("_")
    return head if tail.isdigit() and head else stem


def styles_for(files: list[str]) -> dict[str, str] | None:
    """Source style of each image of a split or of a camera set made from one, found through the
    data folder the images live under (``DATA/processed/yolo_dataset/split.csv`` and the raw
    index, matched by file stem) — or, for a set of real cards (``scans.scan_set``), each card's
    era and kind; None when the images are not under a data folder."""
    from .scans import groups_for

    g = groups_for(files)
    if g is not None:
        return g
    for parent in Path(files[0]).resolve().parents if files else []:
        rows_file = parent / "processed" / "yolo_dataset" / "split.csv"
        if rows_file.is_file():
            index = load_index(parent)
            sha = {Path(r["file"]).stem: r["sha256"] for r in csv.DictReader(rows_file.open(encoding="utf-8"))}
            out = {}
            for f in files:
                h = sha.get(Path(f).stem)
                out[f] = style_of(index[h]) if h in index else "unknown"
            return out
    return None


def camera_set(
    data: Path,
    split: str,
    out: Path,
    *,
    strength: float = 1.0,
    size: int = 224,
    seed: int = 0,
    kind: str = "camera",
    no_card_every: int = 10,
    limit: int | None = None,
) -> int:
    """Materialise ``split`` as a fixed, seeded evaluation set; returns the number of images.

    kind ``camera``: centred camera-like frames (``augment.camera_frame``), an ImageFolder;
    ``art``: the firmware's art-window crop of a card seen by the camera (``cards.art_view``), an
    ImageFolder of PNGs — what the classifier is fed once the card is located;
    ``card``: QVGA frames of a card anywhere in the view (``cards.card_frame``) plus one frame
    with no card every ``no_card_every``, in ``OUT/frames/`` with ``OUT/truth.jsonl`` (file, dex
    — 0 for no card —, the card's corners, the source style).
    """
    import json

    from .augment import crop_to_alpha
    from .cards import art_view, card_frame

    data = Path(data)
    rows_file = data / "processed" / "yolo_dataset" / "split.csv"
    if not rows_file.exists():
        raise PokedexError(f"{rows_file} is missing", f"run `pokedex-host data process --data {data}` first")
    if kind not in ("camera", "art", "card"):
        raise PokedexError(f"unknown camera-set kind {kind!r}", "use camera, art or card")
    index = load_index(data)
    n = 0
    truth = []
    rows = [row for row in csv.DictReader(rows_file.open(encoding="utf-8")) if row["split"] == split]
    if limit:
        rows = rows[:: max(1, len(rows) // limit)][:limit]
    for row in rows:
        r = index[row["sha256"]]
        rng = np.random.default_rng([seed, int(row["sha256"][:12], 16)])
        name = Path(row["file"]).stem
        buf = io.BytesIO()
        if kind == "camera":
            frame = camera_frame(_sprite(raw_dir(data) / r.file), rng, strength, size)
            frame.save(buf, "JPEG", quality=95)
            atomic_write_bytes(Path(out) / f"{int(row['dex']):04d}" / (name + ".jpg"), buf.getvalue())
        elif kind == "art":
            Image.fromarray(art_view(crop_to_alpha(_sprite(raw_dir(data) / r.file)), rng, size, strength)).save(
                buf, "PNG"
            )
            atomic_write_bytes(Path(out) / f"{int(row['dex']):04d}" / (name + ".png"), buf.getvalue())
        else:
            img, corners = card_frame(crop_to_alpha(_sprite(raw_dir(data) / r.file)), rng)
            Image.fromarray(img).save(buf, "PNG")
            atomic_write_bytes(Path(out) / "frames" / (name + ".png"), buf.getvalue())
            truth.append(
                {
                    "file": f"frames/{name}.png",
                    "dex": int(row["dex"]),
                    "style": style_of(r),
                    "corners": [[round(float(v), 2) for v in p] for p in corners],
                }
            )
            if no_card_every and (n + 1) % no_card_every == 0:
                buf = io.BytesIO()
                img, _ = card_frame(None, np.random.default_rng([seed, 7, n]))
                Image.fromarray(img).save(buf, "PNG")
                atomic_write_bytes(Path(out) / "frames" / f"none_{n:05d}.png", buf.getvalue())
                truth.append({"file": f"frames/none_{n:05d}.png", "dex": 0, "style": "none", "corners": None})
        n += 1
    if kind == "card":
        from ..fsutil import atomic_write_text

        atomic_write_text(Path(out) / "truth.jsonl", "".join(json.dumps(t) + "\n" for t in truth))
    return n
