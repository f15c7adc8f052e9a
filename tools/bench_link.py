#!/usr/bin/env python3
"""Benchmark the bench link under a noisy cable: ``bench --emulate`` on a clean line, then through
a fault injector between the host and the emulated board at the rates the issue measured (0.2 %
of the board's bytes flipped or lost, 1 in 100,000 of the host's, a line of REPL text in about
one read in ten). Prints throughput, faults, and whether every image was measured once with the
device's answers equal to the host simulator's. Figures only; asserts nothing.

    python tools/bench_link.py [--kmodel K] [--data DIR] [--count N] [--seed S]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "host"))

from pokedex_host.boards import get_board  # noqa: E402
from pokedex_host.device.bench import bench  # noqa: E402
from pokedex_host.device.harness import load_done  # noqa: E402
from pokedex_host.device.transport import FaultyTransport  # noqa: E402
from pokedex_host.paths import newest_release  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kmodel", type=Path, default=newest_release().with_name("model.kmodel"))
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "processed" / "classify" / "test")
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--board", default="maix-bit")
    a = ap.parse_args()
    if not a.data.is_dir():
        sys.exit(f"{a.data} does not exist: run `make data` first (or pass --data DIR of <dex>/ folders)")
    board = get_board(a.board)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"model: {a.kmodel}; {a.count} images from {a.data}; emulated {board.name}")
    lines = {
        "clean": None,
        "noisy": lambda t: FaultyTransport(t, seed=a.seed, byte_in=0.002, byte_out=1e-5, text_in=0.1),
    }
    answers = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, wrap in lines.items():
            made = {}

            def wrapper(t, wrap=wrap, made=made):
                made["t"] = wrap(t)
                return made["t"]

            out = Path(tmp) / name
            t0 = time.time()
            fig = bench(
                board,
                a.kmodel,
                a.data,
                out,
                port=None,
                emulate=True,
                baud=None,
                count=a.count,
                resume=False,
                timeout=10,
                transport_wrap=wrapper if wrap else None,
                log=lambda m: None,
            )
            dt = time.time() - t0
            rows = load_done(out / "results.jsonl")
            answers[name] = {f: r["top"] for f, r in rows.items()}
            faults = made["t"].damaged if "t" in made else 0
            attempts = sum(r["attempts"] for r in rows.values())
            print(
                f"{name:6s} {len(rows):3d} images in {dt:6.1f} s ({len(rows) / dt:5.2f} images/s); faults injected "
                f"{faults}; image attempts {attempts}; device = host simulator (top-1) "
                f"{fig['device_vs_simulator_top1_agreement']:.1f} %"
            )
    same = answers["clean"] == answers["noisy"]
    print(
        f"noisy answers identical to clean: {same}; every image once: "
        f"{len(answers['noisy']) == len(answers['clean']) == a.count}"
    )


if __name__ == "__main__":
    main()
