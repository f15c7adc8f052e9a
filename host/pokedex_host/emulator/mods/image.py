"""Host version of MaixPy's ``image`` module (the subset the firmware uses).

Pixels are RGB888 in a numpy array; camera frames arrive already reduced to RGB565 precision.
Anything not defined here does not exist (AttributeError), as on a board without it.
"""

import numpy as _np
from PIL import Image as _PIL
from PIL import ImageDraw as _Draw
from PIL import ImageFont as _Font

from pokedex_host.emulator.state import board as _board

RGB565 = 2
GRAYSCALE = 1
_FONT = _Font.load_default_imagefont()


def _color(c):
    if isinstance(c, int):  # RGB565 packed
        return ((c >> 11) & 0x1F) << 3, ((c >> 5) & 0x3F) << 2, (c & 0x1F) << 3
    return tuple(int(v) for v in c[:3])


class Image:
    __slots__ = ("_a", "_ai")

    def __init__(self, path=None, size=None, copy_to_fb=False):
        if path is not None:
            with _board().open(path, "rb") as f:
                im = _PIL.open(f)
                im.load()
            self._a = _np.asarray(im.convert("RGB"), dtype=_np.uint8).copy()
        elif size is not None:
            w, h = size
            self._a = _np.zeros((h, w, 3), _np.uint8)
        else:
            raise ValueError("image.Image needs a path or size=(w, h)")
        self._ai = None

    @classmethod
    def _from_array(cls, a, ai=False):
        obj = cls.__new__(cls)
        obj._a = _np.ascontiguousarray(a, dtype=_np.uint8)
        obj._ai = obj._a.transpose(2, 0, 1).copy() if ai else None
        return obj

    def width(self):
        return int(self._a.shape[1])

    def height(self):
        return int(self._a.shape[0])

    def format(self):
        return RGB565

    def size(self):
        return int(self._a.size // 3 * 2)

    def get_pixel(self, x, y):
        return tuple(int(v) for v in self._a[y, x])

    def set_pixel(self, x, y, color):
        self._a[y, x] = _color(color)
        return self

    def copy(self, roi=None):
        a = self._a
        if roi is not None:
            x, y, w, h = roi
            a = a[y:y + h, x:x + w]
        return Image._from_array(a.copy())

    def resize(self, w, h):
        im = _PIL.fromarray(self._a).resize((w, h), _PIL.BILINEAR)
        return Image._from_array(_np.asarray(im))

    def pix_to_ai(self):
        self._ai = self._a.transpose(2, 0, 1).copy()
        return self

    def draw_rectangle(self, x, y, w, h, color=(255, 255, 255), thickness=1, fill=False):
        im = _PIL.fromarray(self._a)
        d = _Draw.Draw(im)
        if fill:
            d.rectangle([x, y, x + w - 1, y + h - 1], fill=_color(color))
        else:
            d.rectangle([x, y, x + w - 1, y + h - 1], outline=_color(color), width=thickness)
        self._a = _np.asarray(im).copy()
        return self

    def draw_string(self, x, y, text, color=(255, 255, 255), scale=1, x_spacing=0, y_spacing=0, mono_space=True):
        text = str(text)
        if any(ord(ch) > 126 for ch in text):
            _board().warn("non-ASCII text drawn on the LCD (its font has none): %r" % text)
            text = "".join(ch if ord(ch) <= 126 else "?" for ch in text)
        left, top, right, bottom = _FONT.getbbox(text or " ")
        w, h = max(1, right), max(1, bottom)
        mask = _PIL.new("L", (w, h), 0)
        _Draw.Draw(mask).text((0, 0), text, fill=255, font=_FONT)
        s = max(1, int(scale))
        if s > 1:
            mask = mask.resize((w * s, h * s), _PIL.NEAREST)
        m = _np.asarray(mask) > 127
        H, W = self._a.shape[:2]
        y0, x0 = max(0, y), max(0, x)
        y1, x1 = min(H, y + m.shape[0]), min(W, x + m.shape[1])
        if y1 > y0 and x1 > x0:
            sub = m[y0 - y:y1 - y, x0 - x:x1 - x]
            self._a[y0:y1, x0:x1][sub] = _color(color)
        return self
