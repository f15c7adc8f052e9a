"""Host version of MaixPy's ``lcd``: every ``display`` writes a 320x240 PNG a person can look at."""

import image as _image
import numpy as _np
from PIL import Image as _PIL

from pokedex_host.emulator.state import board as _board

_W, _H = 320, 240
_state = {"init": False, "fb": None}

# lcd.h's colour constants: RGB565 with the two bytes swapped (what the LCD driver sends as is)
BLACK, NAVY, DARKGREEN, DARKCYAN, MAROON, PURPLE, OLIVE = 0x0000, 0x0F00, 0xE003, 0xEF03, 0x0078, 0x0F78, 0xE07B
LIGHTGREY, DARKGREY, BLUE, GREEN, CYAN, RED, MAGENTA = 0x18C6, 0xEF7B, 0x1F00, 0xE007, 0xFF07, 0x00F8, 0x1FF8
YELLOW, WHITE, ORANGE, GREENYELLOW, PINK = 0xE0FF, 0xFFFF, 0x20FD, 0xE5AF, 0x1FF8


def init(freq=15000000, color=(0, 0, 0), type=1, invert=False, lcd_type=0):
    _state["init"] = True
    _state["fb"] = _np.zeros((_H, _W, 3), _np.uint8)


def width():
    return _W


def height():
    return _H


def rotation(dir=None):
    return 0


def _need():
    if not _state["init"]:
        raise OSError("lcd: call lcd.init() first")


def _flush():
    b = _board()
    path = b.out / ("lcd_%04d.png" % b.lcd_count)
    _PIL.fromarray(_state["fb"]).save(path)
    b.event("lcd", index=b.lcd_count, file=path.name)
    b.lcd_count += 1


def _int_color(c, what):
    """lcd.draw_string's colours are integers (py_lcd.c reads them with mp_obj_get_int): a tuple is
    a TypeError. The integer is RGB565 with its bytes swapped, like lcd.RED (0x00F8)."""
    if isinstance(c, bool) or not isinstance(c, int):
        raise TypeError("can't convert %s to int (lcd.%s colour)" % (type(c).__name__, what))
    return c & 0xFFFF


def clear(color=0):
    """An integer (byte-swapped RGB565) or an (r, g, b) tuple (py_lcd_clear converts it)."""
    _need()
    if isinstance(color, (tuple, list)):
        from pokedex_host.pixels import to_rgb565

        rgb = to_rgb565(_np.clip(_np.array(color[:3], _np.int64), 0, 255).astype(_np.uint8))
    else:
        rgb = _image._color(_int_color(color, "clear"))
    _state["fb"][:] = rgb
    _flush()  # the panel shows it at once


def display(img, roi=None, oft=None):
    _need()
    a = img._a
    h, w = a.shape[:2]
    if oft is not None:
        x, y = oft
    else:  # smaller images are centred
        x, y = max(0, (_W - w) // 2), max(0, (_H - h) // 2)
    fb = _state["fb"]
    fb[:] = 0
    hh, ww = min(h, _H - y), min(w, _W - x)
    fb[y : y + hh, x : x + ww] = a[:hh, :ww]
    _flush()


def draw_string(x, y, text, color=0xFFFF, bg=0x0000):
    _need()
    fg = _int_color(color, "draw_string")
    _int_color(bg, "draw_string")
    tmp = _image.Image._from_array(_state["fb"], heap=False)  # the LCD's own buffer
    tmp.draw_string(x, y, text, color=fg, scale=1)
    _state["fb"] = tmp._a
    _flush()
