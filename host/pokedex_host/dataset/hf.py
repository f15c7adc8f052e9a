"""``data ingest hf:REPO``: a Hugging Face dataset (e.g. ``liuhuanjim013/pokemon-yolo-1025``)
through ``datasets`` — online, or from a local folder of parquet files (``hf:/path/to/dir``).

The schema is detected when loading: the image column (an ``Image`` feature, or a column named
image/img/picture) and the class — a ``ClassLabel`` column, a column named
label/labels/class/class_id/category/species/dex, or YOLO-style ``objects`` with a
category/class list (the first box's class). Class ids count from 0 (class = dex - 1, as in
the YOLO layout); ``ClassLabel`` names are matched to species names. Anything else is refused
with the columns found.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from ..errors import PokedexError
from ..species import SPECIES_COUNT
from .ingest import IngestReport, ingest_folder
from .names import dex_from_name

IMAGE_NAMES = ("image", "img", "picture", "photo")
CLASS_NAMES = ("label", "labels", "class", "class_id", "category", "species", "dex")
OBJECT_NAMES = ("objects", "annotations", "boxes")
OBJECT_CLASS = ("category", "class", "class_id", "label", "categories")


def _load(repo: str):
    try:
        import datasets
    except ImportError as e:
        raise PokedexError("the hf: source needs the `datasets` package", "run `make setup`") from e
    p = Path(repo)
    if p.is_dir():
        files = sorted(str(f) for f in p.rglob("*.parquet"))
        if not files:
            raise PokedexError(f"{p} has no .parquet files", "point hf: at a dataset folder or a Hub repo id")
        return datasets.load_dataset("parquet", data_files={"train": files}, split="train")
    try:
        return datasets.load_dataset(repo, split="train")
    except Exception as e:
        raise PokedexError(
            f"hf:{repo} could not be loaded: {type(e).__name__}: {str(e)[:200]}",
            "check the repo id and the network (the Hub is needed for remote datasets)",
        ) from e


def detect_columns(features: dict) -> tuple[str, str, str | None]:
    """(image column, class column, sub-key for objects-style classes or None)."""
    import datasets

    cols = list(features)
    image = next((c for c in cols if isinstance(features[c], datasets.Image)), None) or next(
        (c for c in cols if c.lower() in IMAGE_NAMES), None
    )
    cls = next((c for c in cols if isinstance(features[c], datasets.ClassLabel)), None) or next(
        (c for c in cols if c.lower() in CLASS_NAMES), None
    )
    sub = None
    if cls is None:
        obj = next((c for c in cols if c.lower() in OBJECT_NAMES), None)
        if obj is not None:
            inner = features[obj]
            keys = (
                list(inner.feature.keys())
                if hasattr(inner, "feature") and hasattr(inner.feature, "keys")
                else list(inner.keys())
                if hasattr(inner, "keys")
                else []
            )
            sub = next((k for k in keys if k.lower() in OBJECT_CLASS), None)
            cls = obj if sub else None
    if image is None or cls is None:
        raise PokedexError(
            f"unknown dataset schema: columns {cols}",
            "expected an image column (Image feature or named image/img) and a class (ClassLabel, a column named "
            "label/class/category/dex, or objects with a category list)",
        )
    return image, cls, sub


def _to_dex(value, names: list[str] | None) -> int | None:
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    if value is None:
        return None
    if names is not None:
        return dex_from_name(names[int(value)])
    if isinstance(value, str):
        return dex_from_name(value)
    n = int(value) + 1
    return n if 1 <= n <= SPECIES_COUNT else None


def ingest_hf(repo: str, data: Path, *, workers: int = 0, log=print) -> IngestReport:
    import datasets

    ds = _load(repo)
    image_col, cls_col, sub = detect_columns(ds.features)
    feat = ds.features[cls_col]
    names = feat.names if isinstance(feat, datasets.ClassLabel) else None
    log(
        f"hf:{repo}: {len(ds)} rows; image column {image_col!r}, class from {cls_col!r}" + (f"[{sub!r}]" if sub else "")
    )
    staging = Path(data) / "cache" / "hf" / repo.strip("/").replace("/", "__")
    import shutil

    shutil.rmtree(staging, ignore_errors=True)
    skipped = 0
    for i, row in enumerate(ds):
        value = row[cls_col]
        if sub:
            value = value.get(sub) if isinstance(value, dict) else [o.get(sub) for o in value][:1]
        dex = _to_dex(value, names)
        img = row[image_col]
        if dex is None or img is None:
            skipped += 1
            continue
        out = staging / f"{dex:04d}" / f"row{i:07d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(img, dict) and img.get("bytes"):
            out.with_suffix(".img").write_bytes(img["bytes"])
            out.with_suffix(".img").rename(out.with_suffix(_ext(img["bytes"])))
        else:
            img.save(out)
    if skipped:
        log(f"hf:{repo}: {skipped} rows without a usable image or class were skipped")
    return ingest_folder(staging, data, workers=workers, log=log, source_label=f"hf:{repo}")


def _ext(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as im:
        return {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "WEBP": ".webp"}.get(im.format, ".png")
