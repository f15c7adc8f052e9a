#!/usr/bin/env python3
"""Benchmark the v3 interpreter's full-convolution paths: images/s of each, and which one runs.

Prints the CPU's flags that decide int8 speed (avx2, avx512_vnni, avx_vnni, amx_int8), this
process's measurement of both paths (kmodel/matmul.py: what ``auto`` picks), then the
interpreter's images/s with each path forced (POKEDEX_KPU_MATMUL) on the newest release (128 px)
or the kmodels named. Asserts nothing (target: >= 100 images/s at 128 px on 2 cores).

    python tools/bench_interp.py [KMODEL ...] [--images N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "host"))

from pokedex_host.kmodel import matmul  # noqa: E402
from pokedex_host.paths import newest_release  # noqa: E402

FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, bool]:
    """Which of ``FLAGS`` the first processor's ``flags`` line of ``cpuinfo`` lists (all False
    where the file is absent, as off Linux)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return dict.fromkeys(FLAGS, False)
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    have = set(line.partition(":")[2].split())
    return {f: f in have for f in FLAGS}


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        text = cpuinfo.read_text()
    except OSError:
        return "unknown CPU"
    line = next((ln for ln in text.splitlines() if ln.startswith("model name")), "")
    return line.partition(":")[2].strip() or "unknown CPU"


def interpreter_speed(kmodel: Path, n: int, path: str | None = None) -> tuple[int, float]:
    """(input size, images/s) of the v3 interpreter on ``n`` random images in batches of 32 (after
    a warm-up batch), with ``path`` forced for the run (None: what the process would pick)."""
    import numpy as np

    from pokedex_host.kmodel.interp import Interpreter, run_batch

    data = kmodel.read_bytes()
    shape = Interpreter(data).input_shape
    x = np.random.default_rng(0).integers(0, 256, (n, *shape), dtype=np.uint8)
    old = os.environ.get(matmul.ENV)
    os.environ[matmul.ENV] = path or "auto"
    try:
        run_batch(data, x[:8])
        t = time.perf_counter()
        run_batch(data, x)
        return shape[1], n / (time.perf_counter() - t)
    finally:
        if old is None:
            os.environ.pop(matmul.ENV)
        else:
            os.environ[matmul.ENV] = old


def report(kmodels: list[Path], n: int) -> list[str]:
    """The lines this tool prints: flags, the measurement, images/s per path and kmodel."""
    flags = cpu_flags()
    m = matmul.measurement()
    forced = os.environ.get(matmul.ENV, "auto")
    lines = [
        f"cpu: {cpu_name()}, {os.cpu_count()} cores; "
        + ", ".join(f"{f} {'yes' if v else 'no'}" for f, v in flags.items()),
        f"full-convolution products, {'x'.join(map(str, m.shape))} (M x K x OC), one thread, timed once: "
        + ", ".join(f"{p} {s * 1e3:.2f} ms" for p, s in m.seconds.items())
        + "; exact: "
        + ", ".join(f"{p} {'yes' if ok else 'NO'}" for p, ok in m.exact.items())
        + f"; chosen: {m.chosen}"
        + (f" (but {matmul.ENV}={forced} forces {matmul.chosen_path()})" if forced not in ("", "auto") else ""),
    ]
    for kmodel in kmodels:
        for path in matmul.PATHS:
            if not m.exact[path]:
                lines.append(f"v3 interpreter, {path:5s} path: not exact on this CPU (refused when forced)")
                continue
            size, ips = interpreter_speed(kmodel, n, path)
            mark = " <- chosen" if path == m.chosen else ""
            lines.append(
                f"v3 interpreter, {path:5s} path: {ips:6.1f} images/s at {size} px "
                f"({kmodel.parent.name}/{kmodel.name}, {n} images, batches of 32){mark}"
            )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kmodels", nargs="*", type=Path, help="v3 kmodels (default: the newest release's)")
    ap.add_argument("--images", type=int, default=256, help="images per figure")
    a = ap.parse_args()
    for line in report(a.kmodels or [newest_release().with_name("model.kmodel")], a.images):
        print(line)


if __name__ == "__main__":
    main()
