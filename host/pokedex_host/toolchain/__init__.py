"""The nncase compiler boundary: its venv (:mod:`.env`) and the worker it runs (:mod:`.client`)."""

from .client import CompileRequest, CompileResult, ToolchainError, Worker, simulate_parallel
from .env import DEFAULT_NNCASE, check, find_python310, install, toolchain_dir

__all__ = [
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
