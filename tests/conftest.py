from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("MPLCONFIGDIR", str(ROOT / ".cache" / "mpl"))


def _blob_image(rng: np.random.Generator, size: int, rgba: bool) -> Image.Image:
    arr = np.zeros((size, size, 4), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    c = rng.integers(0, 256, 3)
    r = size * rng.uniform(0.2, 0.45)
    mask = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= r * r
    arr[..., :3] = rng.integers(0, 256, 3)
    arr[mask, :3] = c
    arr[..., 3] = np.where(mask, 255, 0) if rgba else 255
    return Image.fromarray(arr, "RGBA" if rgba else "RGBA").convert("RGBA" if rgba else "RGB")


def release_input(folder: Path) -> int:
    """The input size a release folder's name gives (``<family>-<width x 100>-<input>-vN``, as
    ``train.release.release_paths`` names it)."""
    return int(Path(folder).name.split("-")[-2])


def make_dataset(root: Path, species: int = 6, per_species: int = 5, size: int = 48, seed: int = 0) -> Path:
    """Per-species folders (0001, 0002, ...) of small generated images, half with alpha."""
    rng = np.random.default_rng(seed)
    for dex in range(1, species + 1):
        d = root / f"{dex:04d}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_species):
            _blob_image(rng, size, rgba=bool(i % 2)).save(d / f"img_{i}.png")
    return root


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data")


@pytest.fixture(scope="session")
def toolchain_ready() -> str:
    """The compiler venv. `make test` installs it; a missing one is a failure, not a skip."""
    from pokedex_host.toolchain import env

    st = env.check(env.DEFAULT_NNCASE)
    if not st.ok:
        pytest.fail(
            "nncase compiler venv not usable: "
            + "; ".join(st.problems)
            + " — run `make setup` (or `pokedex-host toolchain install`)"
        )
    return env.DEFAULT_NNCASE


TINY_RECIPE = """
family = "kpu_mobilenet_v1"
seed = 1

[config]
width = 0.25
input = 64
classes = 1025
head_max = 1024
"""


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    """The tiny student at 128 px: the smallest input nncase keeps in one KPU function, so the
    default (v3) build of the maix-bit profile works on it."""
    p = tmp_path / "tiny.toml"
    p.write_text(TINY_RECIPE.replace("input = 64", "input = 128"))
    return p


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory, toolchain_ready) -> Path:
    """A build-kmodel output folder (v5, maix-bit-canmv) of the tiny 64 px 1025-class student."""
    from pokedex_host.compile import BuildOptions, build_kmodel

    d = tmp_path_factory.mktemp("tiny")
    (d / "tiny.toml").write_text(TINY_RECIPE)
    build_kmodel(
        BuildOptions(model=d / "tiny.toml", board="maix-bit-canmv", out=d / "out", calibration_count=4, verify_count=0),
        log=lambda m: None,
    )
    return d / "out"


TINY_V3_RECIPE = TINY_RECIPE.replace("input = 64", "input = 128")


@pytest.fixture(scope="session")
def tiny_v3_build(tmp_path_factory, toolchain_ready) -> Path:
    """A build-kmodel output folder (kmodel v3 for stock MaixPy) of a tiny 128 px 1025-class student."""
    from pokedex_host.compile import BuildOptions, build_kmodel

    d = tmp_path_factory.mktemp("tiny3")
    (d / "tiny128.toml").write_text(TINY_V3_RECIPE)
    build_kmodel(
        BuildOptions(
            model=d / "tiny128.toml",
            board="maix-bit",
            out=d / "out",
            calibration_count=4,
            verify_count=4,
            calibration=make_dataset(d / "data", size=96),
        ),
        log=lambda m: None,
    )
    return d / "out"
