"""``build-kmodel`` and its stages, one module each:

export.py       model (.pt / .onnx / recipe) -> ONNX with the input contract
lint.py         which layers the KPU runs, and the maps' KPU SRAM
calibration.py  calibration and held-out images
(toolchain/)    nncase 1.9 compile + simulator, in their own Python 3.10 process
memory.py       run-time RAM and KPU SRAM from the compiler's schedule
budget.py       the fit verdict against a board's budget (one rule for build and shrink)
verify.py       float vs kmodel on held-out images
record.py       BuildRecord: what a build found, handed to report.py and manifest.py
report.py       report.md and budget.png
manifest.py     what manifest.json says (the folder itself is ../artifact.py's)
pipeline.py     the stages wired together (``build_kmodel``)
"""

from .pipeline import BuildOptions, BuildResult, build_kmodel

__all__ = ["BuildOptions", "BuildResult", "build_kmodel"]
