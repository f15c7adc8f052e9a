"""``pokedex-host train teacher``: an ultralytics teacher, fully offline.

Recipes are ``models/teachers/*.toml`` (``yaml.safe_load``-free: TOML). Models are built from the
ultralytics YAML shipped in the package (no weight downloads); the fonts ultralytics insists on
are the matplotlib DejaVu Sans copied under the project's cache; settings sync is off; runs go to
``--out``. A classify teacher trains on ``DATA/processed/classify`` (a ``val`` link to
``validation`` is added), a detect teacher on ``DATA/processed/yolo_dataset/data.yaml``.
"""

from __future__ import annotations

import os
import shutil
import tomllib
from pathlib import Path

from ..errors import PokedexError
from ..compile.export import ultralytics_env


def _fonts() -> None:
    import matplotlib

    src = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    d = Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics"
    d.mkdir(parents=True, exist_ok=True)
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        if not (d / name).exists():
            shutil.copyfile(src, d / name)


def _model_yaml(recipe: dict, workdir: Path) -> Path:
    import ultralytics
    import yaml

    base = Path(ultralytics.__file__).parent / "cfg" / "models" / recipe["base"]
    cfg = yaml.safe_load(base.read_text())
    if recipe.get("activation"):
        cfg["activation"] = recipe["activation"]
    out = workdir / recipe["model"]  # the name keeps the scale letter (…n-cls…, …-tinyu…)
    text = yaml.safe_dump(cfg, sort_keys=False)
    out.write_text(text)
    # ultralytics reads "…u.yaml" (the anchor-free head) from the file without the "u"
    if out.stem.endswith("u"):
        out.with_name(out.stem[:-1] + ".yaml").write_text(text)
    return out


def _classify_view(data: Path, workdir: Path) -> Path:
    """ultralytics wants train/ and val/; ours are train/ and validation/: a view of links."""
    src = Path(data)
    if not (src / "train").is_dir():
        raise PokedexError(f"{src} has no train/ folder", "pass DATA/processed/classify")
    view = workdir / "classify"
    view.mkdir(parents=True, exist_ok=True)
    for a, b in (("train", "train"), ("val", "validation")):
        link = view / a
        if not link.exists():
            link.symlink_to((src / b).resolve())
    return view


def train_teacher(recipe_path: Path, data: Path, out: Path, *, epochs: int | None = None, imgsz: int | None = None,
                  batch: int | None = None, resume: bool = False, extra: dict | None = None, device: str = "cpu",
                  log=print) -> Path:
    """``device``: "cpu", or GPU ids such as "0,1" (ultralytics then trains with DDP itself)."""
    ultralytics_env()
    _fonts()
    recipe = tomllib.loads(Path(recipe_path).read_text(encoding="utf-8"))
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    from ultralytics import YOLO, settings

    settings.update({"sync": False})
    last = out / "train" / "weights" / "last.pt"
    if resume and last.exists():
        log(f"resuming {last} (an ultralytics pickle you wrote)")
        YOLO(str(last)).train(resume=True)
        return out / "train" / "weights" / "best.pt"
    args = dict(recipe.get("train", {}))
    args.update({k: v for k, v in {"epochs": epochs, "imgsz": imgsz, "batch": batch}.items() if v is not None})
    args.update(extra or {})
    if recipe["task"] == "classify":
        dataset = _classify_view(Path(data), out)
    else:
        dataset = Path(data) / "processed" / "yolo_dataset" / "data.yaml" if Path(data).is_dir() and not str(data).endswith(".yaml") else Path(data)
        if not dataset.is_file():
            raise PokedexError(f"{dataset} is missing", "run `pokedex-host data process` first")
    model = YOLO(str(_model_yaml(recipe, out)), task=recipe["task"])
    model.train(data=str(dataset), project=str(out), name="train", exist_ok=True, device=device, plots=False,
                verbose=False, **args)
    best = out / "train" / "weights" / "best.pt"
    log(f"teacher: {best}")
    return best
