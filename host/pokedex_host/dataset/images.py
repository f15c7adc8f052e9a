"""Decoding and checking one image file, and its perceptual hash."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..preprocess import BACKGROUND, open_checked, to_rgb  # noqa: F401  (to_rgb: one definition, reused here)

# Under this many pixels on the short side an image cannot show a Pokémon; ingest reports it.
# (The shared set's smallest real sprites, 40x30 box icons cropped to the Pokémon, are 14 px.)
MIN_SIDE = 12
FORMAT_EXT = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tiff"}


@dataclass(frozen=True)
class ImageInfo:
    format: str
    mode: str
    width: int
    height: int
    frames: int
    exif_rotated: bool
    notes: tuple[str, ...]  # conversions processing will apply (CMYK, 16-bit, palette, ...)


class ImageProblem(Exception):
    pass


def inspect(path: Path) -> ImageInfo:
    """Fully decode ``path`` (so truncation is caught) and say what it is; raises ImageProblem."""
    try:
        if path.stat().st_size == 0:
            raise ImageProblem("zero-byte file")
    except OSError as e:
        raise ImageProblem(f"unreadable: {e.strerror}") from e
    with open_checked(path, ImageProblem) as im:
        fmt, mode = im.format or "?", im.mode
        w, h = im.size
        frames = getattr(im, "n_frames", 1)
        try:
            im.load()
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageProblem(f"cannot decode: {type(e).__name__}: {e}") from e
        rotated = im.getexif().get(0x0112, 1) not in (1, None)
    if fmt not in FORMAT_EXT:
        raise ImageProblem(f"unsupported image format {fmt}")
    if min(w, h) < MIN_SIDE:
        raise ImageProblem(f"too small: {w}x{h} px (under {MIN_SIDE} px on the short side it cannot show a Pokémon)")
    notes = []
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
    elif mode.startswith("I;16") or mode == "I":
        notes.append("16-bit converted to 8-bit")
    elif mode == "P":
        notes.append("palette converted to RGB")
    elif mode in ("L", "LA", "1"):
        notes.append("grayscale converted to RGB")
    if rotated:
        notes.append("EXIF orientation applied")
    return ImageInfo(fmt, mode, w, h, frames, rotated, tuple(notes))


def letterbox(im: Image.Image, size: int) -> Image.Image:
    """Scale the long side to ``size`` keeping the aspect ratio, centre on white."""
    w, h = im.size
    s = size / max(w, h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    im = im.resize((nw, nh), Image.BICUBIC if s > 1 else Image.LANCZOS)
    out = Image.new("RGB", (size, size), BACKGROUND)
    out.paste(im, ((size - nw) // 2, (size - nh) // 2))
    return out


def dhash(path: Path) -> int:
    """64-bit difference hash of the image flattened on white: near-duplicates differ in few bits."""
    with Image.open(path) as im:
        g = to_rgb(im).convert("L").resize((9, 8), Image.BILINEAR)
    a = np.asarray(g, dtype=np.int16)
    bits = (a[:, 1:] > a[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")
