"""``build-kmodel``: export -> lint -> budget pre-check (the weights) -> calibrate -> compile
(nncase 1.9, uint8 PTQ) -> memory verdict -> host verification -> artifacts, written atomically
into one output folder.

The budget is judged before anything slower can fail: from the graph's weights before nncase runs
(a model they alone put over the budget stops in seconds), and on the compiled figures before the
v3 re-emission's own refusals can speak for a model that is over the budget anyway.

Each step is a function of its own module; this one only wires them together with typed values.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..boards import Board, get_board
from ..errors import BudgetExceeded, PokedexError, VerificationFailed
from ..fsutil import atomic_dir, atomic_write_text
from ..preprocess import InputSpec
from ..species import classes_txt
from ..toolchain import (
    CALIBRATE_METHODS,
    DEFAULT_CALIBRATE_METHOD,
    CompileRequest,
    ToolchainError,
    Worker,
    simulate_parallel,
)
from ..toolchain import env as tc_env
from . import calibration as calib_mod
from .budget import Budget, Verdict, estimate, judge, precheck, resolve_budget
from .export import ExportedModel, export_model, onnx_float_logits
from .lint import LintReport, compare_with_compiler, lint_model
from .memory import MemoryReport, read_memory
from .record import BuildRecord
from .verify import compare

KMODEL_VERSION = {"v3": 3, "v5": 5}


@dataclass
class BuildOptions:
    model: Path
    board: str = "maix-bit"
    out: Path = Path("build/kmodel")
    budget: int | None = None
    calibration: Path | None = None
    calibration_spec: str = "default"
    calibration_count: int | None = None
    verify_count: int = 200
    workers: int = 0  # 0 = one per CPU core
    max_loss: float | None = None
    threshold: float = 2.0
    format: str | None = None
    input_size: int | None = None
    input_range01: bool = True
    classes: list[int] | None = None
    verify_data: Path | None = None  # held-out folder for verification (default: the rest of the calibration folder)
    simulate_count: int = 16  # v3 builds: held-out images also run in nncase's simulator, compared bit for bit
    verify_full: bool = False  # v3 builds: every held-out image through the simulator too
    calibrate_method: str = DEFAULT_CALIBRATE_METHOD  # nncase 1.9's activation ranges: CALIBRATE_METHODS


@dataclass
class BuildResult:
    out: Path
    fits: bool
    memory: dict
    verification: dict | None
    warnings: list[str] = field(default_factory=list)


def _choose_format(board: Board, requested: str | None, warnings: list[str]) -> str:
    fmt = requested or board.firmware.default_format
    if fmt not in KMODEL_VERSION:
        raise PokedexError(
            f"unknown kmodel format {fmt!r}", "use --format v3 (MaixPy) or --format v5 (CanMV feat/kpu, SDK)"
        )
    if not board.loads(KMODEL_VERSION[fmt]):
        loads = ", ".join("v%d" % v for v in board.firmware.kmodel_versions)
        hint = (
            "stock MaixPy refuses it with ERR_KMODEL_VERSION (2002); build --format v3 for it"
            if 3 in board.firmware.kmodel_versions
            else "pick a board profile whose firmware loads it"
        )
        warnings.append(
            f"this is a kmodel {fmt} but the {board.name} firmware ({board.firmware.family} "
            f"{board.firmware.flavour}) loads only {loads}: {hint}"
        )
    if fmt == "v5" and board.firmware.runtime_nncase and board.firmware.runtime_nncase != board.nncase:
        warnings.append(
            f"compiled with nncase {board.nncase}; the {board.name} firmware's runtime is nncase "
            f"{board.firmware.runtime_nncase}: v5 models from a later compiler are not known to load on it "
            "(reports of a 1.9 model failing on CanMV exist); confirm on the board"
        )
    return fmt


def _run_v3(
    data: bytes, x: np.ndarray, shape: tuple[int, ...], runtime: str = "sdk", quantize_ties: str = "away"
) -> np.ndarray:
    from ..kmodel.interp import run_batch

    return run_batch(data, x, runtime=runtime, quantize_ties=quantize_ties).reshape(len(x), *shape)


def _board_runtime(
    board: Board, sdk_out: np.ndarray, data: bytes, x: np.ndarray, shape, log
) -> tuple[np.ndarray, dict | None]:
    """The v3 outputs as the board's own runtime computes them (MaixPy's KPU library differs from
    kpu.c in two float steps), with how far they are from the SDK's (= the simulator's)."""
    from ..families import family

    rt = family(board.firmware.family).v3_runtime
    if rt in (None, "sdk"):
        return sdk_out, None
    out = _run_v3(data, x, shape, rt)
    a, b = out.reshape(len(x), -1), sdk_out.reshape(len(x), -1)
    same = int(sum(np.array_equal(p, q) for p, q in zip(a, b)))
    fig = {
        "runtime": rt,
        "images": len(x),
        "identical": same,
        "top1_agreement": float(100.0 * np.mean(a.argmax(1) == b.argmax(1))) if len(x) else 100.0,
        "max_abs_diff": float(np.abs(a.astype(np.float64) - b).max()) if len(x) else 0.0,
    }
    log(
        f"{rt} runtime (the board's): {same}/{len(x)} images identical to the SDK's, top-1 agreement "
        f"{fig['top1_agreement']:.1f} %, largest difference {fig['max_abs_diff']:.2e}"
    )
    return out, fig


def _check_v3(v3_out: np.ndarray, simulated: np.ndarray, seconds: float, log, data: bytes, x: np.ndarray) -> dict:
    """The v3 interpreter's outputs must equal the simulator's on the v5 file bit for bit (the first
    ``len(simulated)`` images), or the build fails. One difference is the runtimes' own, not the
    re-emitter's: a QUANTIZE of a value exactly halfway between two steps, which kpu.c rounds away
    from zero and nncase to even. An image that differs only by that (it matches once the
    interpreter rounds ties to even) is counted under ``quantize_ties``. Returns the figures."""
    from .verify import same_outputs

    n = len(simulated)
    check = same_outputs(v3_out[:n].reshape(simulated.shape), simulated)
    check["quantize_ties"] = 0
    if check["identical"] != check["images"] and check.get("max_abs_diff") is not None:
        a32 = np.asarray(v3_out[:n], np.float32).reshape(n, -1)
        b32 = np.asarray(simulated, np.float32).reshape(n, -1)
        differ = [i for i in range(n) if not np.array_equal(a32[i].view(np.uint32), b32[i].view(np.uint32))]
        even = _run_v3(data, x[differ], simulated.shape[1:], quantize_ties="even").reshape(len(differ), -1)
        check["quantize_ties"] = int(
            sum(
                np.array_equal(e.astype(np.float32).view(np.uint32), b32[i].view(np.uint32))
                for e, i in zip(even, differ)
            )
        )
    ties = check["quantize_ties"]
    log(
        f"v3 check: {check['identical']}/{check['images']} images give the simulator's outputs bit for bit"
        + (
            f", {ties} more differ only where a QUANTIZE meets an exact half (kpu.c rounds it away from zero, "
            f"nncase to even)"
            if ties
            else ""
        )
        + f" ({len(v3_out)} images in the v3 interpreter, {seconds:.1f} s)"
    )
    if check["identical"] + ties != check["images"]:
        raise VerificationFailed(
            f"the v3 file disagrees with nncase's simulator on {check['images'] - check['identical'] - ties} of "
            f"{check['images']} images (largest difference {check['max_abs_diff']})",
            "this is a bug in the v3 re-emitter: please report it with the build inputs; --format v5 builds "
            "are unaffected",
        )
    return check


def _as_v3(kmodel: Path, dump: Path, mem, log) -> tuple[Path, object, object]:
    """Re-emit the v5 build as v3; the memory figures become the v3 loader's (file + main memory)."""
    from dataclasses import replace

    from ..kmodel.from_nncase import convert

    conv = convert(kmodel.read_bytes(), dump, path="kmodel v3")  # errors name nncase's op and the ONNX layer
    out = kmodel.with_name("model.v3.kmodel")
    out.write_bytes(conv.data)
    cpu = list(conv.cpu_layers)
    # v3: the SDK mallocs main_mem_usage for every intermediate and the output; the input is the
    # image's own planar buffer (MaixPy's pix_ai), counted as before
    mem3 = replace(mem, kmodel_bytes=len(conv.data), data_bytes=conv.main_mem_usage, output_bytes=0, cpu_ops=cpu)
    log(
        f"kmodel v3: {len(conv.data):,} B, {conv.kpu_layers} KPU layers in {conv.kpu_functions} KPU function(s) "
        f"and {len(cpu)} CPU layers re-emitted from nncase's build; main memory {conv.main_mem_usage:,} B"
    )
    for note in conv.notes:
        log(f"  note: {note}")
    return out, conv, mem3


