#!/usr/bin/env python3
"""Benchmark training throughput (images/s) on this machine: two student sizes (plain and with
cached-teacher distillation) on random data (the recipe's teacher and distillation:
tools/bench_recipe.py).

    python tools/bench_train.py [--steps 20] [--batch 32]
Prints figures; writes only to a temporary folder."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "host"))

import torch  # noqa: E402

from pokedex_host.models import create_model  # noqa: E402
from pokedex_host.train.data import augment  # noqa: E402
from pokedex_host.train.losses import kd_loss, label_loss  # noqa: E402


def student(width: float, size: int, steps: int, batch: int, kd: bool) -> float:
    torch.manual_seed(0)
    m = create_model("kpu_mobilenet_v1", width=width, input=size, classes=1025).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch, 3, int(size * 1.15), int(size * 1.15)), dtype=torch.uint8)
    y = torch.randint(0, 1025, (batch,))
    soft = torch.randn(batch, 1025).half()
    n, t0 = 0, None
    for i in range(steps + 2):
        if i == 2:
            t0 = time.time()
        xb = augment(x, size, g).contiguous(memory_format=torch.channels_last)
        out = m(xb)
        loss = kd_loss(out, soft, y, temperature=4.0, alpha=0.7) if kd else label_loss(out, y, 0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:
            n += batch
    return n / (time.time() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    a = ap.parse_args()
    print(f"{os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for w, s in ((0.5, 96), (0.75, 128)):
        print(
            f"student w{w} @{s}: {student(w, s, a.steps, a.batch, False):6.1f} img/s plain, "
            f"{student(w, s, a.steps, a.batch, True):6.1f} img/s with cached-teacher distillation"
        )


if __name__ == "__main__":
    main()
