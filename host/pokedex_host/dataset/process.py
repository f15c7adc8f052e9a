"""``pokedex-host data process --data DATA``: the raw store into the layout training reads.

    DATA/processed/yolo_dataset/images/{train,validation,test}/{dex:04d}_{n:03d}.jpg   416x416
    DATA/processed/yolo_dataset/labels/{split}/{dex:04d}_{n:03d}.txt                   "class 0.5 0.5 1.0 1.0"
    DATA/processed/yolo_dataset/data.yaml                                              for ultralytics
    DATA/processed/yolo_dataset/split.csv                                              file, dex, split, sha256, group
    DATA/processed/classify/{split}/{dex:04d}/{dex:04d}_{n:03d}.jpg                    links (ImageFolder)

Images are letterboxed (aspect kept, long side 416) onto white, with transparency flattened onto
white: the same rule as the model input (docs/specs/model-input.md). class = dex - 1; the box is
the whole image. Rendering is cached by content (``processed/.cache/<sha>-416.jpg``), so a re-run
renders only new or changed sources; split files are hard links to the cache.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..errors import PokedexError
from ..fsutil import atomic_write_bytes
from ..species import all_species
from .images import letterbox, to_rgb
from .progress import Progress
from .split import SPLITS, assign, group
from .store import load_index, raw_dir

SIZE = 416
JPEG_QUALITY = 95
RENDER_VERSION = 1  # bump when the rendering rule changes: invalidates the cache


@dataclass
class ProcessReport:
    images: int
    rendered: int
    cached: int
    species: int
    per_split: dict


def _render(args: tuple[str, str]) -> str:
    src, dst = args
    with Image.open(src) as im:
        im.seek(0)
        out = letterbox(to_rgb(im), SIZE)
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=False)
    atomic_write_bytes(dst, buf.getvalue())
    return dst


def process(data: Path, *, seed: int = 0, workers: int = 0, log=print) -> ProcessReport:
    data = Path(data)
    index = load_index(data)
    if not index:
        raise PokedexError(f"{data}/raw has no images", f"run `pokedex-host data ingest SOURCE --out {data}` first")
    out = data / "processed"
    cache = out / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    by_dex: dict[int, list] = {}
    for r in index.values():
        by_dex.setdefault(r.dex, []).append(r)

    jobs, cached = [], 0
    for r in index.values():
        c = cache / f"{r.sha256[:32]}-{SIZE}-v{RENDER_VERSION}.jpg"
        if c.exists():
            cached += 1
        else:
            jobs.append((str(raw_dir(data) / r.file), str(c)))
    progress = Progress("render", len(jobs))
    if jobs:
        with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as ex:
            for _ in ex.map(_render, jobs, chunksize=8):
                progress.step()
    progress.done()

    yolo = out / "yolo_dataset"
    cls = out / "classify"
    staging_y, staging_c = out / ".yolo_dataset.partial", out / ".classify.partial"
    for d in (staging_y, staging_c):
        shutil.rmtree(d, ignore_errors=True)
    rows = []
    per_split = {s: 0 for s in SPLITS}
    for dex in sorted(by_dex):
        imgs = sorted(by_dex[dex], key=lambda r: r.sha256)
        gid = group({r.sha256: r.dhash for r in imgs})
        groups: dict[str, list[str]] = {}
        for k, g in gid.items():
            groups.setdefault(g, []).append(k)
        split_of = assign(groups, seed)
        for n, r in enumerate(imgs):
            split = split_of[r.sha256]
            name = f"{dex:04d}_{n:03d}"
            c = cache / f"{r.sha256[:32]}-{SIZE}-v{RENDER_VERSION}.jpg"
            img = staging_y / "images" / split / f"{name}.jpg"
            img.parent.mkdir(parents=True, exist_ok=True)
            os.link(c, img)
            lab = staging_y / "labels" / split / f"{name}.txt"
            lab.parent.mkdir(parents=True, exist_ok=True)
            lab.write_text(f"{dex - 1} 0.5 0.5 1.0 1.0\n")
            view = staging_c / split / f"{dex:04d}" / f"{name}.jpg"
            view.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.relpath(yolo / "images" / split / f"{name}.jpg", view.parent), view)
            rows.append((f"images/{split}/{name}.jpg", dex, split, r.sha256, gid[r.sha256]))
            per_split[split] += 1
    names = "\n".join(f"  {s.dex - 1}: {_yaml_str(s.name)}" for s in all_species())
    (staging_y / "data.yaml").write_text(
        f"# written by pokedex-host data process\npath: {yolo.resolve()}\ntrain: images/train\nval: images/validation\n"
        f"test: images/test\nnc: {len(all_species())}\nnames:\n{names}\n",
        encoding="utf-8",
    )
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["file", "dex", "split", "sha256", "group"])
    w.writerows(rows)
    (staging_y / "split.csv").write_text(buf.getvalue())
    (staging_y / "process.json").write_text(
        json.dumps(
            {
                "seed": seed,
                "size": SIZE,
                "render_version": RENDER_VERSION,
                "letterbox": "white",
                "alpha": "flattened on white",
            },
            indent=2,
        )
    )
    for staging, final in ((staging_y, yolo), (staging_c, cls)):
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    log(
        f"processed {len(rows)} images of {len(by_dex)} species ({len(jobs)} rendered, {cached} from cache): "
        + ", ".join(f"{s} {per_split[s]}" for s in SPLITS)
    )
    return ProcessReport(len(rows), len(jobs), cached, len(by_dex), per_split)


def _yaml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