# -- stages shared by build-kmodel and shrink ---------------------------------------------------
def lint_stage(exported: ExportedModel, board: Board, log=print) -> LintReport:
    """Which layers the KPU runs; stops (BudgetExceeded) when a layer's maps cannot fit KPU SRAM."""
    import onnx

    lint = lint_model(onnx.load(str(exported.onnx_path)), board.kpu_sram)
    log(f"lint: {len(lint.kpu_convs)} convs on the KPU, {len(lint.cpu_fallbacks)} layers off it")
    for e in lint.cpu_fallbacks:
        log(f"  CPU: {e.node} ({e.op}): {e.reason}; fix: {e.fix}")
    if lint.kpu_over:
        rows = "\n".join(
            f"  {e.node}: {e.kpu_bytes:,} B ({'x'.join(map(str, e.shape_in[1:]))} -> "
            f"{'x'.join(map(str, e.shape_out[1:]))})"
            for e in lint.kpu_over
        )
        raise BudgetExceeded(
            f"{len(lint.kpu_over)} layer(s) need more than the {board.kpu_sram:,} B KPU SRAM for their input + "
            f"output maps; nncase would stop with 'Allocator has ran out of memory':\n{rows}",
            lint.kpu_over[0].fix,
        )
    return lint


@dataclass
class Compiled:
    kmodel: Path  # the v5 file nncase wrote
    dump: Path  # nncase's dump folder (schedules, runtime ops)
    bytes: int
    reproducible: bool


