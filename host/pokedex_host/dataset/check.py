"""``pokedex-host data verify --data DATA``: check the processed dataset; every failure names files."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..species import SPECIES_COUNT
from .process import SIZE
from .split import SPLITS, assign


@dataclass
class VerifyReport:
    images: int = 0
    failures: list[str] = field(default_factory=list)
    species_in_train: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures


def verify(
    data: Path, *, decode: bool = True, max_listed: int = 50, expect_species: int = SPECIES_COUNT
) -> VerifyReport:
    yolo = Path(data) / "processed" / "yolo_dataset"
    rep = VerifyReport()
    fail = rep.failures.append
    if not (yolo / "data.yaml").is_file():
        fail(f"{yolo}/data.yaml is missing: run `pokedex-host data process --data {data}`")
        return rep
    yaml_text = (yolo / "data.yaml").read_text(encoding="utf-8")
    if f"nc: {SPECIES_COUNT}" not in yaml_text:
        fail(f"{yolo}/data.yaml: nc is not {SPECIES_COUNT}")
    for s in SPLITS:
        for kind in ("images", "labels"):
            if not (yolo / kind / s).is_dir():
                fail(f"{yolo}/{kind}/{s} is missing")
    extra = (
        sorted(p.name for p in (yolo / "images").iterdir() if p.is_dir() and p.name not in SPLITS)
        if (yolo / "images").is_dir()
        else []
    )
    if extra:
        fail(f"{yolo}/images has unexpected split folders: {', '.join(extra)}")
    rows = list(csv.DictReader((yolo / "split.csv").open(encoding="utf-8"))) if (yolo / "split.csv").exists() else []
    if not rows:
        fail(f"{yolo}/split.csv is missing or empty")
        return rep
    by_species: dict[int, list[dict]] = {}
    for r in rows:
        by_species.setdefault(int(r["dex"]), []).append(r)
    listed = set()
    for s in SPLITS:
        imgs = {p.stem for p in (yolo / "images" / s).glob("*.jpg")}
        labs = {p.stem for p in (yolo / "labels" / s).glob("*.txt")}
        for stem in sorted(imgs - labs)[:max_listed]:
            fail(f"{yolo}/images/{s}/{stem}.jpg has no label file")
        for stem in sorted(labs - imgs)[:max_listed]:
            fail(f"{yolo}/labels/{s}/{stem}.txt has no image")
        listed |= {f"images/{s}/{x}.jpg" for x in imgs}
        for stem in sorted(labs):
            p = yolo / "labels" / s / f"{stem}.txt"
            parts = p.read_text().split()
            dex = int(stem.split("_")[0]) if stem.split("_")[0].isdigit() else -1
            if len(parts) != 5 or not parts[0].isdigit():
                fail(f"{p}: expected 'class 0.5 0.5 1.0 1.0', got {' '.join(parts)[:40]!r}")
                continue
            cls = int(parts[0])
            if not 0 <= cls < SPECIES_COUNT:
                fail(f"{p}: class {cls} is out of range 0..{SPECIES_COUNT - 1}")
            elif cls != dex - 1:
                fail(f"{p}: class {cls} but the file name says dex {dex} (class {dex - 1})")
            if [float(x) for x in parts[1:]] != [0.5, 0.5, 1.0, 1.0]:
                fail(f"{p}: box {parts[1:]} is not the full image")
        if decode:
            for stem in sorted(imgs):
                p = yolo / "images" / s / f"{stem}.jpg"
                try:
                    with Image.open(p) as im:
                        im.load()
                        if im.format != "JPEG" or im.size != (SIZE, SIZE):
                            fail(f"{p}: {im.format} {im.size[0]}x{im.size[1]}, expected JPEG {SIZE}x{SIZE}")
                except OSError as e:
                    fail(f"{p}: does not decode ({e})")
        rep.images += len(imgs)
    recorded = {r["file"] for r in rows}
    for f in sorted(recorded - listed)[:max_listed]:
        fail(f"{yolo}/{f} is in split.csv but not on disk")
    for f in sorted(listed - recorded)[:max_listed]:
        fail(f"{yolo}/{f} is on disk but not in split.csv")
    # no leakage: a content hash or a near-duplicate group lives in one split only
    for key in ("sha256", "group"):
        where: dict[str, set] = {}
        for r in rows:
            where.setdefault(r[key], set()).add(r["split"])
        for k, splits in where.items():
            if len(splits) > 1:
                files = [r["file"] for r in rows if r[key] == k]
                fail(f"{key} {k[:16]} appears in {sorted(splits)}: {', '.join(files[:4])}")
    # per-species counts follow the rule
    import json

    seed = json.loads((yolo / "process.json").read_text()).get("seed", 0) if (yolo / "process.json").exists() else 0
    for dex, rs in sorted(by_species.items()):
        groups: dict[str, list[str]] = {}
        for r in rs:
            groups.setdefault(r["group"], []).append(r["sha256"])
        expect = assign(groups, seed)
        wrong = [r["file"] for r in rs if expect.get(r["sha256"]) != r["split"]]
        if wrong:
            fail(f"species #{dex:04d}: split does not follow the rule for {', '.join(wrong[:4])}")
        if not any(r["split"] == "train" for r in rs):
            fail(f"species #{dex:04d} has no training image")
    rep.species_in_train = len({int(r["dex"]) for r in rows if r["split"] == "train"})
    missing = sorted(set(range(1, SPECIES_COUNT + 1)) - {int(r["dex"]) for r in rows if r["split"] == "train"})
    if SPECIES_COUNT - len(missing) < expect_species:
        fail(
            f"{len(missing)} of {SPECIES_COUNT} species have no training images: "
            + ", ".join(f"#{d:04d}" for d in missing[:20])
            + (" ..." if len(missing) > 20 else "")
        )
    return rep
