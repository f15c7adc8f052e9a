"""Does the compiled model fit the board? The verdict, and what to change when it does not."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..boards import Board
from .lint import LintReport
from .memory import MemoryReport
from ..sizes import format_size, short_size


@dataclass
class Budget:
    bytes: int
    source: str  # "profile" | "--budget"
    warnings: list[str] = field(default_factory=list)


def resolve_budget(board: Board, override: int | None) -> Budget:
    fw_leaves = board.firmware.model_ram
    if override is None:
        return Budget(fw_leaves, "profile")
    b = Budget(override, "--budget")
    if override > board.general_sram:
        b.warnings.append(
            f"--budget {format_size(override)} is more than the K210's whole general SRAM "
            f"({format_size(board.general_sram)}): no firmware can give a model that much"
        )
    if override > fw_leaves:
        b.warnings.append(
            f"--budget {short_size(override)} is above what {board.firmware.family} {board.firmware.flavour} firmware "
            f"leaves for a model on {board.name} (about {short_size(fw_leaves)}): a model this size may fail to load "
            "with ERR_NO_MEM (2006) on the board"
        )
    return b


@dataclass
class Verdict:
    fits: bool
    ram_used: int
    ram_budget: int
    kpu_peak: int
    kpu_sram: int
    problems: list[str]
    biggest: list[tuple[str, int]]  # (what, bytes), largest first
    options: list[str]

    def as_dict(self) -> dict:
        return {
            "fits": self.fits,
            "ram_used": self.ram_used,
            "ram_budget": self.ram_budget,
            "ram_headroom": self.ram_budget - self.ram_used,
            "kpu_sram_peak": self.kpu_peak,
            "kpu_sram": self.kpu_sram,
            "problems": self.problems,
            "options": self.options,
        }

    def table(self) -> str:
        rows = ["| what | bytes |", "|---|---:|"]
        rows += [f"| {w} | {b:,} |" for w, b in self.biggest]
        return "\n".join(rows)


def judge(mem: MemoryReport, lint: LintReport, board: Board, budget: Budget, *, family_config: dict | None = None) -> Verdict:
    problems = []
    if mem.runtime_total > budget.bytes:
        problems.append(
            f"needs {format_size(mem.runtime_total)} of RAM at run time (kmodel {mem.kmodel_bytes:,} + data "
            f"{mem.data_bytes:,} + input {mem.input_bytes:,} + output {mem.output_bytes:,}), "
            f"budget is {format_size(budget.bytes)}: over by {mem.runtime_total - budget.bytes:,} B"
        )
    if mem.kpu_peak > board.kpu_sram:
        problems.append(f"KPU SRAM peak {mem.kpu_peak:,} B > {board.kpu_sram:,} B")
    region = board.flash.model_region_end - board.flash.model_address
    if mem.kmodel_bytes > region:
        problems.append(f"kmodel {mem.kmodel_bytes:,} B does not fit the flash region for models "
                        f"(0x{board.flash.model_address:X}-0x{board.flash.model_region_end:X}, {region:,} B)")
    biggest = biggest_items(mem, lint)
    return Verdict(not problems, mem.runtime_total, budget.bytes, mem.kpu_peak, board.kpu_sram, problems, biggest,
                   options(mem, lint, budget.bytes, family_config) if problems else [])


def biggest_items(mem: MemoryReport, lint: LintReport, n: int = 8) -> list[tuple[str, int]]:
    items: list[tuple[str, int]] = []
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
    heads = [e for e in lint.entries if e.placement == "cpu" and e.cpu_float_bytes and e.op in ("Conv", "Gemm", "MatMul")]
    for e in heads:
        out.append(f"{e.node} runs on the CPU in float ({e.cpu_float_bytes:,} B): {e.fix}")
    weights = sum(e.weights for e in lint.entries)
    over = mem.runtime_total - budget
    if over > 0 and weights:
        fixed = mem.runtime_total - weights
        room = budget - fixed
        if cfg and "width" in cfg:
            w = float(cfg["width"])
            scale = max(room, 0) / weights
            w_new = math.floor(w * math.sqrt(scale) * 20) / 20 if scale > 0 else 0
            if w_new > 0:
                out.append(f"width multiplier {w} -> {w_new:.2f} (weights grow with width squared; about "
                           f"{int(weights * (w_new / w) ** 2):,} B of weights instead of {weights:,})")
            else:
                out.append("the non-weight memory alone is over the budget: lower the input size first")
        else:
            out.append(f"cut about {over:,} B of weights ({over / max(weights, 1):.0%} of {weights:,}): fewer channels "
                       "(a smaller width multiplier) in the widest layers")
    head_w = max((e.weights for e in lint.entries if e.op == "Conv" and e.shape_out and len(e.shape_out) == 4
                  and e.shape_out[2] * e.shape_out[3] <= 64), default=0)
    if over > 0 and head_w:
        out.append(f"class grouping / a low-rank head: the classifier holds {head_w:,} B of weights; "
                   "a 256-wide bottleneck before it or a two-level head over species groups shrinks that")
    if mem.data_bytes > budget // 4 or mem.kpu_peak > 0.8 * 2**21:
        size = cfg.get("input") if cfg else None
        out.append("a smaller input (working maps grow with the square of the side"
                   + (f"; {size} -> {int(size * 0.75) // 32 * 32}" if size else "") + ")")
    return out