def compile_stage(
    board: Board,
    exported: ExportedModel,
    calibration_npy: Path,
    tmp: Path,
    what: str,
    w: Worker | None = None,
    calibrate_method: str = DEFAULT_CALIBRATE_METHOD,
) -> Compiled:
    """nncase 1.9 (in its own process, ``w`` when one is already running) -> model.kmodel (v5) in
    ``tmp``; its failures become the project's errors with the op or layer named."""
    import contextlib

    import onnx

    kmodel, log_file, dump = tmp / "model.kmodel", tmp / "compile.log", tmp / "dump"
    try:
        with contextlib.nullcontext(w) if w is not None else Worker(board.nncase) as worker:
            res = worker.compile(
                CompileRequest(
                    onnx=exported.onnx_path,
                    out=kmodel,
                    calibration=calibration_npy,
                    dump_dir=dump,
                    input_shape=(1, 3, exported.input_size, exported.input_size),
                    input_range=exported.input_range,
                    calibrate_method=calibrate_method,
                    log=log_file,
                )
            )
    except ToolchainError as e:
        tail = log_file.read_text(errors="replace")[-1500:] if log_file.exists() else ""
        m = re.search(r"Not supported ONNX opcode: (\w+)", str(e))
        if m:
            nodes = [
                n.name or n.output[0] for n in onnx.load(str(exported.onnx_path)).graph.node if n.op_type == m.group(1)
            ]
            raise PokedexError(
                f"{what}: nncase 1.9 cannot import the ONNX op {m.group(1)} (node{'s' if len(nodes) > 1 else ''} "
                f"{', '.join(nodes[:5]) or '?'})",
                f"replace {m.group(1)} with ops nncase 1.9 imports (Conv, Clip/Relu, Add, Concat, pools, "
                "ReduceMean, Gemm...): see docs/kpu-rules.md",
            ) from e
        if "ran out of memory" in str(e):
            raise BudgetExceeded(
                f"nncase could not place a layer's maps in the {board.kpu_sram:,} B KPU SRAM: {e.message}",
                "lower the input size or the channels at the largest resolution",
            ) from e
        raise PokedexError(
            f"{what}: {e.message}\n{tail}",
            "an op nncase 1.9 cannot import or compile: see the KPU lint above and compile.log",
        ) from e
    return Compiled(kmodel, dump, res.bytes, res.reproducible)


