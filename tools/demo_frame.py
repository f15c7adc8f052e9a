#!/usr/bin/env python3
"""Make the synthetic camera frame the README's emulator picture starts from (no Pokémon art):
a card-like shape on a desk, drawn procedurally, its art window holding a plain geometric ball
(red above, white below, two eyes) -- the shape the released model reads as Voltorb.
Usage: python tools/demo_frame.py OUT.png"""

import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def frame(seed: int = 7) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:240, 0:320]
    desk = np.stack(
        [
            110 + 30 * np.sin(xx / 23.0) + rng.normal(0, 4, xx.shape),
            80 + 20 * np.sin(xx / 23.0) + rng.normal(0, 4, xx.shape),
            55 + 10 * np.cos(yy / 31.0) + rng.normal(0, 4, xx.shape),
        ],
        -1,
    )
    im = Image.fromarray(np.clip(desk, 0, 255).astype(np.uint8))
    card = Image.new("RGBA", (150, 210), (0, 0, 0, 0))
    d = ImageDraw.Draw(card)
    d.rounded_rectangle([0, 0, 149, 209], 10, fill=(235, 200, 60, 255))
    d.rectangle([12, 30, 137, 120], fill=(150, 200, 235, 255))
    ball = [42, 38, 108, 112]
    d.pieslice(ball, 180, 360, fill=(225, 45, 45, 255))
    d.pieslice(ball, 0, 180, fill=(245, 245, 245, 255))
    d.arc(ball, 0, 360, fill=(60, 30, 30, 255), width=2)
    for ex in (56, 80):
        d.ellipse([ex, 66, ex + 14, 80], fill=(255, 255, 255, 255), outline=(20, 20, 20, 255), width=2)
        d.ellipse([ex + 4, 70, ex + 10, 77], fill=(20, 20, 20, 255))
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
