"""``pokedex-host shrink``: which student sizes fit a board, asked of the compiler, not guessed.

For each candidate (width multiplier x input size) a seeded, untrained student is exported and
compiled with nncase 1.9 (two synthetic calibration frames: memory does not depend on weights),
and its run-time RAM and KPU SRAM peak are read from the compiler's schedule. The table is
printed; the largest candidate that fits (most parameters, then the larger input) is the one
``shrink`` trains unless ``--dry-run``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..boards import Board
from ..errors import PokedexError
from ..lint import lint_model
from ..memory import read_memory


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


def evaluate_candidates(board: Board, budget: int, widths: list[float], inputs: list[int], classes: int,
                        family: str = "kpu_mobilenet_v1", log=print) -> list[Candidate]:
    import onnx
    import torch

    from ..export import export_model
    from ..models import create_model
    from ..toolchain import CompileRequest, ToolchainError, Worker

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
                recipe.write_text(f'family = "{family}"\n[config]\nwidth = {width}\ninput = {size}\nclasses = {classes}\n')
                ex = export_model(recipe, d, log=lambda m: None)
                lint = lint_model(onnx.load(str(ex.onnx_path)), board.kpu_sram)
                c.cpu_layers = len(lint.cpu_fallbacks)
                if lint.kpu_over:
                    c.why = f"KPU SRAM: {lint.kpu_over[0].node} needs {lint.kpu_over[0].kpu_bytes:,} B"
                    out.append(c)
                    log(_row(c))
                    continue
                np.save(d / "c.npy", np.random.default_rng(0).integers(0, 256, (2, 3, size, size), dtype=np.uint8))
                try:
                    w.compile(CompileRequest(ex.onnx_path, d / "m.kmodel", d / "c.npy", d / "dump", (1, 3, size, size),
                                             ex.input_range, log=d / "log"))
                except ToolchainError as e:
                    c.why = "compile failed: " + e.message[:80]
                    out.append(c)
                    log(_row(c))
                    continue
                mem = read_memory(d / "dump", d / "m.kmodel")
                c.ram, c.kpu_peak, c.kmodel_bytes = mem.runtime_total, mem.kpu_peak, mem.kmodel_bytes
                c.fits = c.ram <= budget and c.kpu_peak <= board.kpu_sram and not c.cpu_layers
                if not c.fits:
                    c.why = (f"RAM {c.ram:,} > {budget:,}" if c.ram > budget else
                             f"{c.cpu_layers} layers off the KPU" if c.cpu_layers else "KPU SRAM")
                out.append(c)
                log(_row(c))
    return out


def _row(c: Candidate) -> str:
    return (f"  w {c.width:<5} in {c.input:<4} params {c.params:>10,}  kmodel {c.kmodel_bytes:>10,}  RAM {c.ram:>10,}  "
            f"KPU {c.kpu_peak:>9,}  {'FITS' if c.fits else 'no: ' + c.why}")


def choose(cands: list[Candidate]) -> Candidate:
    fitting = [c for c in cands if c.fits]
    if not fitting:
        raise PokedexError("no candidate fits the budget", "try smaller widths or inputs, or class grouping")
    return max(fitting, key=lambda c: (c.params, c.input))
