"""Calibration and held-out sets: which images, chosen how, as the model sees them.

A set definition lives in ``calibration/*.toml`` (count, seed, strategy, source folders). Images
are picked round-robin over class folders so that N images cover as many species as possible,
deterministic by seed; the chosen list is recorded in the artifact's manifest. The held-out
verification set is drawn the same way from what calibration did not use.
"""

from __future__ import annotations

import random
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import paths
from ..errors import PokedexError
from ..preprocess import IMAGE_SUFFIXES, BadImage, is_image_file, load_image


@dataclass(frozen=True)
class CalibrationSpec:
    name: str
    count: int
    seed: int
    strategy: str
    sources: tuple[str, ...]
    fallback: str | None
    path: Path | None = None


@dataclass
class ImageSet:
    """Images as model input (uint8, N x 3 x S x S), where they came from and their labels."""

    source: str  # a folder, or "synthetic:seed=S"
    files: list[str]  # relative to source (empty for synthetic)
    labels: list[int | None]  # dex number from the class folder name, when it is one
    x: np.ndarray
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (file, why)

    def __len__(self) -> int:
        return int(self.x.shape[0])


def load_spec(name_or_path: str = "default") -> CalibrationSpec:
    p = Path(name_or_path)
    if not (p.suffix == ".toml" and p.is_file()):
        p = paths.calibration_dir() / f"{name_or_path}.toml"
    if not p.is_file():
        raise PokedexError(f"no calibration set definition {name_or_path!r} ({p})", "see calibration/default.toml")
    raw = tomllib.loads(p.read_text(encoding="utf-8"))
    if "count" not in raw:
        raise PokedexError(
            f"{p} has no count (how many images calibrate)", "add count = N, as calibration/default.toml has"
        )
    return CalibrationSpec(
        raw.get("name", p.stem),
        int(raw["count"]),
        int(raw.get("seed", 0)),
        raw.get("strategy", "round-robin"),
        tuple(raw.get("sources", ())),
        raw.get("fallback"),
        p,
    )


def resolve_source(spec: CalibrationSpec) -> Path | None:
    root = paths.repo_root() or Path.cwd()
    for s in spec.sources:
        p = Path(s)
        p = p if p.is_absolute() else (root / p)
        if p.is_dir():
            return p.resolve()
    return None


def class_folders(folder: Path) -> dict[str, list[Path]]:
    try:
        entries = sorted(folder.iterdir())
    except OSError as e:
        raise PokedexError(
            f"cannot read calibration folder {folder}: {e.strerror}", "check the path and permissions"
        ) from e
    groups: dict[str, list[Path]] = {}
    flat = [p for p in entries if is_image_file(p)]
    if flat:
        groups[""] = flat
    for d in entries:
        if d.is_dir():
            try:
                files = sorted(p for p in d.rglob("*") if is_image_file(p))
            except OSError:
                continue
            if files:
                groups[d.name] = files
    return groups


def round_robin(groups: dict[str, list[Path]], seed: int, exclude: set[Path] = frozenset()) -> list[tuple[str, Path]]:
    """Every class's first pick, then every class's second, ...; order shuffled by ``seed``."""
    rng = random.Random(seed)
    order = sorted(groups)
    rng.shuffle(order)
    queues = {}
    for k in order:
        files = [f for f in groups[k] if f not in exclude]
        random.Random(f"{seed}:{k}").shuffle(files)
        queues[k] = files
    out, depth = [], 0
    while True:
        took = False
        for k in order:
            if depth < len(queues[k]):
                out.append((k, queues[k][depth]))
                took = True
        if not took:
            return out
        depth += 1


def _dex(name: str) -> int | None:
    return int(name) if name.isdigit() else None


