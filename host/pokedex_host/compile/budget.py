"""Does the model fit the board? The verdict, before compiling (from the graph's weights) and after
(from the compiler's schedule), and what to change when it does not.

The budget is the free system heap after boot (``Maix.utils.heap_free()`` before the app allocates
anything): the profile's ``model_ram`` or ``--budget``. The GC heap is not in it (MaixPy mallocs
the GC heap from the system heap at boot), so it is not counted again. What the app takes from it
is: the camera buffers ``sensor.set_framesize`` mallocs at the profile's frame size
(:func:`app_allocations`), and the model (kmodel file + main memory + input + output).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..boards import Board, available_boards, load_board_file
from ..sizes import format_size, short_size
from .lint import LintEntry, LintReport
from .memory import MemoryReport

BUDGET_MEANS = (
    "the free system heap after boot (Maix.utils.heap_free() before the app allocates anything; "
    "the GC heap is already out of it), shared by the model and the app's camera buffers"
)
GC_HEAP_SMALL = 256 * 1024  # the GC heap Sipeed's large-model demos run with (utils.gc_heap_size(256*1024))


@dataclass
class Budget:
    """The free system heap a build is judged against, and where that figure comes from."""

    bytes: int
    source: str  # "profile" | "--budget" | another caller's name ("shrink")
    note: str = ""  # the profile's model_ram_source, or what --budget stands for
    warnings: list[str] = field(default_factory=list)

    def named(self, board: Board) -> str:
        """Where the figure comes from, in words: for reports and errors."""
        if self.source == "profile":
            return f"the {board.name} profile's model_ram ({board.path.name}): {self.note}"
        return f"{self.source}: {self.note}" if self.note else self.source


def resolve_budget(board: Board, override: int | None) -> Budget:
    fw_leaves = board.firmware.model_ram
    if override is None:
        return Budget(fw_leaves, "profile", board.firmware.model_ram_source)
    b = Budget(override, "--budget", "the free system heap the board reports, as given")
    if override > board.general_sram:
        b.warnings.append(
            f"--budget {format_size(override)} is more than the K210's whole general SRAM "
            f"({format_size(board.general_sram)}): no firmware can leave that much free"
        )
    if override > fw_leaves:
        b.warnings.append(
            f"--budget {short_size(override)} is above what {board.firmware.family} {board.firmware.flavour} firmware "
            f"leaves free on {board.name} by its profile (about {short_size(fw_leaves)}: "
            f"{board.firmware.model_ram_source}): unless your board reports that much free heap "
            "(`pokedex-host probe`), a model this size may fail to load with ERR_NO_MEM (2006) on it"
        )
    return b


def app_allocations(board: Board) -> list[tuple[str, int]]:
    """What the camera app mallocs from the system heap beside the model: the camera buffers
    (firmware/main.py setup_camera: sensor.reset() without dual_buff, then set_framesize)."""
    cam = board.camera
    w, h = cam.size
    return [(f"camera buffers, {cam.framesize} {w}x{h} (RGB565 frame + RGB888 copy for the KPU)", cam.buffer_bytes)]


def gc_heap_line(board: Board) -> str:
    """Why the GC heap is not counted: it is out of the budget already."""
    gc = board.firmware.gc_heap_size
    if not gc:
        return "No GC heap (no MicroPython)"
    return (
        f"GC heap {gc:,} B: not counted, the firmware takes it from the system heap at boot, before "
        "the free heap is read"
    )


@dataclass
class Verdict:
    fits: bool
    ram_used: int  # system heap the app needs: the model + the app's allocations
    ram_budget: int  # the free system heap after boot
    kpu_peak: int
    kpu_sram: int
    problems: list[str]
    biggest: list[tuple[str, int]]  # (what, bytes), largest first
    options: list[str]
    model_bytes: int = 0  # the model's run-time RAM (kmodel + main memory + input + output)
    app: list[tuple[str, int]] = field(default_factory=list)  # the app's allocations beside it
    budget_named: str = ""  # where the budget figure comes from
    gc_heap: str = ""  # why the GC heap is not counted

    @property
    def app_bytes(self) -> int:
        return app_total(self.app)

    def as_dict(self) -> dict:
        return {
            "fits": self.fits,
            "ram_used": self.ram_used,
            "ram_budget": self.ram_budget,
            "ram_headroom": self.ram_budget - self.ram_used,
            "budget_means": BUDGET_MEANS,
            "budget_from": self.budget_named,
            "model_bytes": self.model_bytes,
            "app": [{"what": w, "bytes": b} for w, b in self.app],
            "model_room": self.ram_budget - self.app_bytes,
            "gc_heap": self.gc_heap,
            "kpu_sram_peak": self.kpu_peak,
            "kpu_sram": self.kpu_sram,
            "problems": self.problems,
            "options": self.options,
        }

    def table(self) -> str:
        rows = ["| what | bytes |", "|---|---:|"]
        rows += [f"| {w} | {b:,} |" for w, b in self.biggest]
        return "\n".join(rows)


def app_total(app: list[tuple[str, int]]) -> int:
    return sum(b for _, b in app)


def _app_words(app: list[tuple[str, int]]) -> str:
    return " + ".join(f"{w} {b:,}" for w, b in app)


def judge(
    mem: MemoryReport, lint: LintReport, board: Board, budget: Budget, *, family_config: dict | None = None
) -> Verdict:
    problems = []
    app = app_allocations(board)
    need = mem.runtime_total + app_total(app)
    if need > budget.bytes:
        problems.append(
            f"needs {format_size(need)} of RAM at run time: the model {mem.runtime_total:,} (kmodel "
            f"{mem.kmodel_bytes:,} + data {mem.data_bytes:,} + input {mem.input_bytes:,} + output "
            f"{mem.output_bytes:,}) + {_app_words(app)}; the budget is {format_size(budget.bytes)} of free "
            f"system heap ({budget.named(board)}): over by {need - budget.bytes:,} B"
        )
    if mem.kpu_peak > board.kpu_sram:
        problems.append(f"KPU SRAM peak {mem.kpu_peak:,} B > {board.kpu_sram:,} B")
    region = board.flash.model_region_end - board.flash.model_address
    if mem.kmodel_bytes > region:
        problems.append(
            f"kmodel {mem.kmodel_bytes:,} B does not fit the flash region for models "
            f"(0x{board.flash.model_address:X}-0x{board.flash.model_region_end:X}, {region:,} B)"
        )
    biggest = biggest_items(mem, lint, app=app)
    room = budget.bytes - app_total(app)
    opts = options(mem, lint, room, family_config) + more_room(board, budget, mem.runtime_total) if problems else []
    return Verdict(
        not problems,
        need,
        budget.bytes,
        mem.kpu_peak,
        board.kpu_sram,
        problems,
        biggest,
        opts,
        model_bytes=mem.runtime_total,
        app=app,
        budget_named=budget.named(board),
        gc_heap=gc_heap_line(board),
    )


BN_BYTES = 8  # a KPU layer's batch-norm table: one u64 per output channel (kpu.h)
# what a KPU layer takes beside its weights and batch-norm table: its argument and register blocks,
# its activation table and the alignment between them (release v8's kmodel: 14,460 B for 29 layers)
KPU_LAYER_BYTES = 500


@dataclass(frozen=True)
class Estimate:
    """A kmodel's size and run-time RAM judged from the ONNX graph before compiling.

    The uint8 kmodel holds one byte per weight of a layer the KPU runs and four per weight of a
    layer the CPU runs in float (lint's placement), plus per-layer tables. The compiler's working
    data is known only after compiling and is not in ``runtime``: that is a floor.
    """

    kpu_weights: int  # bytes (1 per weight)
    cpu_weights: int  # bytes (4 per weight: float)
    tables: int  # batch-norm tables and per-layer blocks of the KPU layers
    input_bytes: int
    output_bytes: int
    kpu_peak: int  # the largest layer's input + output maps in KPU SRAM

    @property
    def weights(self) -> int:
        return self.kpu_weights + self.cpu_weights

    @property
    def kmodel(self) -> int:
        return self.weights + self.tables

    @property
    def runtime(self) -> int:
        """Run-time RAM without the working data: kmodel + input + output."""
        return self.kmodel + self.input_bytes + self.output_bytes

    def as_memory(self) -> MemoryReport:
        """The estimate as the figures ``options`` and ``biggest_items`` read (no working data)."""
        return MemoryReport(
            kmodel_bytes=self.kmodel,
            input_bytes=self.input_bytes,
            output_bytes=self.output_bytes,
            data_bytes=0,
            kpu_peak=self.kpu_peak,
        )


def _out_channels(e: LintEntry) -> int:
    return e.shape_out[1] if len(e.shape_out) >= 2 else 0


def estimate(lint: LintReport, input_size: int, outputs: int) -> Estimate:
    """The kmodel and run-time figures of a linted graph with a 3 x S x S uint8 input and
    ``outputs`` float logits."""
    kpu = cpu = tables = 0
    for e in lint.entries:
        if not e.weights:
            continue
        if e.placement == "cpu":
            cpu += 4 * e.weights
        else:
            kpu += e.weights
            tables += BN_BYTES * _out_channels(e) + KPU_LAYER_BYTES
    return Estimate(
        kpu, cpu, tables, 3 * input_size * input_size, 4 * outputs, max((e.kpu_bytes for e in lint.entries), default=0)
    )


def precheck(
    est: Estimate, lint: LintReport, board: Board, budget: Budget, *, family_config: dict | None = None
) -> Verdict:
    """The verdict before compiling: it fails only where the weights alone cannot fit the budget or
    the flash region, which no compile can change; everything else waits for ``judge``."""
    problems = []
    app = app_allocations(board)
    room = budget.bytes - app_total(app)
    if est.weights > room:
        split = f"{est.kpu_weights:,} B on the KPU at 1 B a weight"
        if est.cpu_weights:
            split += f" + {est.cpu_weights:,} B in float on the CPU at 4 B a weight"
        problems.append(
            f"its weights alone take {format_size(est.weights)} in a uint8 kmodel ({split}); the budget (from "
            f"{'the profile' if budget.source == 'profile' else budget.source}) is {format_size(budget.bytes)} of "
            f"free system heap ({budget.named(board)}), less the app's {_app_words(app)} leaves {room:,} B for the "
            f"model: over by {est.weights - room:,} B"
        )
    region = board.flash.model_region_end - board.flash.model_address
    if est.weights > region:
        problems.append(
            f"its weights alone ({est.weights:,} B) do not fit the flash region for models "
            f"(0x{board.flash.model_address:X}-0x{board.flash.model_region_end:X}, {region:,} B)"
        )
    if problems:
        problems.append(
            f"estimated kmodel {format_size(est.kmodel)}; run-time RAM at least "
            f"{format_size(est.runtime + app_total(app))} (kmodel + input {est.input_bytes:,} + output "
            f"{est.output_bytes:,}, before the compiler's working data, + {_app_words(app)})"
        )
    mem = est.as_memory()
    opts = options(mem, lint, room, family_config) + more_room(board, budget, est.runtime) if problems else []
    return Verdict(
        not problems,
        est.runtime + app_total(app),
        budget.bytes,
        est.kpu_peak,
        board.kpu_sram,
        problems,
        biggest_items(mem, lint, app=app),
        opts,
        model_bytes=est.runtime,
        app=app,
        budget_named=budget.named(board),
        gc_heap=gc_heap_line(board),
    )


def _lacks_note(b: Board) -> str:
    """What the app does without on ``b``'s firmware build (the minimum build: no card locator)."""
    from ..families import APP_IMAGE_CALLS

    build = b.firmware.build
    missing = build.lacks(APP_IMAGE_CALLS["card locator"]) if build is not None else []
    if not missing:
        return ""
    side = min(b.camera.window)
    return (
        f"; it has no img.{', img.'.join(missing[:2])}, so the app classifies the centre {side} x {side} "
        "window instead of locating the card"
    )


def more_room(board: Board, budget: Budget, need: int) -> list[str]:
    """The fixes that leave the model's layers as they are: fewer classes, a profile (firmware) that
    leaves more room for a model, a smaller GC heap, a larger ``--budget`` read off the board. ``need``
    is the model's own run-time RAM."""
    out = [
        "fewer classes: the classifier's weights grow with the class count (a recipe's `classes`; "
        "--classes FILE names an ONNX model's outputs)"
    ]
    room = budget.bytes - app_total(app_allocations(board))
    others = sorted(
        (load_board_file(p) for name, p in available_boards().items() if name != board.name),
        key=lambda b: -b.model_room,
    )
    roomier = [b for b in others if b.model_room > room]
    if roomier:
        out.append(
            "a board profile with more room: "
            + ", ".join(
                f"--board {b.name} ({b.description}: {short_size(b.firmware.model_ram)} free heap, "
                f"{short_size(b.model_room)} for a model beside the camera"
                + ("" if b.model_room >= need else f", still short of {short_size(need)}")
                + _lacks_note(b)
                + ")"
                for b in roomier
            )
        )
    gc = board.firmware.gc_heap_size
    if gc > GC_HEAP_SMALL and board.firmware.build is not None:
        out.append(
            f"a smaller GC heap: `from Maix import utils; utils.gc_heap_size({GC_HEAP_SMALL})`, then reset, "
            f"leaves {gc - GC_HEAP_SMALL:,} B more system heap free (the {board.name} profile has "
            f"{gc:,} B); read the new figure with `pokedex-host probe` and pass it as --budget"
        )
    fw = short_size(board.firmware.model_ram)
    if budget.source == "profile":
        out.append(
            f"--budget SIZE: the free system heap your board reports (`pokedex-host probe`, or "
            f"`Maix.utils.heap_free()` at the REPL before the app starts), where it is more than the "
            f"{board.name} profile's {fw} ({board.firmware.model_ram_source})"
        )
    else:
        out.append(
            f"a larger --budget than {short_size(budget.bytes)}, if your board reports more free heap "
            f"(`pokedex-host probe`; the {board.name} profile's figure is {fw})"
        )
    return out


def biggest_items(
    mem: MemoryReport, lint: LintReport, n: int = 8, app: list[tuple[str, int]] = ()
) -> list[tuple[str, int]]:
    items: list[tuple[str, int]] = list(app)
    for e in lint.entries:
        if e.weights:
            per = 4 if e.placement == "cpu" else 1
            where = "CPU float" if e.placement == "cpu" else "KPU uint8"
            items.append((f"weights of {e.node} ({where})", e.weights * per))
    for b in mem.data_buffers[:n]:
        items.append((f"working buffer {b.name} {list(b.shape)} {b.dtype}", b.bytes))
    items.append(("model input", mem.input_bytes))
    items.append(("model output", mem.output_bytes))
    return sorted(items, key=lambda x: -x[1])[:n]


def options(mem: MemoryReport, lint: LintReport, budget: int, cfg: dict | None) -> list[str]:
    out = []
    heads = [
        e for e in lint.entries if e.placement == "cpu" and e.cpu_float_bytes and e.op in ("Conv", "Gemm", "MatMul")
    ]
    for e in heads:
        out.append(f"{e.node} runs on the CPU in float ({e.cpu_float_bytes:,} B): {e.fix}")
    weights = sum(e.weights * (4 if e.placement == "cpu" else 1) for e in lint.entries)  # bytes in the kmodel
    over = mem.runtime_total - budget
    if over > 0 and weights:
        fixed = mem.runtime_total - weights
        room = budget - fixed
        if cfg and "width" in cfg:
            w = float(cfg["width"])
            scale = max(room, 0) / weights
            w_new = math.floor(w * math.sqrt(scale) * 20) / 20 if scale > 0 else 0
            if w_new > 0:
                out.append(
                    f"width multiplier {w} -> {w_new:.2f} (weights grow with width squared; about "
                    f"{int(weights * (w_new / w) ** 2):,} B of weights instead of {weights:,})"
                )
            else:
                out.append("the non-weight memory alone is over the budget: lower the input size first")
        else:
            out.append(
                f"cut about {over:,} B of weights ({over / max(weights, 1):.0%} of {weights:,}): fewer channels "
                "(a smaller width multiplier) in the widest layers"
            )
    head_w = max(
        (
            e.weights
            for e in lint.entries
            if e.op == "Conv" and e.shape_out and len(e.shape_out) == 4 and e.shape_out[2] * e.shape_out[3] <= 64
        ),
        default=0,
    )
    if over > 0 and head_w:
        out.append(
            f"class grouping / a low-rank head: the classifier holds {head_w:,} B of weights; "
            "a 256-wide bottleneck before it or a two-level head over species groups shrinks that"
        )
    if mem.data_bytes > budget // 4 or mem.kpu_peak > 0.8 * 2**21:
        size = cfg.get("input") if cfg else None
        out.append(
            "a smaller input (working maps grow with the square of the side"
            + (f"; {size} -> {int(size * 0.75) // 32 * 32}" if size else "")
            + ")"
        )
    return out
