#!/usr/bin/env python3
"""Show the camera app reading a card, on your machine: one test-split Pokémon drawn on a synthetic
card in a camera frame, run through the unmodified firmware on the emulated board with the newest
release. Writes build/demo/frame.png and build/demo/lcd.png (not committed: the artwork is
© Nintendo / Creatures / GAME FREAK / The Pokémon Company) and prints the app's UART line.

    .venv/bin/python tools/demo_card.py [--dex 25] [--seed 3] [--data data]
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from pokedex_host.boards import get_board
from pokedex_host.dataset.augment import crop_to_alpha
from pokedex_host.dataset.cards import card_frame
from pokedex_host.dataset.preview import _sprite
from pokedex_host.dataset.store import load_index, raw_dir
from pokedex_host.emulator.host import emulate
from pokedex_host.paths import newest_release


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dex", type=int, default=25)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--data", type=Path, default=Path("data"))
    ap.add_argument("--out", type=Path, default=Path("build/demo"))
    a = ap.parse_args()
    rows = [
        r
        for r in csv.DictReader((a.data / "processed/yolo_dataset/split.csv").open())
        if r["split"] == "test" and int(r["dex"]) == a.dex
    ]
    if not rows:
        raise SystemExit(f"no test-split image of #{a.dex:04d} under {a.data} (run `make data`)")
    r = load_index(a.data)[rows[0]["sha256"]]
    img, corners = card_frame(crop_to_alpha(_sprite(raw_dir(a.data) / r.file)), np.random.default_rng(a.seed))
    frames = a.out / "frames"
    shutil.rmtree(a.out, ignore_errors=True)
    frames.mkdir(parents=True)
    Image.fromarray(img).save(frames / "frame.png")
    kmodel = newest_release().with_name("model.kmodel")
    res = emulate(get_board("maix-bit"), kmodel, frames, a.out / "emulator", smoothing=0.0, log=print)
    shutil.copyfile(a.out / "emulator" / "lcd_0000.png", a.out / "lcd.png")
    shutil.copyfile(frames / "frame.png", a.out / "frame.png")
    print(res.uart_lines[0] if res.uart_lines else res.console)
    print(f"wrote {a.out / 'frame.png'} and {a.out / 'lcd.png'}")


if __name__ == "__main__":
    main()