@dataclass
class Measured:
    kmodel: Path  # the file the board loads (v3 re-emitted, or the v5 file)
    v5_kmodel: Path
    conversion: object | None  # the v3 re-emission (kmodel/from_nncase.Conversion), None for v5
    memory: MemoryReport  # run-time RAM of *that* file, as its loader allocates it


def measure_stage(comp: Compiled, fmt: str, log=print, board: Board | None = None) -> Measured:
    """Memory from the compiler's schedule; for v3, the file re-emitted and measured as the v3
    loader allocates it, and loaded the way the board's runtime loads it (MaixPy's kpu.load
    refuses files over 6 MiB and main-memory convolutions that raise the interrupt)."""
    mem = read_memory(comp.dump, comp.kmodel)
    if fmt == "v3":
        kmodel, conversion, mem = _as_v3(comp.kmodel, comp.dump, mem, log)
        if board is not None:
            from ..families import family
            from ..kmodel.interp import Interpreter

            rt = family(board.firmware.family).v3_runtime
            if rt is not None:
                Interpreter(conversion.data, path=str(kmodel), runtime=rt)
        return Measured(kmodel, comp.kmodel, conversion, mem)
    return Measured(comp.kmodel, comp.kmodel, None, mem)


def _family_config(exported: ExportedModel) -> dict | None:
    """The student family's settings (width, input, classes) when the model was built here."""
    if exported.torch_model is not None and hasattr(exported.torch_model, "config"):
        return dict(exported.torch_model.config)
    return None


def _refusal(verdict: Verdict, exported: ExportedModel, board: Board, note: str = "") -> BudgetExceeded:
    """The one over-budget error of both verdicts: the model file, the problems with their sizes,
    the largest items, and the options."""
    msg = f"{exported.source}: the model does not fit {board.name}:\n  " + "\n  ".join(verdict.problems)
    msg += note
    msg += "\nlargest items:\n" + "\n".join(f"  {b:>12,} B  {w}" for w, b in verdict.biggest)
    return BudgetExceeded(msg, "options:\n    - " + "\n    - ".join(verdict.options or ["shrink the model"]))


def precheck_stage(exported: ExportedModel, lint: LintReport, board: Board, budget: Budget, log=print) -> Verdict:
    """``budget.precheck`` on the exported graph, before calibration and nncase: stops
    (BudgetExceeded) when the weights alone cannot fit."""
    est = estimate(lint, exported.input_size, len(exported.classes))
    verdict = precheck(est, lint, board, budget, family_config=_family_config(exported))
    log(
        f"budget pre-check: weights {est.weights:,} B, estimated kmodel {est.kmodel:,} B, run-time RAM at least "
        f"{verdict.ram_used:,} B (model {est.runtime:,} + the app's {verdict.app_bytes:,}) of {budget.bytes:,} B"
    )
    if not verdict.fits:
        raise _refusal(verdict, exported, board, "\nrefused before compiling: nothing was compiled or written")
    return verdict


def judge_stage(
    mem: MemoryReport, lint: LintReport, board: Board, budget, exported: ExportedModel, log=print, note: str = ""
) -> Verdict:
    """``budget.judge`` on the measured file; stops (BudgetExceeded, with the largest items and the
    options, ``note`` under the problems) when it does not fit."""
    verdict = judge(mem, lint, board, budget, family_config=_family_config(exported))
    log(
        f"run-time RAM {verdict.ram_used:,} B of {verdict.ram_budget:,} B free system heap (model "
        f"{mem.runtime_total:,}: kmodel {mem.kmodel_bytes:,} + data {mem.data_bytes:,} + in {mem.input_bytes:,} + out "
        f"{mem.output_bytes:,}; "
        + "; ".join(f"{w} {b:,}" for w, b in verdict.app)
        + f"); KPU SRAM peak {mem.kpu_peak:,} B"
    )
    if not verdict.fits:
        raise _refusal(verdict, exported, board, note)
    return verdict


