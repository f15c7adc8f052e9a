"""What MaixPy-v1 does to RGB565 pixels, in numpy: one place for the emulator's ``image`` module
and for the training views and benchmarks that must see the board's crops."""

from __future__ import annotations

import numpy as np


def to_rgb565(a: np.ndarray) -> np.ndarray:
    """uint8 RGB888 reduced to RGB565 precision and expanded back (how frames reach the KPU)."""
    r, g, b = a[..., 0] >> 3, a[..., 1] >> 2, a[..., 2] >> 3
    return np.stack([(r << 3) | (r >> 2), (g << 2) | (g >> 4), (b << 3) | (b >> 2)], -1).astype(np.uint8)


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
    r, g, b = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([(r << 3) | (r >> 2), (g << 2) | (g >> 4), (b << 3) | (b >> 2)], -1).astype(np.uint8)
