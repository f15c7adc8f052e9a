#!/usr/bin/env python3
"""How well a teacher checkpoint names a split at several input sizes, alone and averaged with
the mirror image: the measurement behind a recipe's kd_card_input / kd_flip.

Usage: .venv/bin/python tools/teacher_views.py TEACHER.pt SPLIT_DIR [--sizes 128,160,192] [--load 128]

SPLIT_DIR holds <dex>/ image folders (a processed split, or a card-crop set from
`pokedex-host data camera-set --kind art`). Images are decoded at --load px (default: the
teacher's input), then resized bilinearly to each size, as teacher_view_logits does in training."""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "host"))

from pokedex_host.compile.export import load_torch_model  # noqa: E402
from pokedex_host.train.data import load_split, to_input  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("teacher", type=Path)
    ap.add_argument("split", type=Path)
    ap.add_argument("--sizes", default="128,160,192")
    ap.add_argument("--load", type=int, default=0)
    a = ap.parse_args()
    model, size, _, _ = load_torch_model(a.teacher)
    model = model.eval().to(memory_format=torch.channels_last)
    data = load_split(a.split, a.load or size)
    print(f"{a.teacher} on {a.split}: {len(data.y)} images decoded at {a.load or size} px")
    for s in (int(v) for v in a.sizes.split(",")):
        t0, plain, both = time.time(), [], []
        with torch.no_grad():
            for i in range(0, len(data.y), 128):
                x = to_input(data.x[i : i + 128], s).contiguous(memory_format=torch.channels_last)
                lg = model(x).float()
                plain.append(lg)
                both.append((lg + model(x.flip(-1)).float()) / 2)
        top1 = [100 * float((torch.cat(v).argmax(1) == data.y).float().mean()) for v in (plain, both)]
        print(
            f"  {s} px: top-1 {top1[0]:.2f} %, averaged with the mirror image {top1[1]:.2f} % "
            f"({time.time() - t0:.0f} s)"
        )


if __name__ == "__main__":
    main()
