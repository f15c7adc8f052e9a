"""Where the art window sits on real cards, by era and kind, against the firmware's LAYOUT.art.

For each ingested scan (``pokedex-host data cards``) the strongest straight edge within 6 % of
the card of each side of LAYOUT's art window is taken as that side (the window's frame is the
sharpest long line there on a regular card); printed: the median and quartiles per era and kind,
in fractions of the card. A full-art card has no such frame, so its rows measure only noise.

    .venv/bin/python tools/card_layout.py [--data data]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from pokedex_host.dataset.cards import LAYOUT
from pokedex_host.dataset.scans import load_scans


def window_edges(card: np.ndarray, search: float = 0.06) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of the art window's frame in ``card`` (H x W gray), in fractions."""
    h, w = card.shape
    g = card.astype(np.float32)
    dy = np.abs(np.diff(g, axis=0))  # horizontal edges
    dx = np.abs(np.diff(g, axis=1))  # vertical edges
    ax0, ay0, ax1, ay1 = LAYOUT.art
    rows = dy[:, int(0.25 * w) : int(0.75 * w)].mean(axis=1)
    cols = dx[int((ay0 + 0.1) * h) : int((ay1 - 0.1) * h), :].mean(axis=0)

    def peak(profile, centre, n):
        lo, hi = max(1, int((centre - search) * n)), min(len(profile) - 1, int((centre + search) * n))
        return (lo + int(np.argmax(profile[lo:hi])) + 0.5) / n

    return peak(cols, ax0, w), peak(rows, ay0, h), peak(cols, ax1, w), peak(rows, ay1, h)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data"))
    a = ap.parse_args()
    groups: dict[str, list] = {}
    for s in load_scans(a.data):
        with Image.open(s.path) as im:
            groups.setdefault(s.group, []).append(window_edges(np.asarray(im.convert("L"))))
    print(f"LAYOUT.art (x0, y0, x1, y1) = {LAYOUT.art}; median [quartiles] per era/kind:")
    print("| era / kind | cards | x0 | y0 | x1 | y1 |")
    print("|---|---:|---:|---:|---:|---:|")
    for g, e in sorted(groups.items()):
        e = np.array(e)
        q = np.percentile(e, [25, 50, 75], axis=0)
        cells = " | ".join(f"{q[1, i]:.3f} [{q[0, i]:.3f}-{q[2, i]:.3f}]" for i in range(4))
        print(f"| {g} | {len(e)} | {cells} |")


if __name__ == "__main__":
    main()
