"""Camera-realistic augmentation: what the K210's OV2640 sees when it looks at a card.

``camera_frame(sprite, rng, strength, size)`` composites an alpha-cut Pokémon into a card-like
frame, puts the card on a desk, and degrades it the way the camera path does: perspective and
rotation, scale, lighting and white balance, glare, motion or focus blur, sensor noise, JPEG and
RGB565 quantisation, partial occlusion. ``strength`` in [0, 1] scales every effect, so training
can start easy and ramp up (a card-in-frame task at full strength from epoch 0 barely trains).
All randomness comes from the numpy Generator passed in: same seed, same frame.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CARD_COLOURS = [
    (236, 200, 64),
    (200, 200, 210),
    (230, 120, 90),
    (110, 170, 230),
    (140, 200, 120),
    (190, 140, 210),
    (240, 170, 200),
    (170, 150, 120),
]


def alpha_from_white(im: Image.Image, tol: int = 12) -> Image.Image:
    """RGBA from an image flattened on white: the white that touches the border is background
    (white inside the Pokémon — eyes, highlights — stays)."""
    rgb = im.convert("RGB")
    a = np.asarray(rgb, dtype=np.int16)
    white = (a.min(axis=2) >= 255 - tol).astype(np.uint8) * 255
    mask = Image.fromarray(white, "L").copy()  # a copy: floodfill cannot write into numpy-backed pixels
    w, h = mask.size
    for x, y in (
        (0, 0),
        (w - 1, 0),
        (0, h - 1),
        (w - 1, h - 1),
        (w // 2, 0),
        (w // 2, h - 1),
        (0, h // 2),
        (w - 1, h // 2),
    ):
        if mask.getpixel((x, y)) == 255:
            ImageDraw.floodfill(mask, (x, y), 128)
    bg = np.asarray(mask) == 128
    alpha = np.where(bg, 0, 255).astype(np.uint8)
    out = rgb.convert("RGBA")
    out.putalpha(Image.fromarray(alpha, "L").filter(ImageFilter.MinFilter(3)))
    return out


def crop_to_alpha(im: Image.Image, margin: float = 0.04) -> Image.Image:
    box = im.getchannel("A").getbbox()
    if box is None:
        return im
    w, h = box[2] - box[0], box[3] - box[1]
    m = int(max(w, h) * margin)
    return im.crop((max(0, box[0] - m), max(0, box[1] - m), min(im.width, box[2] + m), min(im.height, box[3] + m)))


def _u(rng, lo, hi, s):
    """A value between the mild end ``lo`` and ``lo + (hi - lo) * s``."""
    return lo + (hi - lo) * s * rng.random()


def _background(rng, w, h) -> Image.Image:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(40, 200, 3)
    f = rng.uniform(8, 40)
    tex = np.sin(xx / f + rng.uniform(0, 6)) * rng.uniform(5, 30) + rng.normal(0, 6, (h, w))
    a = base[None, None, :] + tex[..., None] * rng.uniform(0.5, 1.0, 3)[None, None, :]
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def _card(sprite: Image.Image, rng) -> Image.Image:
    cw, ch = 300, 420
    card = Image.new("RGBA", (cw, ch), (0, 0, 0, 0))
    d = ImageDraw.Draw(card)
    colour = CARD_COLOURS[rng.integers(len(CARD_COLOURS))]
    d.rounded_rectangle([0, 0, cw - 1, ch - 1], 18, fill=colour + (255,))
    art = (24, 60, cw - 24, 250)
    bg = _background(rng, art[2] - art[0], art[3] - art[1]).convert("RGBA")
    card.paste(bg, art[:2])
    aw, ah = (art[2] - art[0]) * 0.92, (art[3] - art[1]) * 0.92
    k = min(aw / sprite.width, ah / sprite.height)  # small sprites are scaled up to fill the art
    sp = sprite.resize(
        (max(1, int(sprite.width * k)), max(1, int(sprite.height * k))), Image.LANCZOS if k < 1 else Image.BICUBIC
    )
    ox = art[0] + (art[2] - art[0] - sp.width) // 2
    oy = art[1] + (art[3] - art[1] - sp.height) // 2
    card.alpha_composite(sp, (ox, oy))
    d.rectangle([18, 18, 190, 44], fill=tuple(int(c * 0.7) for c in colour) + (255,))  # name bar
    for i in range(int(rng.integers(2, 5))):  # attack text lines
        y = 270 + 30 * i
        d.rectangle([28, y, int(rng.uniform(120, cw - 30)), y + 10], fill=(60, 50, 40, 255))
    return card


def perspective_coeffs(src, dst):
    """PIL PERSPECTIVE data mapping output (dst) points to input (src) points."""
    a = []
    for (x, y), (u, v) in zip(dst, src):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    b = np.array(src, dtype=np.float64).reshape(8)
    return np.linalg.solve(np.array(a, dtype=np.float64), b).tolist()


def camera_frame(sprite: Image.Image, rng: np.random.Generator, strength: float = 1.0, size: int = 224) -> Image.Image:
    """One augmented S x S RGB frame of ``sprite`` (RGBA, alpha = the Pokémon)."""
    s = float(np.clip(strength, 0.0, 1.0))
    if sprite.mode != "RGBA":
        sprite = alpha_from_white(sprite)
    sprite = crop_to_alpha(sprite)
    card = _card(sprite, rng)
    W = H = size * 2  # work at 2x, downsample at the end like the sensor's scaler
    frame = _background(rng, W, H).convert("RGBA")
    # card scale: at strength 0 the art window fills the view (card 2.1x the frame height);
    # at strength 1 the whole card is down to 45 % of the height
    fill = 2.1 - (2.1 - rng.uniform(0.45, 0.95)) * s
    ch = int(H * fill)
    cw = int(ch * card.width / card.height)
    card = card.resize((max(8, cw), max(8, ch)), Image.BICUBIC)
    ang = rng.uniform(-25, 25) * s
    card = card.rotate(ang, expand=True, resample=Image.BICUBIC)
    # perspective: move each corner by up to 12 % of the card at full strength
    j = 0.12 * s
    w0, h0 = card.size
    src = [(0, 0), (w0, 0), (w0, h0), (0, h0)]
    dst = [(x + rng.uniform(-j, j) * w0, y + rng.uniform(-j, j) * h0) for x, y in src]
    card = card.transform(card.size, Image.PERSPECTIVE, perspective_coeffs(src, dst), Image.BICUBIC)
    # centre on the art window at strength 0; drift towards anywhere at strength 1
    cx = W / 2 + rng.uniform(-0.25, 0.25) * W * s
    # aim at the art window's centre (155/420 of the card's height), drifting to the card's centre
    art_y = card.height * ((155 / 420) * (1 - s) + 0.5 * s)
    cy = H / 2 + rng.uniform(-0.25, 0.25) * H * s
    frame.alpha_composite(card, (int(cx - card.width / 2), int(cy - art_y)))
    img = frame.convert("RGB")
    a = np.asarray(img, dtype=np.float32)
    # lighting and white balance
    a *= _u(rng, 1.0, rng.choice([0.55, 1.35]), s)
    a *= (1 + rng.uniform(-0.18, 0.18, 3) * s)[None, None, :]
    mean = a.mean()
    a = (a - mean) * (1 + rng.uniform(-0.35, 0.25) * s) + mean
    # vignetting
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    r2 = ((xx - W / 2) ** 2 + (yy - H / 2) ** 2) / (W * W / 2)
    a *= (1 - 0.5 * s * rng.random() * r2)[..., None]
    img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    # glare
    if rng.random() < 0.6 * s:
        glare = Image.new("L", (W, H), 0)
        gx, gy = rng.uniform(0, W), rng.uniform(0, H)
        gr = rng.uniform(0.08, 0.3) * W
        ImageDraw.Draw(glare).ellipse([gx - gr, gy - gr * 0.6, gx + gr, gy + gr * 0.6], fill=int(rng.uniform(80, 220)))
        glare = glare.filter(ImageFilter.GaussianBlur(gr * 0.35))
        img = Image.composite(Image.new("RGB", (W, H), (255, 255, 245)), img, glare)
    # partial occlusion (a thumb at the edge)
    if rng.random() < 0.4 * s:
        d = ImageDraw.Draw(img)
        side = rng.integers(4)
        t = rng.uniform(0.1, 0.25) * W
        x, y = rng.uniform(0, W), rng.uniform(0, H)
        box = {
            0: [x - t, -t, x + t, t * 1.2],
            1: [x - t, H - t * 1.2, x + t, H + t],
            2: [-t, y - t, t * 1.2, y + t],
            3: [W - t * 1.2, y - t, W + t, y + t],
        }[int(side)]
        d.ellipse(box, fill=tuple(int(v) for v in rng.uniform([170, 110, 90], [235, 170, 140])))
    # blur: motion or focus
    if rng.random() < 0.7 * s:
        if rng.random() < 0.5:
            img = img.filter(ImageFilter.GaussianBlur(_u(rng, 0.3, 3.0, s)))
        else:
            k = int(_u(rng, 3, 13, s)) | 1
            kern = np.zeros((k, k), np.float32)
            kern[k // 2, :] = 1
            kern = np.asarray(Image.fromarray((kern * 255).astype(np.uint8)).rotate(rng.uniform(0, 180)), np.float32)
            kern /= max(kern.sum(), 1)
            if k <= 5:
                img = img.filter(ImageFilter.Kernel((k, k), kern.flatten().tolist(), scale=1))
            else:
                img = img.filter(ImageFilter.BoxBlur(k // 4))
    img = img.resize((size, size), Image.BILINEAR)
    a = np.asarray(img, dtype=np.float32)
    # sensor noise (read + shot)
    sigma = _u(rng, 0.0, 10.0, s)
    a = a + rng.normal(0, 1, a.shape) * (sigma + 0.02 * s * np.sqrt(np.maximum(a, 0)) * 4)
    a = np.clip(a, 0, 255).astype(np.uint8)
    # JPEG (MaixPy streams and IDE frames) and RGB565 quantisation of the sensor path
    if rng.random() < 0.6 * s:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "JPEG", quality=int(_u(rng, 95, 30, s)))
        a = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    from ..pixels import to_rgb565

    return Image.fromarray(to_rgb565(a))


def curriculum(epoch: int, ramp_epochs: int, start: float = 0.0, end: float = 1.0) -> float:
    """Strength for ``epoch`` (0-based): linear from ``start`` to ``end`` over ``ramp_epochs``."""
    if ramp_epochs <= 0:
        return end
    return start + (end - start) * min(1.0, epoch / ramp_epochs)


def contact_sheet(frames: list[Image.Image], cols: int = 6) -> Image.Image:
    if not frames:
        raise ValueError("no frames")
    w, h = frames[0].size
    rows = -(-len(frames) // cols)
    sheet = Image.new("RGB", (cols * (w + 4) + 4, rows * (h + 4) + 4), (30, 30, 30))
    for i, f in enumerate(frames):
        sheet.paste(f, (4 + (i % cols) * (w + 4), 4 + (i // cols) * (h + 4)))
    return sheet