def measure_judged_stage(
    comp: Compiled, fmt: str, lint: LintReport, board: Board, budget: Budget, exported: ExportedModel, log=print
) -> Measured:
    """``measure_stage`` with the budget first: where the v3 step (the re-emission, or the board
    runtime's load) stops on a model whose v5 build is over the budget, the stop is the
    BudgetExceeded naming the v5 build's sizes, the v3 failure noted under them; where the v5
    build fits, the v3 failure stands."""
    try:
        return measure_stage(comp, fmt, log, board)
    except BudgetExceeded:
        raise
    except PokedexError as e:
        if fmt != "v3":
            raise
        mem5 = read_memory(comp.dump, comp.kmodel)
        judge_stage(
            mem5,
            lint,
            board,
            budget,
            exported,
            log,
            note=f"\n(figures of nncase's v5 build; the v3 re-emission stopped too: {e.message})",
        )
        raise


def verify_stage(
    opts: BuildOptions,
    exported: ExportedModel,
    hold,
    meas: Measured,
    board: Board,
    workers: int,
    tmp: Path,
    warnings: list[str],
    log=print,
):
    """Float (onnxruntime) vs the kmodel on the held-out images: for v3 every image through the v3
    interpreter (as the board's runtime computes it) and ``simulate_count`` of them through
    nncase's simulator too, bit for bit; for v5 the simulator. Returns (Verification, seconds);
    stops (VerificationFailed) past ``max_loss``."""
    conversion = meas.conversion
    t = time.time()
    f_logits = onnx_float_logits(exported.onnx_path, hold.x, exported.input_range)
    t_float = time.time() - t
    t_v3 = 0.0
    if conversion is not None:
        t = time.time()
        k_v3 = _run_v3(conversion.data, hold.x, conversion.output_shape)
        t_v3 = time.time() - t
        n_sim = len(hold) if opts.verify_full else min(len(hold), opts.simulate_count)
    else:
        n_sim = len(hold)
    t = time.time()
    k_sim = (
        simulate_parallel(meas.v5_kmodel, hold.x[:n_sim], workers=workers, nncase_version=board.nncase, workdir=tmp)
        if n_sim
        else None
    )
    t_sim = time.time() - t
    v3_check = None
    if conversion is not None:
        v3_check = _check_v3(k_v3, k_sim, t_v3, log, conversion.data, hold.x) if k_sim is not None else None
        k_board, board_fig = _board_runtime(board, k_v3, conversion.data, hold.x, conversion.output_shape, log)
        if v3_check is not None and board_fig is not None:
            v3_check["board_runtime"] = board_fig
        k_logits = k_board.reshape(len(hold), -1)
    else:
        k_logits = k_sim
    ver = compare(
        f_logits,
        k_logits,
        hold.labels,
        exported.classes,
        opts.threshold,
        judge_agreement=exported.source_kind != "recipe",
    )
    ver.v3_vs_v5 = v3_check
    ver.seconds = {"float": t_float, "simulator": t_sim, "simulated_images": n_sim, "workers": workers}
    if conversion is not None:
        ver.seconds["v3_interpreter"] = t_v3
    if exported.source_kind == "recipe":
        ver.notes.append(
            "seeded random weights: near-tied logits make top-1 agreement a weak signal; "
            "the cosine of logits is the fidelity figure here"
        )
    f1 = "-" if ver.float_top1 is None else f"{ver.float_top1:.1f} %"
    k1 = "-" if ver.kmodel_top1 is None else f"{ver.kmodel_top1:.1f} %"
    log(
        f"verify: {ver.images} images; float top-1 {f1}, kmodel top-1 {k1}; "
        f"agreement {ver.agreement_top1:.1f} %; cosine mean {ver.cosine_mean:.4f} "
        f"({t_sim:.1f} s in the simulator on {workers} workers for {n_sim} images"
        f"{f', {t_v3:.1f} s in the v3 interpreter for {len(hold)}' if conversion is not None else ''})"
    )
    if ver.flagged:
        msg = (
            f"the kmodel lost {ver.loss_pp:.2f} pp of top-1"
            if ver.loss_pp is not None
            else f"float and kmodel disagree on {100 - ver.agreement_top1:.1f} % of images"
        )
        msg += f" (threshold {opts.threshold} pp)"
        lost = ver.loss_pp if ver.loss_pp is not None else 100 - ver.agreement_top1
        if opts.max_loss is not None and lost > opts.max_loss:
            raise VerificationFailed(
                msg + f", over --max-loss {opts.max_loss}",
                "calibrate with more images of the kind the camera sees (--calibration DIR)",
            )
        warnings.append("verification flagged: " + msg)
        log(f"WARNING: {msg}")
    return ver, t_float + t_sim + t_v3


