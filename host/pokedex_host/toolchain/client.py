"""The host side of the compiler boundary: a long-lived worker process in the 3.10 venv.

The host never imports nncase. It starts ``worker.py`` under the compiler venv's interpreter,
sends one JSON request per line and reads one JSON answer per line; tensors and models travel
as files (``.npy``, ``.onnx``, ``.kmodel``). A worker stays alive across requests, so the
simulator pays its start-up once, and :func:`simulate_parallel` spreads images over several.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import PokedexError
from . import env

WORKER_SCRIPT = Path(__file__).with_name("worker.py")


class ToolchainError(PokedexError):
    """The worker answered with an error, or died."""

    def __init__(self, message: str, hint: str | None = None, *, kind: str = "", log: str | None = None):
        super().__init__(message, hint)
        self.kind = kind
        self.log = log


# how nncase 1.9's PTQ sets each activation's range from the calibration images: no_clip (min/max),
# l2 (the clip that minimises the quantisation error), kld_m0..m2 (KL-divergence variants)
CALIBRATE_METHODS = ("no_clip", "l2", "kld_m0", "kld_m1", "kld_m2")
DEFAULT_CALIBRATE_METHOD = "no_clip"  # what nncase itself defaults to


@dataclass(frozen=True)
class CompileRequest:
    onnx: Path
    out: Path
    calibration: Path  # .npy, uint8, N x C x H x W
    dump_dir: Path
    input_shape: tuple[int, ...]
    input_range: tuple[float, float]
    input_layout: str = "NCHW"
    calibrate_method: str = DEFAULT_CALIBRATE_METHOD
    log: Path | None = None


@dataclass(frozen=True)
class CompileResult:
    kmodel: Path
    bytes: int
    seconds: dict
    reproducible: bool  # compiled with address randomisation off: same inputs, same bytes


class Worker:
    """One compiler worker process. Use as a context manager."""

    def __init__(self, nncase_version: str = env.DEFAULT_NNCASE, extra_env: dict | None = None):
        self.nncase_version = nncase_version
        self.extra_env = extra_env
        self.venv = env.toolchain_dir(nncase_version)
        self.proc: subprocess.Popen | None = None
        self._next_id = 0
        self._stderr_log = None

    def start(self) -> "Worker":
        py = env.venv_python(self.venv)
        if not py.exists():
            raise PokedexError(
                f"the nncase {self.nncase_version} compiler venv is missing ({self.venv})",
                "run `pokedex-host toolchain install` (or `pokedex-host doctor` to see what is missing)",
            )
        self._stderr_log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [str(py), "-u", str(WORKER_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr_log,
            text=True,
            encoding="utf-8",
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(self.extra_env or {})},
        )
        return self

    def __enter__(self) -> "Worker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def _stderr_tail(self) -> str:
        if self._stderr_log is None:
            return ""
        self._stderr_log.seek(0)
        text = self._stderr_log.read().decode("utf-8", "replace")
        return "\n".join(text.strip().splitlines()[-20:])

    def request(self, op: str, **params) -> dict:
        if self.proc is None:
            self.start()
        assert self.proc and self.proc.stdin and self.proc.stdout
        self._next_id += 1
        msg = {"op": op, "id": self._next_id}
        msg.update({k: (str(v) if isinstance(v, Path) else v) for k, v in params.items()})
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            code = self.proc.poll()
            raise ToolchainError(
                f"the compiler worker died during {op!r} (exit {code})\n{self._stderr_tail()}",
                "run `pokedex-host doctor`; if nncase itself crashed, the log above says where",
                kind="died",
            )
        answer = json.loads(line)
        if not answer.get("ok"):
            raise ToolchainError(
                f"nncase {op} failed: {answer.get('error')}",
                kind=answer.get("kind", ""),
                log=answer.get("traceback"),
            )
        return answer.get("result", {})

    def hello(self) -> dict:
        return self.request("hello")

    def compile(self, req: CompileRequest) -> CompileResult:
        # The compiler runs inside the output's folder with fixed relative names: nncase leaves a
        # few bits uninitialised, and what lands there depends on the process's memory layout,
        # which path lengths change. Same names + no address randomisation = same bytes.
        work = req.out.parent.resolve()

        def rel(p: Path | None) -> str | None:
            return None if p is None else os.path.relpath(Path(p).resolve(), work)

        r = self.request(
            "compile",
            workdir=str(work),
            onnx=rel(req.onnx),
            out=rel(req.out),
            calibration=rel(req.calibration),
            dump_dir=rel(req.dump_dir),
            input_shape=list(req.input_shape),
            input_layout=req.input_layout,
            input_range=list(req.input_range),
            calibrate_method=req.calibrate_method,
            log=rel(req.log),
        )
        return CompileResult(work / r["kmodel"], int(r["bytes"]), r["seconds"], bool(r.get("aslr_off")))

    def simulate(self, kmodel: Path, x: np.ndarray, workdir: Path) -> np.ndarray:
        """Run ``x`` (uint8, N x C x H x W) through the nncase simulator; returns N x outputs."""
        fd, inp = tempfile.mkstemp(suffix=".npy", dir=workdir)
        os.close(fd)
        out = inp[:-4] + ".out.npy"
        try:
            np.save(inp, np.ascontiguousarray(x, dtype=np.uint8))
            self.request("simulate", kmodel=str(kmodel), inputs=inp, outputs=out)
            return np.load(out)
        finally:
            for p in (inp, out):
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass

    def close(self) -> None:
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None and self.proc.stdin:
                self.proc.stdin.write(json.dumps({"op": "shutdown"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            self.proc.kill()
            self.proc.wait()
        finally:
            self.proc = None
            if self._stderr_log is not None:
                self._stderr_log.close()
                self._stderr_log = None


def simulate_parallel(
    kmodel: Path, x: np.ndarray, *, workers: int, nncase_version: str = env.DEFAULT_NNCASE, workdir: Path | None = None
) -> np.ndarray:
    """Split ``x`` over ``workers`` simulator processes (the simulator is single-threaded)."""
    n = x.shape[0]
    workers = max(1, min(workers, n))
    chunks = np.array_split(np.arange(n), workers)
    results: list[np.ndarray | None] = [None] * workers
    errors: list[BaseException] = []
    tmp = tempfile.TemporaryDirectory(dir=workdir)

    def run(i: int) -> None:
        try:
            # parallelism comes from processes here: one thread each, so they do not fight for cores
            with Worker(nncase_version, extra_env={"OMP_NUM_THREADS": "1"}) as w:
                results[i] = w.simulate(kmodel, x[chunks[i]], Path(tmp.name))
        except BaseException as e:  # re-raised in the caller's thread
            errors.append(e)

    try:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        tmp.cleanup()
    if errors:
        raise errors[0]
    return np.concatenate([r for r in results if r is not None and r.size], axis=0)
