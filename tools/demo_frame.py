#!/usr/bin/env python3
"""Make the synthetic camera frame the README's emulator picture starts from (no Pokémon art):
a card-like shape on a desk, drawn procedurally. Usage: python tools/demo_frame.py OUT.png"""

import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def frame(seed: int = 7) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:240, 0:320]
    desk = np.stack([110 + 30 * np.sin(xx / 23.0) + rng.normal(0, 4, xx.shape),
                     80 + 20 * np.sin(xx / 23.0) + rng.normal(0, 4, xx.shape),
                     55 + 10 * np.cos(yy / 31.0) + rng.normal(0, 4, xx.shape)], -1)
    im = Image.fromarray(np.clip(desk, 0, 255).astype(np.uint8))
    card = Image.new("RGBA", (150, 210), (0, 0, 0, 0))
    d = ImageDraw.Draw(card)
    d.rounded_rectangle([0, 0, 149, 209], 10, fill=(235, 200, 60, 255))
    d.rectangle([12, 30, 137, 120], fill=(140, 190, 230, 255))
    d.ellipse([45, 45, 105, 110], fill=(220, 90, 60, 255))
    d.ellipse([62, 60, 74, 72], fill=(20, 20, 20, 255))
    for i in range(4):
        d.rectangle([14, 130 + 16 * i, 130 - 12 * i, 138 + 16 * i], fill=(120, 100, 40, 255))
    card = card.rotate(-8, expand=True, resample=Image.BICUBIC)
    im.paste(card, (85, 5), card)
    glare = Image.new("L", im.size, 0)
    ImageDraw.Draw(glare).ellipse([170, 20, 260, 80], fill=90)
    im = Image.composite(Image.new("RGB", im.size, (255, 255, 255)), im, glare.filter(ImageFilter.GaussianBlur(18)))
    return im.filter(ImageFilter.GaussianBlur(0.6))


if __name__ == "__main__":
    frame().save(sys.argv[1])
