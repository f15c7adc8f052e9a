"""Synthetic trading cards and what a K210 camera makes of them.

One card layout (:data:`LAYOUT`, proportions of a real 63 x 88 mm card) is shared by everything
that draws or reads a card: the training views, the card-frame benchmark and the firmware's crop.
The firmware locates the card's corners and crops :func:`art_crop_quad` of them — a square
centred on the art window, as wide as the window plus a margin — so the classifier is trained on
exactly that (``art_view``): the Pokémon on the art panel with its border, a strip of the name bar
and text, camera effects, and the locator's errors (offset, scale, residual rotation).

All randomness comes from the numpy Generator passed in: same seed, same image.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..pixels import resize_rgb565, to_rgb565
from .augment import CARD_COLOURS, crop_to_alpha, perspective_coeffs

BORDER_COLOURS = [*CARD_COLOURS, (60, 60, 70)]  # the sprite cards' colours and a dark border


@dataclass(frozen=True)
class CardLayout:
    """Fractions of the card's width (x) and height (y)."""

    aspect: float = 88 / 63  # height / width
    art: tuple[float, float, float, float] = (0.085, 0.105, 0.915, 0.485)  # x0, y0, x1, y1
    name_bar: tuple[float, float, float, float] = (0.06, 0.03, 0.94, 0.095)
    text: tuple[float, float, float, float] = (0.08, 0.53, 0.92, 0.90)
    crop_margin: float = 0.06  # the firmware's crop: the art window grown by this much per side


LAYOUT = CardLayout()


def art_crop_quad(corners: np.ndarray, layout: CardLayout = LAYOUT) -> np.ndarray:
    """The firmware's classifier crop for a card with ``corners`` (4 x 2: top-left, top-right,
    bottom-right, bottom-left, in image pixels): the art window grown by ``crop_margin`` on each
    side, mapped into the image (bilinear in the corners). The crop is resized to the model's
    square input as it is (a card's art window is about 1.5:1, so it is squeezed sideways)."""
    c = np.asarray(corners, np.float64)
    x0, y0, x1, y1 = layout.art
    mx, my = (x1 - x0) * layout.crop_margin, (y1 - y0) * layout.crop_margin
    out = []
    for u, v in ((x0 - mx, y0 - my), (x1 + mx, y0 - my), (x1 + mx, y1 + my), (x0 - mx, y1 + my)):
        top = c[0] + (c[1] - c[0]) * u
        bottom = c[3] + (c[2] - c[3]) * u
        out.append(top + (bottom - top) * v)
    return np.array(out)


