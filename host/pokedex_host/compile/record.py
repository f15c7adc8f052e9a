"""What one ``build-kmodel`` run found, handed to the writers of its folder.

:class:`BuildRecord` gathers the stages' typed results once the build has passed every check;
``report.py`` (report.md, budget.png) and ``manifest.py`` (manifest.json) read its fields and
nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the stages' types, for the annotations only
    from ..boards import Board
    from ..kmodel.from_nncase import Conversion
    from ..preprocess import InputSpec
    from .budget import Verdict
    from .calibration import ImageSet
    from .export import ExportedModel
    from .lint import LintReport
    from .memory import MemoryReport
    from .verify import Verification


@dataclass(frozen=True)
class BuildRecord:
    source: Path  # the model as given to build-kmodel
    board: Board
    export: ExportedModel
    input: InputSpec  # the input contract of the compiled model
    lint: LintReport
    lint_disagreements: list[str]  # where lint and the compiler's placement differ
    calibration: ImageSet
    calibration_seed: int
    calibrate_method: str  # nncase's activation-range method
    holdout: ImageSet  # the verification images
    kmodel_version: int  # of model.kmodel: 3 (re-emitted) or 5 (nncase's own)
    nncase: str  # the compiler's version
    reproducible: bool  # compiled with address randomisation off
    memory: MemoryReport  # run-time RAM of model.kmodel, as its loader allocates it
    budget_source: str  # where the budget's bytes came from
    verdict: Verdict
    verification: Verification | None = None  # None when no held-out images were asked for
    conversion: Conversion | None = None  # the v3 re-emission; None for a v5 build
    v5_kmodel: Path | None = None  # what the v3 file was re-emitted from (kept as model.v5.kmodel)
    v3_check: dict | None = None  # the v3 file against nncase's simulator, bit for bit
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