def _need_toolchain(board: Board) -> None:
    if not tc_env.venv_python(tc_env.toolchain_dir(board.nncase)).exists():
        raise PokedexError(
            f"the nncase {board.nncase} compiler venv ({tc_env.toolchain_dir(board.nncase)}) is not installed",
            "run `pokedex-host toolchain install` (needs a Python 3.10 interpreter)",
        )


def build_kmodel(opts: BuildOptions, log=print) -> BuildResult:
    t_start = time.time()
    timings: dict[str, float] = {}
    warnings: list[str] = []
    if opts.calibrate_method not in CALIBRATE_METHODS:
        raise PokedexError(
            f"calibrate method {opts.calibrate_method!r} is not one nncase 1.9 has",
            f"use one of {', '.join(CALIBRATE_METHODS)}",
        )
    board = get_board(opts.board)
    budget = resolve_budget(board, opts.budget)
    log(f"budget: {budget.bytes:,} B of free system heap after boot, from {budget.named(board)}")
    for w in budget.warnings:
        log(f"WARNING: {w}")
    warnings += budget.warnings
    fmt = _choose_format(board, opts.format, warnings)
    for w in warnings[len(budget.warnings) :]:
        log(f"WARNING: {w}")
    spec = calib_mod.load_spec(opts.calibration_spec)
    workers = opts.workers or os.cpu_count() or 1

    with tempfile.TemporaryDirectory(prefix="pokedex-build-") as tmp_s:
        tmp = Path(tmp_s)
        t = time.time()
        exported = export_model(
            opts.model, tmp, input_size=opts.input_size, input_range01=opts.input_range01, classes=opts.classes, log=log
        )
        timings["export"] = time.time() - t
        log(
            f"exported {opts.model} -> ONNX {exported.input_size}x{exported.input_size}, "
            f"{len(exported.classes)} classes; {exported.simplifier}"
        )
        lint = lint_stage(exported, board, log)
        precheck_stage(exported, lint, board, budget, log)
        _need_toolchain(board)

        input_spec = InputSpec(exported.input_size)
        t = time.time()
        calib, hold = calib_mod.calibration_and_holdout(
            opts.calibration,
            spec,
            exported.input_size,
            opts.calibration_count,
            0 if opts.verify_data else opts.verify_count,
            log=log,
        )
        if opts.verify_data and opts.verify_count > 0:
            hold = calib_mod.pick_images(
                opts.verify_data, opts.verify_count, exported.input_size, spec.seed + 1, log=log
            )
        timings["load_images"] = time.time() - t
        log(f"calibration: {len(calib)} images from {calib.source}; held-out: {len(hold)} images")
        calib_npy = tmp / "calibration.npy"
        np.save(calib_npy, calib.x)

        t = time.time()
        comp = compile_stage(
            board, exported, calib_npy, tmp, str(opts.model), w=None, calibrate_method=opts.calibrate_method
        )
        timings["compile"] = time.time() - t
        if not comp.reproducible:
            warnings.append(
                "the compiler ran with address randomisation on (not Linux, or refused): nncase 1.9 "
                "leaves a few unused bits uninitialised, so rebuilding may not give identical bytes"
            )
        log(f"compiled in {timings['compile']:.1f} s: {comp.bytes:,} B kmodel")
        t = time.time()
        meas = measure_judged_stage(comp, fmt, lint, board, budget, exported, log)
        if fmt == "v3":
            timings["v3"] = time.time() - t
        kmodel, v5_kmodel, conversion, mem = meas.kmodel, meas.v5_kmodel, meas.conversion, meas.memory
        disagreements = compare_with_compiler(lint, comp.dump)
        for d in disagreements:
            log(f"WARNING: lint/compiler disagreement: {d}")
        for c in mem.crosscheck:
            log(f"WARNING: memory cross-check: {c}")
        verdict = judge_stage(mem, lint, board, budget, exported, log)
        ver, v3_check = None, None
        if opts.verify_count > 0 and len(hold):
            ver, seconds = verify_stage(opts, exported, hold, meas, board, workers, tmp, warnings, log)
            timings["verify"] = seconds
            v3_check = ver.v3_vs_v5
        elif conversion is not None:
            # no verification asked for: still run two calibration images both ways, so that no v3
            # file leaves here unchecked against the simulator
            x = calib.x[:2]
            k = simulate_parallel(v5_kmodel, x, workers=1, nncase_version=board.nncase, workdir=tmp)
            t = time.time()
            v3_out = _run_v3(conversion.data, x, conversion.output_shape)
            v3_check = _check_v3(v3_out, k, time.time() - t, log, conversion.data, x)
        timings["total"] = time.time() - t_start
        record = BuildRecord(
            source=Path(opts.model),
            board=board,
            export=exported,
            input=input_spec,
            lint=lint,
            lint_disagreements=disagreements,
            calibration=calib,
            calibration_seed=spec.seed,
            calibrate_method=opts.calibrate_method,
            holdout=hold,
            kmodel_version=KMODEL_VERSION[fmt],
            nncase=board.nncase,
            reproducible=comp.reproducible,
            memory=mem,
            budget_source=budget.source,
            verdict=verdict,
            verification=ver,
            conversion=conversion,
            v5_kmodel=v5_kmodel if conversion is not None else None,
            v3_check=v3_check,
            warnings=warnings,
            timings=timings,
        )
        with atomic_dir(opts.out) as stage:
            _write_artifacts(stage, tmp, kmodel, record)
    log(
        f"wrote {opts.out}/ (model.kmodel{' (v3), model.v5.kmodel' if fmt == 'v3' else ''}, classes.txt, "
        "manifest.json, report.md, budget.png)"
    )
    return BuildResult(Path(opts.out), verdict.fits, mem.as_dict(), ver.as_dict() if ver else None, warnings)