def _background(rng, w, h) -> Image.Image:
    """A desk: a smooth colour with stripes or wood-like texture and noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(30, 210, 3)
    f = rng.uniform(6, 40)
    ang = rng.uniform(0, np.pi)
    t = xx * np.cos(ang) + yy * np.sin(ang)
    tex = np.sin(t / f + rng.uniform(0, 6)) * rng.uniform(3, 30) + rng.normal(0, 5, (h, w))
    a = base[None, None, :] + tex[..., None] * rng.uniform(0.5, 1.0, 3)[None, None, :]
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def _panel(rng, w, h) -> Image.Image:
    """The art window's background: a soft gradient, a landscape-like split or a busy texture."""
    kind = rng.integers(3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c0, c1 = rng.uniform(40, 250, 3), rng.uniform(40, 250, 3)
    if kind == 0:
        t = (yy / max(h - 1, 1))[..., None]
    elif kind == 1:
        horizon = rng.uniform(0.4, 0.8) * h
        t = (1 / (1 + np.exp(-(yy - horizon) / rng.uniform(2, 10))))[..., None]
    else:
        t = (0.5 + 0.5 * np.sin(xx / rng.uniform(4, 20)) * np.cos(yy / rng.uniform(4, 20)))[..., None]
    a = c0 * (1 - t) + c1 * t + rng.normal(0, 4, (h, w, 1))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def render_card(
    sprite: Image.Image, rng: np.random.Generator, width: int = 252, layout: CardLayout = LAYOUT
) -> Image.Image:
    """An RGBA card ``width`` px wide: border colour, name bar, art window with ``sprite`` (RGBA,
    alpha = the Pokémon) on a panel, attack text; a plain or holographic finish."""
    w, h = width, int(round(width * layout.aspect))
    card = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    d = ImageDraw.Draw(card)
    colour = BORDER_COLOURS[rng.integers(len(BORDER_COLOURS))]
    d.rounded_rectangle([0, 0, w - 1, h - 1], max(2, w // 16), fill=colour + (255,))
    inner = tuple(int(np.clip(c * rng.uniform(0.85, 1.15), 0, 255)) for c in colour)
    d.rectangle([int(w * 0.04), int(h * 0.025), int(w * 0.96), int(h * 0.975)], fill=inner + (255,))

    def box(f):
        return [int(f[0] * w), int(f[1] * h), int(f[2] * w), int(f[3] * h)]

    nb = box(layout.name_bar)
    d.rectangle(nb, fill=tuple(int(c * 0.75) for c in inner) + (255,))
    for i in range(int(rng.integers(4, 9))):  # the name, as dark glyph blocks
        x = nb[0] + 4 + i * (nb[3] - nb[1]) * 0.7
        d.rectangle([x, nb[1] + 3, x + (nb[3] - nb[1]) * 0.5, nb[3] - 3], fill=(30, 30, 30, 255))
    ab = box(layout.art)
    panel = _panel(rng, ab[2] - ab[0], ab[3] - ab[1]).convert("RGBA")
    aw, ah = panel.size
    k = min(aw * rng.uniform(0.7, 0.95) / sprite.width, ah * rng.uniform(0.75, 0.97) / sprite.height)
    sp = sprite.resize(
        (max(1, int(sprite.width * k)), max(1, int(sprite.height * k))), Image.LANCZOS if k < 1 else Image.BICUBIC
    )
    ox = int((aw - sp.width) * rng.uniform(0.3, 0.7))
    oy = int((ah - sp.height) * rng.uniform(0.4, 0.9))
    panel.alpha_composite(sp, (max(0, ox), max(0, oy)))
    card.paste(panel, ab[:2])
    d.rectangle(ab, outline=tuple(int(c * 0.6) for c in colour) + (255,), width=max(1, w // 80))
    tb = box(layout.text)
    for i in range(int(rng.integers(3, 7))):  # attack text lines
        y = tb[1] + i * (tb[3] - tb[1]) / 7
        d.rectangle(
            [tb[0], y, int(rng.uniform(tb[0] + 0.3 * (tb[2] - tb[0]), tb[2])), y + max(2, h // 80)],
            fill=(50, 45, 40, 255),
        )
    if rng.random() < 0.35:  # holo finish: a rainbow sheen over the whole card
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ph = (xx + yy * rng.uniform(0.3, 1.5)) / rng.uniform(15, 60) + rng.uniform(0, 6)
        sheen = np.stack([np.sin(ph), np.sin(ph + 2.1), np.sin(ph + 4.2)], -1) * rng.uniform(15, 45)
        a = np.asarray(card, np.float32)
        a[..., :3] = np.clip(a[..., :3] + sheen, 0, 255)
        card = Image.fromarray(a.astype(np.uint8), "RGBA")
    return card


def place_card(
    card: Image.Image,
    frame: Image.Image,
    rng,
    height_frac: tuple[float, float],
    max_angle: float,
    persp: float,
    off_centre: float,
) -> np.ndarray:
    """Composite ``card`` into ``frame`` (RGBA, in place) scaled to a fraction of the frame's height,
    rotated, with a perspective tilt; returns its 4 corners (TL, TR, BR, BL) in frame pixels."""
    W, H = frame.size
    ch = H * rng.uniform(*height_frac)
    cw = ch / (card.height / card.width)
    ang = np.deg2rad(rng.uniform(-max_angle, max_angle))
    local = np.array([(-cw / 2, -ch / 2), (cw / 2, -ch / 2), (cw / 2, ch / 2), (-cw / 2, ch / 2)])
    local = local + rng.uniform(-persp, persp, (4, 2)) * np.array([cw, ch])
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    pts = local @ rot.T
    pts = pts - (pts.min(axis=0) + pts.max(axis=0)) / 2  # centred on its bounding box
    span = np.ptp(pts, axis=0)
    fit = min(1.0, 0.98 * W / span[0], 0.98 * H / span[1])  # keep the whole card in view
    pts, span = pts * fit, span * fit
    room = np.maximum(np.array([W, H]) - span, 0) / 2
    centre = np.array([W / 2, H / 2]) + rng.uniform(-1, 1, 2) * room * off_centre
    corners = pts + centre
    src = [(0, 0), (card.width, 0), (card.width, card.height), (0, card.height)]
    warped = card.transform(
        (W, H), Image.PERSPECTIVE, perspective_coeffs(src, [tuple(p) for p in corners]), Image.BICUBIC
    )
    frame.alpha_composite(warped)
    return corners


def camera_effects(img: Image.Image, rng: np.random.Generator, s: float = 1.0, out_size=None) -> np.ndarray:
    """What the OV2640 and MaixPy's RGB565 frame do to a scene: light level, white balance,
    contrast, vignetting, glare, blur (focus or motion), downscale, sensor noise, JPEG (IDE
    streams), RGB565. ``s`` in [0, 1] scales every effect. Returns uint8 H x W x 3."""
    img = img.convert("RGB")
    W, H = img.size
    a = np.asarray(img, np.float32)
    a = a * (1.0 + (rng.choice([0.5, 1.35]) - 1.0) * s * rng.random())
    a = a * (1 + rng.uniform(-0.18, 0.18, 3) * s)[None, None, :]
    mean = a.mean()
    a = (a - mean) * (1 + rng.uniform(-0.35, 0.25) * s) + mean
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    r2 = ((xx - W / 2) ** 2 + (yy - H / 2) ** 2) / (W * W / 2)
    a *= (1 - 0.5 * s * rng.random() * r2)[..., None]
    img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    if rng.random() < 0.5 * s:  # glare from a lamp on the glossy card
        glare = Image.new("L", (W, H), 0)
        gx, gy = rng.uniform(0, W), rng.uniform(0, H)
        gr = rng.uniform(0.08, 0.3) * W
        ImageDraw.Draw(glare).ellipse([gx - gr, gy - gr * 0.6, gx + gr, gy + gr * 0.6], fill=int(rng.uniform(60, 200)))
        glare = glare.filter(ImageFilter.GaussianBlur(gr * 0.35))
        img = Image.composite(Image.new("RGB", (W, H), (255, 255, 245)), img, glare)
    if rng.random() < 0.7 * s:
        if rng.random() < 0.5:
            img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.3 + 2.2 * s) * W / 256))
        else:
            k = 2 * int(rng.uniform(1, 1 + 4 * s)) + 1
            kern = np.zeros((k, k), np.float32)
            kern[k // 2, :] = 1
            kern = np.asarray(Image.fromarray((kern * 255).astype(np.uint8)).rotate(rng.uniform(0, 180)), np.float32)
            kern /= max(kern.sum(), 1)
            if k <= 5:
                img = img.filter(ImageFilter.Kernel((k, k), kern.flatten().tolist(), scale=1))
            else:
                img = img.filter(ImageFilter.BoxBlur(k // 4))
    if out_size is not None and img.size != tuple(out_size):
        img = img.resize(tuple(out_size), Image.BILINEAR)
    a = np.asarray(img, np.float32)
    sigma = rng.uniform(0.0, 8.0 * s)
    a = a + rng.normal(0, 1, a.shape).astype(np.float32) * (sigma + 0.08 * s * np.sqrt(np.maximum(a, 0)))
    a = np.clip(a, 0, 255).astype(np.uint8)
    if rng.random() < 0.4 * s:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "JPEG", quality=int(rng.uniform(35, 95)))
        a = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return to_rgb565(a)


def art_view(
    sprite: Image.Image, rng: np.random.Generator, size: int = 128, strength: float = 1.0, layout: CardLayout = LAYOUT
) -> np.ndarray:
    """What the classifier sees on the board: a QVGA camera frame of the card (``card_frame``),
    cropped the way firmware/pk_card.py crops a located card — the bounding box of the art window
    plus margin, from corners off by the locator's typical error (~1.5 % of the card) — and
    resized to ``size`` with MaixPy's RGB565 ``resize``. uint8 size x size x 3."""
    img, corners = card_frame(sprite, rng, strength=strength, layout=layout)
    return crop_art(img, corners, rng, size, layout)


def scan_view(
    card: Image.Image, rng: np.random.Generator, size: int = 128, strength: float = 1.0, layout: CardLayout = LAYOUT
) -> np.ndarray:
    """``art_view`` of a real card (an RGBA scan, ``scans.open_card``) held in a hand
    (``held_card_frame``). uint8 size x size x 3."""
    img, corners = held_card_frame(card, rng, strength=strength)
    return crop_art(img, corners, rng, size, layout)


def crop_art(
    img: np.ndarray, corners: np.ndarray, rng: np.random.Generator, size: int, layout: CardLayout = LAYOUT
) -> np.ndarray:
    """The firmware's crop of the card with ``corners`` in frame ``img``, from corners off by the
    locator's typical error (~1.5 % of the card), resized to ``size`` as MaixPy resizes."""
    err = rng.normal(0, 0.015, (4, 2)) * np.ptp(corners, axis=0)
    q = art_crop_quad(corners + err, layout)
    H, W = img.shape[:2]
    x0, y0 = np.clip(np.floor(q.min(axis=0)), 0, [W - 8, H - 8]).astype(int)
    x1, y1 = np.clip(np.ceil(q.max(axis=0)), [x0 + 8, y0 + 8], [W, H]).astype(int)
    return resize_rgb565(img[y0:y1, x0:x1], size, size)


def sprite_from_rgb(x: np.ndarray, tol: int = 12) -> Image.Image:
    """An RGBA sprite from a training image flattened on white (H x W x 3 uint8): near-white
    regions that touch the border are background; white inside the Pokémon stays. Cropped to
    the Pokémon with a 4 % margin."""
    import cv2

    white = (x.min(axis=2) >= 255 - tol).astype(np.uint8)
    n, labels = cv2.connectedComponents(white, connectivity=4)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    bg = np.isin(labels, edge[edge > 0]) & (white > 0)
    alpha = cv2.erode(np.where(bg, 0, 255).astype(np.uint8), np.ones((3, 3), np.uint8))
    return crop_to_alpha(Image.fromarray(np.dstack([x, alpha]), "RGBA"))


def card_frame(
    sprite: Image.Image | None,
    rng: np.random.Generator,
    width: int = 320,
    height: int = 240,
    height_frac: tuple[float, float] = (0.4, 1.0),
    max_angle: float = 25.0,
    layout: CardLayout = LAYOUT,
    strength: float = 1.0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """A QVGA camera frame of a card held in front of the board (card height 40-100 % of the
    frame, anywhere, rotated up to ``max_angle``, tilted, uneven light, glare, blur, noise,
    RGB565) and its corners (TL, TR, BR, BL), or — with ``sprite=None`` — a frame with no card
    (the desk, sometimes with a sheet of paper or a phone on it) and ``None``."""
    frame = _background(rng, width, height).convert("RGBA")
    corners = None
    if sprite is None:
        if rng.random() < 0.6:  # a distractor that is not a card: a paper sheet or a dark slab
            w = rng.uniform(0.3, 0.8) * width
            h = w * rng.choice([0.3, 1.0, 2.3]) * rng.uniform(0.95, 1.05)  # not a card's 1.4
            col = tuple(int(v) for v in rng.choice([rng.uniform(200, 250, 3), rng.uniform(10, 60, 3)]))
            sheet = Image.new("RGBA", (max(2, int(w)), max(2, int(h))), col + (255,))
            place_card(sheet, frame, rng, (0.3, 0.9), max_angle, 0.04, 1.0)
    else:
        card = render_card(sprite, rng, width=int(height * 0.85), layout=layout)
        corners = place_card(card, frame, rng, height_frac, max_angle, 0.05, 1.0)
    return camera_effects(frame, rng, strength), corners


SKIN = [(255, 219, 172), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 56, 30)]


def _fingers(frame: Image.Image, corners: np.ndarray, rng: np.random.Generator) -> None:
    """A hand holding the card: one to four finger ends over one or two of its edges (the
    thumb in front may reach the card's border or a little of its art), drawn in place."""
    d = ImageDraw.Draw(frame)
    c = np.asarray(corners)
    size = np.ptp(c, axis=0).mean()
    skin = np.array(SKIN[rng.integers(len(SKIN))]) * rng.uniform(0.8, 1.1)
    edges = rng.choice(4, size=int(rng.integers(1, 3)), replace=False)
    centre = c.mean(axis=0)
    for e in edges:
        a, b = c[e], c[(e + 1) % 4]
        for _ in range(int(rng.integers(1, 3))):
            t = rng.uniform(0.15, 0.85)
            p = a + (b - a) * t
            inward = centre - p
            inward /= max(np.linalg.norm(inward), 1e-6)
            reach = size * rng.uniform(0.03, 0.14)  # how far over the card the fingertip reaches
            width = size * rng.uniform(0.12, 0.2)
            tip = p + inward * reach
            base = p - inward * size * rng.uniform(0.15, 0.35)
            normal = np.array([-inward[1], inward[0]]) * width / 2
            col = tuple(int(v) for v in np.clip(skin * rng.uniform(0.9, 1.05), 0, 255)) + (255,)
            d.polygon([tuple(base + normal), tuple(tip + normal), tuple(tip - normal), tuple(base - normal)], fill=col)
            d.ellipse([tip[0] - width / 2, tip[1] - width / 2, tip[0] + width / 2, tip[1] + width / 2], fill=col)


def _sleeve(card: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The card in a clear or coloured sleeve: a slightly larger rim around it and a faint film
    with a glare band over the face."""
    w, h = card.size
    pad = int(max(2, w * rng.uniform(0.02, 0.05)))
    out = Image.new("RGBA", (w + 2 * pad, h + 2 * pad), (0, 0, 0, 0))
    rim = tuple(int(v) for v in rng.choice([rng.uniform(200, 250, 3), rng.uniform(20, 200, 3)])) + (
        int(rng.uniform(60, 200)),
    )
    ImageDraw.Draw(out).rounded_rectangle([0, 0, out.width - 1, out.height - 1], max(2, w // 20), fill=rim)
    out.alpha_composite(card, (pad, pad))
    film = Image.new("L", out.size, 0)
    x = rng.uniform(-0.3, 1.0) * out.width
    bw = rng.uniform(0.05, 0.3) * out.width
    ImageDraw.Draw(film).polygon(
        [(x, 0), (x + bw, 0), (x + bw - 0.6 * out.width, out.height), (x - 0.6 * out.width, out.height)],
        fill=int(rng.uniform(20, 110)),
    )
    film = film.filter(ImageFilter.GaussianBlur(out.width * 0.03))
    white = Image.new("RGBA", out.size, (255, 255, 250, 255))
    mask = Image.fromarray(np.minimum(np.asarray(film), np.asarray(out)[..., 3]))
    out = Image.composite(white, out, mask).convert("RGBA")
    out.putalpha(Image.fromarray(np.asarray(out)[..., 3]))
    return out


def held_card_frame(
    card: Image.Image,
    rng: np.random.Generator,
    width: int = 320,
    height: int = 240,
    height_frac: tuple[float, float] = (0.45, 1.0),
    max_angle: float = 20.0,
    strength: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A QVGA camera frame of a real card (RGBA) held in front of the board: on a desk, sometimes
    in a sleeve, fingers over its edges, at a distance, rotated and tilted, in uneven light, with
    the camera's effects; and the corners (TL, TR, BR, BL) of the card itself."""
    frame = _background(rng, width, height).convert("RGBA")
    sleeved = rng.random() < 0.4
    face = _sleeve(card, rng) if sleeved else card
    corners = place_card(face, frame, rng, height_frac, max_angle, 0.05, 1.0)
    if sleeved:  # the card's own corners inside the sleeve's
        pad_u = (face.width - card.width) / 2 / face.width
        pad_v = (face.height - card.height) / 2 / face.height
        c = corners
        inner = []
        for u, v in ((pad_u, pad_v), (1 - pad_u, pad_v), (1 - pad_u, 1 - pad_v), (pad_u, 1 - pad_v)):
            top = c[0] + (c[1] - c[0]) * u
            bottom = c[3] + (c[2] - c[3]) * u
            inner.append(top + (bottom - top) * v)
        corners = np.array(inner)
    if rng.random() < 0.7:
        _fingers(frame, corners, rng)
    return camera_effects(frame, rng, strength), corners
