"""What MaixPy-v1 does to RGB565 pixels, in numpy: one place for the emulator's ``image`` module
and for the training views and benchmarks that must see the board's crops.

At the top of the package, below ``dataset/``, ``emulator/`` and ``device/``, which all use it;
it imports nothing of the project."""

from __future__ import annotations

import numpy as np

# MaixPy-v1's conversion tables (omv/img/rgb2rgb_tab.c): 8 -> 5/6 bits and back, each rounding to
# the nearest level (not truncation and bit replication)
_I = np.arange(256)
RB825 = ((2 * _I * 31 + 255) // 510).astype(np.uint8)
G826 = ((2 * _I * 63 + 255) // 510).astype(np.uint8)
RB528 = ((2 * np.arange(32) * 255 + 31) // 62).astype(np.uint8)
G628 = ((2 * np.arange(64) * 255 + 63) // 126).astype(np.uint8)


# 8 bits -> 5/6 -> 8: what one channel value becomes on the board
RB_ROUND_TRIP = RB528[RB825]
G_ROUND_TRIP = G628[G826]


def expand565(r5: np.ndarray, g6: np.ndarray, b5: np.ndarray) -> np.ndarray:
    """5/6/5-bit channels to RGB888 as the board expands them (pix_to_ai, the LCD)."""
    return np.stack([RB528[r5], G628[g6], RB528[b5]], -1)


def to_rgb565(a: np.ndarray) -> np.ndarray:
    """uint8 RGB888 reduced to RGB565 and expanded back, with MaixPy's tables: what an (r, g, b)
    colour or a camera pixel becomes by the time the KPU reads it."""
    return np.stack([RB_ROUND_TRIP[a[..., 0]], G_ROUND_TRIP[a[..., 1]], RB_ROUND_TRIP[a[..., 2]]], -1)


def int_color(c: int) -> tuple[int, int, int]:
    """An integer colour as MaixPy takes it (lcd.RED = 0x00F8): OpenMV's RGB565 with its two bytes
    swapped (imlib's COLOR_R5_G6_B5_TO_RGB565), as 8-bit (r, g, b)."""
    v = ((c & 0xFF) << 8) | ((c >> 8) & 0xFF)
    return int(RB528[(v >> 11) & 0x1F]), int(G628[(v >> 5) & 0x3F]), int(RB528[v & 0x1F])


def rgb_to_int(r: int, g: int, b: int) -> int:
    """(r, g, b) to MaixPy's integer colour (the inverse of :func:`int_color`)."""
    v = (int(RB825[r]) << 11) | (int(G826[g]) << 5) | int(RB825[b])
    return ((v & 0xFF) << 8) | (v >> 8)


def resize_rgb565(a: np.ndarray, w: int, h: int) -> np.ndarray:
    """``img.resize(w, h)`` on an RGB565 image (py_image_resize): the same size is a copy;
    shrinking either side (w0 >= w or h0 > h) is nearest neighbour (floor); enlarging both is
    bilinear on the 5/6/5-bit channels, centre-aligned."""
    h0, w0 = a.shape[:2]
    if (w, h) == (w0, h0):
        return a.copy()
    if w0 >= w or h0 > h:
        return a[(np.arange(h) * h0 // h)[:, None], (np.arange(w) * w0 // w)[None, :]]
    bits = np.array([3, 2, 3], np.int32)
    q = (a.astype(np.int32) >> bits).astype(np.float32)
    fy = np.clip((np.arange(h) + 0.5) * h0 / h - 0.5, 0, h0 - 1)
    fx = np.clip((np.arange(w) + 0.5) * w0 / w - 0.5, 0, w0 - 1)
    y0, x0 = fy.astype(np.int32), fx.astype(np.int32)
    y1, x1 = np.minimum(y0 + 1, h0 - 1), np.minimum(x0 + 1, w0 - 1)
    wy, wx = (fy - y0)[:, None, None], (fx - x0)[None, :, None]
    top = q[y0][:, x0] * (1 - wx) + q[y0][:, x1] * wx
    bot = q[y1][:, x0] * (1 - wx) + q[y1][:, x1] * wx
    v = (top * (1 - wy) + bot * wy).astype(np.int32)
    return expand565(v[..., 0], v[..., 1], v[..., 2])
