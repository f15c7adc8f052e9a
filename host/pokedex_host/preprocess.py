"""The model's input, defined once: what an image becomes before it reaches the KPU.

Spec (docs/specs/model-input.md): RGB channel order, uint8 0..255, NCHW, S x S. A photo or
sprite is decoded with its EXIF rotation applied, transparent pixels are flattened onto white,
the image is padded with white to a centred square (letterbox, no stretching) and resized to
S x S with bilinear filtering. On the board, the camera's ``set_windowing((S, S))`` gives the
same S x S RGB view without a resize; the firmware hands the KPU RGB888 planes (``pix_to_ai``).
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

BACKGROUND = (255, 255, 255)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
# Refuse images that would decode to more than this many pixels (decompression bombs).
MAX_PIXELS = 40_000_000


@dataclass(frozen=True)
class InputSpec:
    size: int
    layout: str = "NCHW"
    channels: str = "RGB"
    dtype: str = "uint8"
    value_range: tuple[int, int] = (0, 255)
    resize: str = "exif-transpose, flatten alpha on white, letterbox to square with white, bilinear resize"

    def as_dict(self) -> dict:
        return {
            "shape": [1, 3, self.size, self.size],
            "layout": self.layout,
            "channels": self.channels,
            "dtype": self.dtype,
            "range": list(self.value_range),
            "resize": self.resize,
            "background": list(BACKGROUND),
        }


class BadImage(Exception):
    pass


@contextlib.contextmanager
def open_checked(path: Path, error=None):
    """``Image.open`` that refuses decompression bombs and turns decoder failures into ``error``."""
    error = error or BadImage
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise error(f"{w}x{h} pixels is over the {MAX_PIXELS:,}-pixel limit (decompression bomb?)")
                yield im
    except error:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise error(f"cannot decode: {type(e).__name__}: {e}") from e


def load_image(path: Path, size: int) -> np.ndarray:
    """Decode ``path`` into a uint8 array of shape (3, size, size), or raise :class:`BadImage`."""
    with open_checked(path) as im:
        im.load()
        return to_model_input(im, size)


def to_rgb(im: Image.Image) -> Image.Image:
    """EXIF-rotate, bring any mode (CMYK, 16-bit, palette, grayscale) to 8-bit RGB, flatten
    transparency onto white."""
    im = ImageOps.exif_transpose(im)
    if im.mode.startswith("I;16") or im.mode == "I":
        arr = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        im = Image.fromarray(np.clip(arr / hi * 255.0, 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        im = Image.alpha_composite(bg, rgba)
    return im.convert("RGB")


def to_model_input(im: Image.Image, size: int) -> np.ndarray:
    im = to_rgb(im)
    w, h = im.size
    side = max(w, h)
    if w != h:
        sq = Image.new("RGB", (side, side), BACKGROUND)
        sq.paste(im, ((side - w) // 2, (side - h) // 2))
        im = sq
    if side != size:
        im = im.resize((size, size), Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()


def is_image_file(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