def _write_artifacts(stage: Path, tmp: Path, kmodel: Path, record: BuildRecord) -> None:
    from ..artifact import write_manifest
    from .manifest import manifest_document
    from .report import budget_png, report_markdown

    shutil.copyfile(kmodel, stage / "model.kmodel")
    if record.v5_kmodel is not None:  # what the v3 file was re-emitted from, for CanMV and for checking
        shutil.copyfile(record.v5_kmodel, stage / "model.v5.kmodel")
    atomic_write_text(stage / "classes.txt", classes_txt(record.export.classes))
    shutil.copyfile(record.export.onnx_path, stage / "model.onnx")
    comp = stage / "compiler"
    comp.mkdir()
    for f in list((tmp / "dump" / "codegen").glob("*.sched")) + [tmp / "dump" / "kmodel_info.txt", tmp / "compile.log"]:
        if f.exists():
            shutil.copyfile(f, comp / f.name)
    for f in (tmp / "dump").glob("*/*/runtime_ops.txt"):
        shutil.copyfile(f, comp / f"{f.parent.parent.name}.{f.parent.name}.runtime_ops.txt")
    budget_png(stage / "budget.png", record.memory, record.verdict, record.board.name)
    atomic_write_text(stage / "report.md", report_markdown(record))
    files = ["model.kmodel", "classes.txt", "model.onnx", "report.md", "budget.png"]
    if record.v5_kmodel is not None:
        files.insert(1, "model.v5.kmodel")
    write_manifest(stage, manifest_document(stage, record, files))
