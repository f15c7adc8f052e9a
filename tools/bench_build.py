#!/usr/bin/env python3
"""Benchmark build-kmodel: wall time and peak memory per stage, and the kmodel/RAM figures.

Default: the 1025-class MobileNetV1 a0.75 @224 recipe, the default calibration set, 200 held-out
images through the v3 interpreter (16 of them also through nncase's simulator, compared bit for
bit). Then the v3 interpreter's own speed on the newest release (128 px) and on the 224 px build,
with each full-convolution path and the CPU flags that decide between them (bench_interp.py).
Prints figures; asserts nothing (targets: default build + 200-image verification <= 90 s end to
end on 2 cores; interpreter >= 100 images/s at 128 px).

    python tools/bench_build.py [--model M] [--board B] [--verify-count N] [--calibration-count N]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "host"))

from bench_interp import report as interpreter_report  # noqa: E402

from pokedex_host.artifact import BuildArtifact  # noqa: E402
from pokedex_host.compile import BuildOptions, build_kmodel  # noqa: E402
from pokedex_host.paths import newest_release  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models" / "kpu_mobilenet_v1-075-224.toml"))
    ap.add_argument("--board", default="maix-bit")
    ap.add_argument("--verify-count", type=int, default=200)
    ap.add_argument("--calibration-count", type=int, default=None)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--interp-images", type=int, default=256, help="images per interpreter speed figure")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        t0 = time.time()
        build_kmodel(
            BuildOptions(
                model=Path(a.model),
                board=a.board,
                out=out,
                verify_count=a.verify_count,
                calibration_count=a.calibration_count,
                workers=a.workers,
            ),
            log=lambda m: None,
        )
        wall = time.time() - t0
        m = BuildArtifact.load(out).manifest
        speeds = []
        if m["kmodel"]["version"] == 3:
            rel = newest_release().with_name("model.kmodel")
            speeds = interpreter_report(([rel] if rel.is_file() else []) + [out / "model.kmodel"], a.interp_images)
    host_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    t, mem, v = m["timings_s"], m["memory"], m["verification"]
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    print(
        f"model: {Path(a.model).name} ({m['classes']} classes, input {m['input']['shape']}), board {a.board}, "
        f"kmodel v{m['kmodel']['version']}"
    )
    print(f"calibration images: {m['calibration']['count']}   verify images: {v['images'] if v else 0}")
    print("wall time (s):")
    for k in ("export", "load_images", "compile", "v3", "verify", "total"):
        if k in t:
            print(f"  {k:12s} {t[k]:7.1f}")
    if v:
        n_sim = v["seconds"].get("simulated_images", v["images"])
        print(
            f"  simulator    {v['seconds']['simulator']:7.1f}  ({n_sim} images, "
            f"{v['seconds']['simulator'] / max(n_sim, 1):.2f} s/image over {v['seconds']['workers']} workers)"
        )
        if "v3_interpreter" in v["seconds"]:
            n = max(v["images"], 1)
            print(
                f"  v3 interp.   {v['seconds']['v3_interpreter']:7.1f}  ({n} images, "
                f"{n / max(v['seconds']['v3_interpreter'], 1e-9):.0f} images/s)"
            )
        print(f"  float (ORT)  {v['seconds']['float']:7.1f}")
    print(f"  end to end   {wall:7.1f}")
    print(f"peak RSS (MiB): host {host_peak:.0f}, largest compiler/simulator worker {child_peak:.0f}")
    print("kmodel and RAM (bytes):")
    for k in ("kmodel_bytes", "data_bytes", "input_bytes", "output_bytes", "runtime_total", "kpu_sram_peak"):
        print(f"  {k:14s} {mem[k]:>10,}")
    print(
        f"  budget         {m['budget']['bytes']:>10,}  ({'fits' if m['budget']['fits'] else 'OVER'}, "
        f"headroom {m['budget']['ram_headroom']:,})"
    )
    if v:
        print(
            f"verification: cosine mean {v['cosine_mean']:.4f} min {v['cosine_min']:.4f}, "
            f"top-1 agreement {v['agreement_top1']:.1f} %"
        )
        if v.get("v3_vs_v5"):
            c = v["v3_vs_v5"]
            print(f"v3 vs v5 (interpreter vs simulator): {c['identical']}/{c['images']} images identical bit for bit")
    for line in speeds:
        print(line)


if __name__ == "__main__":
    main()
