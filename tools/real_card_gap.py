#!/usr/bin/env python3
"""Where a model loses real cards: the same cards read as printed, through other crops of their art
window, held in a hand without the camera's effects, and as the camera sees them.

Usage: .venv/bin/python tools/real_card_gap.py MODEL.pt [MODEL.pt ...] [--data data] [--split validation]
       [--limit N] [--stages printed,square,letterbox,held,camera]

MODEL.pt: project checkpoints (a release's model.pt and teacher.pt, a run's best.pt), each read at
its own input size. The cards are the ingested scans of --split (`pokedex-host data cards`);
--limit takes a seeded sample of them (the training split is large). Stages, each on every card:

- printed:   the firmware's crop of a perfectly located card (``scans.art_window``: the art window
             plus its margin), squeezed to a square as the board squeezes it: what the recipe's
             plain card items are;
- square:    the centre square of that crop (the art's aspect kept, its sides lost);
- letterbox: the whole crop on white, aspect kept;
- held:      the card held in a hand in a QVGA frame (sleeve, fingers, distance, tilt), cropped as
             the firmware crops a located card, without the camera's effects (strength 0);
- camera:    the same with the OV2640's effects: what `data camera-set --cards --kind art` makes.

Prints top-1 / top-5 per model and stage; choose on validation, never on test.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "host"))

from pokedex_host.dataset.cards import scan_view  # noqa: E402
from pokedex_host.dataset.scans import SPLITS, art_window, load_scans, open_card  # noqa: E402
from pokedex_host.models.checkpoint import load_checkpoint  # noqa: E402
from pokedex_host.train.student import evaluate  # noqa: E402

STAGES = ("printed", "square", "letterbox", "held", "camera")
LOAD = 160  # every stage is rendered at this size, then resized to each model's input


def stage_image(path: str, stage: str, rng: np.random.Generator, size: int = LOAD) -> np.ndarray:
    """One card (a scan's path) as ``stage`` shows it, uint8 3 x size x size."""
    if stage in ("held", "camera"):
        view = scan_view(open_card(path), rng, 128, strength=1.0 if stage == "camera" else 0.0)
        im = Image.fromarray(view).resize((size, size), Image.BILINEAR)
    else:
        a = art_window(open_card(path).convert("RGB"))
        w, h = a.size
        if stage == "square":
            side = min(w, h)
            x0, y0 = (w - side) // 2, (h - side) // 2
            a = a.crop((x0, y0, x0 + side, y0 + side))
        elif stage == "letterbox":
            side = max(w, h)
            box = Image.new("RGB", (side, side), (255, 255, 255))
            box.paste(a, ((side - w) // 2, (side - h) // 2))
            a = box
        im = a.resize((size, size), Image.BILINEAR)
    return np.asarray(im).transpose(2, 0, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", type=Path, nargs="+")
    ap.add_argument("--data", type=Path, default=Path("data"))
    ap.add_argument("--split", default="validation", choices=SPLITS)
    ap.add_argument("--limit", type=int, default=0, help="a seeded sample of this many cards (0: all)")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    stages = [s for s in a.stages.split(",") if s]
    bad = [s for s in stages if s not in STAGES]
    if bad:
        sys.exit(f"unknown stage {', '.join(bad)}: use some of {', '.join(STAGES)}")
    scans = load_scans(a.data, a.split)
    if a.limit and a.limit < len(scans):
        keep = np.random.default_rng(a.seed).permutation(len(scans))[: a.limit]
        scans = [scans[i] for i in sorted(keep)]
    y = torch.tensor([s.dex - 1 for s in scans])
    models = []
    for p in a.models:
        ck = load_checkpoint(p)
        models.append((p, ck.build().eval(), ck.input_size))
    print(f"{len(scans)} {a.split} cards of {len(set(y.tolist()))} species ({a.data}), top-1 / top-5 %")
    print("| model | " + " | ".join(stages) + " |")
    print("|---|" + "---:|" * len(stages))
    rows = {p: [] for p, _, _ in models}
    for stage in stages:
        t0 = time.time()
        x = torch.from_numpy(
            np.stack([stage_image(s.path, stage, np.random.default_rng([a.seed, 23, i])) for i, s in enumerate(scans)])
        )
        for p, model, size in models:
            with torch.no_grad():
                r = evaluate(model, x, y, size)
            rows[p].append(f"{r['top1']:.1f} / {r['top5']:.1f}")
        print(f"  ({stage}: {time.time() - t0:.0f} s)", file=sys.stderr)
    for p, _, _ in models:
        print(f"| {p} | " + " | ".join(rows[p]) + " |")


if __name__ == "__main__":
    main()