def pick_images(
    folder: Path, count: int, size: int, seed: int, *, exclude: set[Path] = frozenset(), log=print
) -> ImageSet:
    """Decode ``count`` images round-robin over class folders, skipping unreadable ones (named)."""
    folder = Path(folder)
    if not folder.exists():
        raise PokedexError(
            f"calibration folder {folder} does not exist",
            "pass --calibration DIR with images (per-species subfolders, or a flat folder)",
        )
    if not folder.is_dir():
        raise PokedexError(f"calibration path {folder} is not a folder", "pass a folder of images")
    groups = class_folders(folder)
    if not groups:
        raise PokedexError(
            f"calibration folder {folder} has no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))})",
            "point --calibration at a folder of RGB images of the kind the camera will see",
        )
    arrays, files, labels, rejected = [], [], [], []
    for cls, f in round_robin(groups, seed, exclude):
        if len(arrays) >= count:
            break
        try:
            arrays.append(load_image(f, size))
        except BadImage as e:
            rejected.append((str(f), str(e)))
            log(f"warning: skipping unreadable image {f}: {e}")
            continue
        files.append(str(f.relative_to(folder)))
        labels.append(_dex(cls))
    if not arrays:
        raise PokedexError(
            f"calibration folder {folder}: none of its images could be read "
            f"({len(rejected)} tried, first: {rejected[0][0] if rejected else '-'})",
            "replace the corrupt files or point --calibration at another folder",
        )
    return ImageSet(str(folder), files, labels, np.stack(arrays), rejected)


def synthetic_images(count: int, size: int, seed: int) -> ImageSet:
    """Procedural frames (gradients, blobs, card-like borders): deterministic, no data needed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    out = np.empty((count, 3, size, size), np.uint8)
    for i in range(count):
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        ang = rng.uniform(0, np.pi)
        t = np.cos(ang) * xx + np.sin(ang) * yy
        img = c0[:, None, None] * (1 - t) + c1[:, None, None] * t
        for _ in range(rng.integers(2, 6)):
            cx, cy, rx, ry = (
                rng.uniform(0.1, 0.9),
                rng.uniform(0.1, 0.9),
                rng.uniform(0.05, 0.35),
                rng.uniform(0.05, 0.35),
            )
            mask = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
            img[:, mask] = rng.uniform(0, 255, 3)[:, None]
        b = int(size * rng.uniform(0.02, 0.08))
        img[:, :b, :] = img[:, -b:, :] = img[:, :, :b] = img[:, :, -b:] = rng.uniform(150, 255)
        img += rng.normal(0, 6, img.shape)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return ImageSet(f"synthetic:seed={seed}", [], [None] * count, out)


def calibration_and_holdout(
    folder: Path | None, spec: CalibrationSpec, size: int, count: int | None, holdout: int, log=print
) -> tuple[ImageSet, ImageSet]:
    """The calibration set and a disjoint held-out set from the same source."""
    n = count or spec.count
    if folder is None:
        folder = resolve_source(spec)
        if folder is None:
            if spec.fallback != "synthetic":
                raise PokedexError(
                    "no calibration source found (tried: " + ", ".join(spec.sources) + ")", "pass --calibration DIR"
                )
            log(
                f"warning: no calibration folder found (tried {', '.join(spec.sources)}); using {n} synthetic "
                "frames: fine for checking fit, poor for a trained model's accuracy — pass --calibration DIR"
            )
            return synthetic_images(n, size, spec.seed), synthetic_images(max(holdout, 0), size, spec.seed + 1)
    calib = pick_images(folder, n, size, spec.seed, log=log)
    if holdout <= 0:
        return calib, ImageSet(str(folder), [], [], np.zeros((0, 3, size, size), np.uint8))
    used = {Path(folder) / f for f in calib.files} | {Path(f) for f, _ in calib.rejected}
    try:
        hold = pick_images(folder, holdout, size, spec.seed + 1, exclude=used, log=log)
    except PokedexError:
        log(f"warning: {folder} has no images left for a held-out check; using synthetic frames")
        hold = synthetic_images(holdout, size, spec.seed + 1)
    return calib, hold
