"""The nncase compiler boundary: its venv (:mod:`.env`) and the worker it runs (:mod:`.client`)."""

from .client import (
    CALIBRATE_METHODS,
    DEFAULT_CALIBRATE_METHOD,
    CompileRequest,
    CompileResult,
    ToolchainError,
    Worker,
    simulate_parallel,
)
from .env import DEFAULT_NNCASE, check, find_python310, install, toolchain_dir

__all__ = [
    "CALIBRATE_METHODS",
    "DEFAULT_CALIBRATE_METHOD",
    "CompileRequest",
    "CompileResult",
    "ToolchainError",
    "Worker",
    "simulate_parallel",
    "DEFAULT_NNCASE",
    "check",
    "find_python310",
    "install",
    "toolchain_dir",
]
