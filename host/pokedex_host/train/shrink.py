"""``pokedex-host shrink``: which student sizes fit a board, asked of the compiler, not guessed.

For each candidate (width multiplier x input size) a seeded, untrained student goes through the
same stages as ``build-kmodel`` (``build/pipeline.py``: export, lint, compile with nncase 1.9 on
two synthetic calibration frames -- memory does not depend on weights --, the measurement of the
file the board loads, v3 re-emission included) and the same verdict (``build/budget.judge``), so
shrink and build-kmodel cannot disagree about what fits. The table is printed; the largest
candidate that fits (most parameters, then the larger input) is the one ``shrink`` trains unless
``--dry-run``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..boards import Board
from ..errors import PokedexError


@dataclass
class Candidate:
    width: float
    input: int
    params: int
    fits: bool = False
    ram: int = 0
    kpu_peak: int = 0
    kmodel_bytes: int = 0
    cpu_layers: int = 0
    why: str = ""


def evaluate_candidates(
    board: Board,
    budget: int,
    widths: list[float],
    inputs: list[int],
    classes: int,
    family: str = "kpu_mobilenet_v1",
    fmt: str | None = None,
    log=print,
) -> list[Candidate]:
    import torch

    from ..compile.budget import Budget, judge
    from ..compile.export import export_model
    from ..compile.pipeline import compile_stage, lint_stage, measure_stage
    from ..models import create_model
    from ..toolchain import Worker

    fmt = fmt or board.firmware.default_format
    quiet = lambda m: None  # noqa: E731
    out: list[Candidate] = []
    with tempfile.TemporaryDirectory(prefix="pokedex-shrink-") as tmp_s, Worker(board.nncase) as w:
        tmp = Path(tmp_s)
        for width in widths:
            for size in inputs:
                d = tmp / f"w{width}_s{size}"
                d.mkdir()
                torch.manual_seed(0)
                try:
                    model = create_model(family, width=width, input=size, classes=classes).eval()
                except ValueError as e:
                    out.append(Candidate(width, size, 0, why=str(e)))
                    continue
                c = Candidate(width, size, sum(p.numel() for p in model.parameters()))
                recipe = d / "r.toml"
                recipe.write_text(
                    f'family = "{family}"\n[config]\nwidth = {width}\ninput = {size}\nclasses = {classes}\n'
                )
                try:
                    ex = export_model(recipe, d, log=quiet)
                    lint = lint_stage(ex, board, quiet)
                    c.cpu_layers = len(lint.cpu_fallbacks)
                    np.save(d / "c.npy", np.random.default_rng(0).integers(0, 256, (2, 3, size, size), dtype=np.uint8))
                    meas = measure_stage(
                        compile_stage(board, ex, d / "c.npy", d, f"width {width} @ {size}", w=w), fmt, quiet, board
                    )
                except PokedexError as e:  # what build-kmodel would stop with
                    c.why = str(e).splitlines()[0].replace(f"{d}/", "")[:110]
                    out.append(c)
                    log(_row(c))
                    continue
                mem = meas.memory
                verdict = judge(mem, lint, board, Budget(budget, "shrink"))
                c.ram, c.kpu_peak, c.kmodel_bytes = mem.runtime_total, mem.kpu_peak, mem.kmodel_bytes
                c.fits = verdict.fits
                if not c.fits:
                    c.why = "; ".join(verdict.problems)[:110]
                out.append(c)
                log(_row(c))
    return out


def _row(c: Candidate) -> str:
    return (
        f"  w {c.width:<5} in {c.input:<4} params {c.params:>10,}  kmodel {c.kmodel_bytes:>10,}  RAM {c.ram:>10,}  "
        f"KPU {c.kpu_peak:>9,}  {'FITS' if c.fits else 'no: ' + c.why}"
    )


def choose(cands: list[Candidate]) -> Candidate:
    fitting = [c for c in cands if c.fits]
    if not fitting:
        raise PokedexError("no candidate fits the budget", "try smaller widths or inputs, or class grouping")
    return max(fitting, key=lambda c: (c.params, c.input))
