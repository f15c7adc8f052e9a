"""``data report``: what the dataset holds, per species, split and source (Markdown + PNG)."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from ..errors import PokedexError
from ..fsutil import atomic_write_text
from ..plotting import save_png
from ..species import SPECIES_COUNT, by_dex
from .split import SPLITS
from .store import load_index


def _source_tag(src: dict) -> str:
    name = Path(src["path"]).name
    tag = name.split("_")[0] if "_" in name else Path(src["path"]).parent.name or "root"
    return f"{Path(src['source']).name}:{tag}"


def report(data: Path) -> Path:
    data = Path(data)
    index = load_index(data)
    if not index:
        raise PokedexError(f"{data}/raw has no images", f"run `pokedex-host data ingest SOURCE --out {data}` first")
    per_species = Counter(r.dex for r in index.values())
    sources = Counter(_source_tag(s) for r in index.values() for s in r.sources[:1])
    sizes = [max(r.width, r.height) for r in index.values()]
    split_counts: dict[str, Counter] = {s: Counter() for s in SPLITS}
    rows_file = data / "processed" / "yolo_dataset" / "split.csv"
    if rows_file.exists():
        for row in csv.DictReader(rows_file.open(encoding="utf-8")):
            split_counts[row["split"]][int(row["dex"])] += 1
    fewest = sorted(per_species.items(), key=lambda kv: (kv[1], kv[0]))[:20]
    missing = [d for d in range(1, SPECIES_COUNT + 1) if d not in per_species]
    out = data / "reports"
    _plot(out / "dataset.png", per_species, sizes)
    lines = [
        "# Dataset report",
        "",
        f"{len(index):,} images of {len(per_species)} species ({len(missing)} species missing); "
        f"images per species: min {min(per_species.values())}, "
        f"median {sorted(per_species.values())[len(per_species) // 2]}, "
        f"max {max(per_species.values())}.",
        "",
        "![dataset](dataset.png)",
        "",
        "| split | images | species |",
        "|---|---:|---:|",
    ]
    for s in SPLITS:
        lines.append(f"| {s} | {sum(split_counts[s].values()):,} | {len(split_counts[s])} |")
    lines += ["", "| source | images |", "|---|---:|"] + [f"| {k} | {v:,} |" for k, v in sources.most_common()]
    buckets = ((0, 64), (64, 128), (128, 256), (256, 512), (512, None))
    lines += [
        "",
        "Image size (longest side): "
        + ", ".join(
            (f"{lo}-{hi - 1} px" if hi else f"{lo}+ px") + f": {sum(lo <= x < (hi or 1 << 30) for x in sizes):,}"
            for lo, hi in buckets
        ),
        "",
        "Species with the fewest images:",
        "",
        "| dex | name | images | train | validation | test |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for d, n in fewest:
        lines.append(
            f"| {d:04d} | {by_dex(d).name} | {n} | " + " | ".join(str(split_counts[s][d]) for s in SPLITS) + " |"
        )
    if missing:
        lines += ["", "Missing species: " + ", ".join(f"{d:04d}" for d in missing[:100])]
    return atomic_write_text(out / "dataset.md", "\n".join(lines) + "\n")


def _plot(path: Path, per_species: Counter, sizes: list[int]) -> None:
    from ..plotting import pyplot

    plt = pyplot()

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.2))
    dex = sorted(per_species)
    a.bar(dex, [per_species[d] for d in dex], width=1.0)
    a.set_xlabel("national dex")
    a.set_ylabel("images")
    a.set_title("images per species", fontsize=10)
    b.hist(sizes, bins=40)
    b.set_xlabel("longest side (px)")
    b.set_title("image sizes", fontsize=10)
    fig.tight_layout()
    save_png(fig, path)
