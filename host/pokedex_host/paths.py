"""Where the project's data folders are, for a checkout or an installed package."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def repo_root() -> Path | None:
    """The checkout this package runs from (editable install), or None when installed."""
    here = PACKAGE_DIR.parent.parent
    if (here / "pyproject.toml").is_file() and (here / "boards").is_dir():
        return here
    return None


def _data_dir(env: str, name: str) -> Path:
    if os.environ.get(env):
        return Path(os.environ[env])
    root = repo_root()
    if root is None:
        raise FileNotFoundError(f"cannot find the project's {name}/ folder; set {env}")
    return root / name


def boards_dir() -> Path:
    return _data_dir("POKEDEX_BOARDS_DIR", "boards")


def calibration_dir() -> Path:
    return _data_dir("POKEDEX_CALIBRATION_DIR", "calibration")


def models_dir() -> Path:
    return _data_dir("POKEDEX_MODELS_DIR", "models")


def cache_dir() -> Path:
    """Per-user cache (toolchains, generated calibration sets)."""
    if os.environ.get("POKEDEX_CACHE_DIR"):
        return Path(os.environ["POKEDEX_CACHE_DIR"])
    root = repo_root()
    if root is not None:
        return root / ".cache"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pokedex-k210"


def shared_dir() -> Path | None:
    """``../shared`` beside the checkout, where this project's machines keep reference data."""
    if os.environ.get("POKEDEX_SHARED_DIR"):
        p = Path(os.environ["POKEDEX_SHARED_DIR"])
        return p if p.is_dir() else None
    root = repo_root()
    if root is not None and (root.parent / "shared").is_dir():
        return root.parent / "shared"
    return None


def firmware_dir() -> Path:
    """The board scripts (``firmware/``): what install copies and the emulator runs."""
    from .errors import PokedexError

    if os.environ.get("POKEDEX_FIRMWARE_DIR"):
        return Path(os.environ["POKEDEX_FIRMWARE_DIR"])
    root = repo_root()
    if root is None:
        raise PokedexError("cannot find the firmware/ folder (run from a checkout)", "or set POKEDEX_FIRMWARE_DIR")
    return root / "firmware"


def releases() -> list[Path]:
    """Release folders ``models/releases/<name>-vN/`` that hold a ``model.pt``, oldest (lowest N) first."""
    return _by_version([d for d in (models_dir() / "releases").glob("*-v*") if (d / "model.pt").is_file()], r"-v(\d+)$")


def _by_version(paths, pattern: str) -> list[Path]:
    import re

    found = []
    for d in paths:
        m = re.search(pattern, d.name)
        if m:
            found.append((int(m.group(1)), d.name, d))
    return [d for _, _, d in sorted(found)]


def recipes() -> list[Path]:
    """Release recipes ``models/recipes/release-vN.toml``, lowest N first."""
    return _by_version((models_dir() / "recipes").glob("release-v*.toml"), r"^release-v(\d+)\.toml$")


def newest_recipe() -> Path:
    """The recipe ``make release`` and ``pokedex-host release`` run when none is named."""
    from .errors import PokedexError

    found = recipes()
    if not found:
        raise PokedexError(
            f"no release recipe under {models_dir() / 'recipes'}", "name one: pokedex-host release --recipe FILE.toml"
        )
    return found[-1]


def newest_release() -> Path:
    """``models/releases/<name>-vN/model.pt`` with the highest N: what the toolkit builds when no
    model is named."""
    from .errors import PokedexError

    found = releases()
    if not found:
        raise PokedexError(
            f"no released model under {models_dir() / 'releases'}",
            "name a model: pokedex-host build-kmodel MODEL (a .pt, .onnx or models/*.toml recipe)",
        )
    return found[-1] / "model.pt"
