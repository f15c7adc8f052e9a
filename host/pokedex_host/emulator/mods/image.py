"""Host version of MaixPy's ``image`` module (the subset the firmware uses).

Pixels are RGB888 in a numpy array; camera frames arrive already reduced to RGB565 precision.
Anything not defined here does not exist (AttributeError), as on a board without it; the methods
the emulated firmware build lacks (``image_lacks`` in boards/firmware/*.toml) are removed too.
"""

import numpy as _np
from PIL import Image as _PIL
from PIL import ImageDraw as _Draw
from PIL import ImageFont as _Font

from pokedex_host.emulator.state import board as _board
from pokedex_host.emulator.state import heap_alloc as _heap_alloc

RGB565 = 2
GRAYSCALE = 1
_FONT = _Font.load_default_imagefont()


def _color(c):
    """A colour argument as 8-bit (r, g, b): an integer is MaixPy's byte-swapped RGB565 (lcd.RED is
    0x00F8); a tuple is taken as given (set_pixel reduces it to the image's 5/6/5 bits)."""
    if isinstance(c, int):
        from pokedex_host.pixels import int_color

        return int_color(c)
    return tuple(int(v) for v in c[:3])


class _Result:
    """A find_* result as MaixPy builds it: one accessor method per field, in the order indexing
    and len() follow (py_rect / py_blob subscr)."""

    __slots__ = ("_v",)
    _FIELDS: tuple = ()

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        for i, name in enumerate(cls._FIELDS):
            setattr(cls, name, lambda self, i=i: self._v[i])

    def __getitem__(self, i):
        return self._v[i]

    def __len__(self):
        return len(self._FIELDS)


class rect(_Result):
    """A find_rects result: x(), y(), w(), h(), magnitude(), rect(), corners(); [0..4] = x, y, w, h, magnitude."""

    __slots__ = ("_c",)
    _FIELDS = ("x", "y", "w", "h", "magnitude")

    def __init__(self, x, y, w, h, magnitude, corners):
        self._v = (int(x), int(y), int(w), int(h), int(magnitude))
        self._c = tuple((int(a), int(b)) for a, b in corners)

    def rect(self):
        return self._v[:4]

    def corners(self):
        return self._c


class blob(_Result):
    """A find_blobs result (MaixPy-v1's py_blob: no min_corners / major_axis_line): x(), y(), w(),
    h(), pixels(), cx(), cy(), rotation(), code(), count(), rect(), area(), density();
    [0..9] = x, y, w, h, pixels, cx, cy, rotation, code, count."""

    __slots__ = ()
    _FIELDS = ("x", "y", "w", "h", "pixels", "cx", "cy", "rotation", "code", "count")

    def __init__(self, x, y, w, h, pixels, cx, cy, rotation, code, count):
        self._v = (
            int(x),
            int(y),
            int(w),
            int(h),
            int(pixels),
            int(cx),
            int(cy),
            float(rotation),
            int(code),
            int(count),
        )

    def rect(self):
        return self._v[:4]

    def area(self):
        return self._v[2] * self._v[3]

    def density(self):
        a = self._v[2] * self._v[3]
        return self._v[4] / float(a) if a else 0.0


def _in_threshold(lab, t):
    """Pixels of a LAB image inside one threshold (l_lo, l_hi, a_lo, a_hi, b_lo, b_hi); missing
    bounds are open, and each pair is taken in either order (imlib's thresholds)."""
    t = list(t) + [-128, 127, -128, 127][max(0, len(t) - 2) :]
    lo = _np.array([min(t[0], t[1]), min(t[2], t[3]), min(t[4], t[5])])
    hi = _np.array([max(t[0], t[1]), max(t[2], t[3]), max(t[4], t[5])])
    return ((lab >= lo) & (lab <= hi)).all(-1)


def _lab(a):
    """L (0..100), A, B (-128..127) as ints, as imlib's RGB565 -> LAB tables (sRGB, D65)."""
    import cv2 as _cv2

    lab = _cv2.cvtColor(a.astype(_np.float32) / 255.0, _cv2.COLOR_RGB2LAB)
    return _np.rint(lab).astype(_np.int32)


def _merge_blobs(blobs, margin, merge_cb):
    """imlib_find_blobs' merge pass: each blob absorbs the later ones whose box, grown by margin,
    overlaps its own (box united, centroid and rotation pixel-weighted, codes or-ed, counts
    added), repeated until a pass merges nothing."""
    import math as _m

    out = list(blobs)
    while True:
        merged, done = False, []
        while out:
            a = out.pop(0)
            rest = []
            for b in out:
                bx, by, bw, bh = b.x() - margin, b.y() - margin, max(0, b.w() + 2 * margin), max(0, b.h() + 2 * margin)
                if (
                    a.x() < bx + bw
                    and a.y() < by + bh
                    and bx < a.x() + a.w()
                    and by < a.y() + a.h()
                    and (merge_cb is None or merge_cb(a, b))
                ):
                    x1, y1 = min(a.x(), b.x()), min(a.y(), b.y())
                    x2, y2 = max(a.x() + a.w(), b.x() + b.w()), max(a.y() + a.h(), b.y() + b.h())
                    n = a.pixels() + b.pixels()
                    sn = (_m.sin(a.rotation()) * a.pixels() + _m.sin(b.rotation()) * b.pixels()) / n
                    cs = (_m.cos(a.rotation()) * a.pixels() + _m.cos(b.rotation()) * b.pixels()) / n
                    a = blob(
                        x1,
                        y1,
                        x2 - x1,
                        y2 - y1,
                        n,
                        (a.cx() * a.pixels() + b.cx() * b.pixels()) // n,
                        (a.cy() * a.pixels() + b.cy() * b.pixels()) // n,
                        _m.atan2(sn, cs),
                        a.code() | b.code(),
                        min(a.count() + b.count(), 65535),
                    )
                    merged = True
                else:
                    rest.append(b)
            out = rest
            done.append(a)
        out = done
        if not merged:
            return out


class statistics:
    """get_statistics() result: [l_|a_|b_]{mean, median, mode, stdev, min, max, lq, uq}()."""

    def __init__(self, lab):
        self._s = {}
        for i, ch in enumerate("lab"):
            v = lab[..., i].ravel()
            q = _np.percentile(v, [25, 50, 75]) if v.size else [0, 0, 0]
            vals, counts = _np.unique(v, return_counts=True)
            self._s[ch] = {
                "mean": int(v.mean()) if v.size else 0,
                "median": int(q[1]),
                "mode": int(vals[counts.argmax()]) if v.size else 0,
                "stdev": int(v.std()) if v.size else 0,
                "min": int(v.min()) if v.size else 0,
                "max": int(v.max()) if v.size else 0,
                "lq": int(q[0]),
                "uq": int(q[2]),
            }
        for ch in "lab":
            for k in ("mean", "median", "mode", "stdev", "min", "max", "lq", "uq"):
                setattr(self, "%s_%s" % (ch, k), (lambda val: lambda: val)(self._s[ch][k]))


class Image:
    """An RGB565 image. Images made by the firmware (``Image(size=...)``, ``copy``, ``resize``)
    and their ``pix_to_ai`` buffers take GC heap (MemoryError when it is short); camera frames
    live in the frame buffer, with their pix_ai filled by the sensor driver."""

    __slots__ = ("_a", "_ai", "_heap", "__weakref__")

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
        self._heap = True
        _heap_alloc(self, self._a.shape[0] * self._a.shape[1] * 2, "image")

    @classmethod
    def _from_array(cls, a, ai=False, heap=True):
        obj = cls.__new__(cls)
        obj._a = _np.ascontiguousarray(a, dtype=_np.uint8)
        obj._ai = obj._a.transpose(2, 0, 1).copy() if ai else None
        obj._heap = heap
        if heap:
            _heap_alloc(obj, obj._a.shape[0] * obj._a.shape[1] * 2, "image")
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
        """The image is RGB565: an (r, g, b) keeps 5/6/5 bits, rounded through MaixPy's tables
        (py_image_set_pixel); stored here as the 8-bit values the board expands them to."""
        from pokedex_host.pixels import G_ROUND_TRIP, RB_ROUND_TRIP

        r, g, b = (min(255, max(0, v)) for v in _color(color))
        self._a[y, x] = (RB_ROUND_TRIP[r], G_ROUND_TRIP[g], RB_ROUND_TRIP[b])
        return self

    def _roi(self, roi):
        """MaixPy's ROI rules (py_helper_arg_to_roi): None = the whole image; w or h < 1 is an
        error, an ROI off the image is an error, anything else is clipped to the image."""
        H, W = self._a.shape[:2]
        if roi is None:
            return 0, 0, W, H
        x, y, w, h = (int(v) for v in roi)
        if w < 1 or h < 1:
            raise OSError("Invalid ROI dimensions!")  # PY_ASSERT_TRUE_MSG raises OSError
        x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
        if x1 <= x0 or y1 <= y0:
            raise OSError("ROI does not overlap on the image!")
        return x0, y0, x1 - x0, y1 - y0

    def copy(self, roi=None, x_scale=1.0, y_scale=1.0, copy_to_fb=False):
        """A new image of the ROI scaled by x_scale, y_scale, nearest neighbour (py_image_copy)."""
        x, y, w, h = self._roi(roi)
        ow, oh = int(w * x_scale), int(h * y_scale)
        if ow < 1 or ow > 65535 or oh < 1 or oh > 65535:
            raise ValueError("Invalid scale!")
        sub = self._a[y : y + h, x : x + w]
        if (ow, oh) != (w, h):
            sub = sub[(_np.arange(oh) * h // oh)[:, None], (_np.arange(ow) * w // ow)[None, :]]
        return Image._from_array(sub.copy())

    def resize(self, w, h):
        """A new image (no pix_ai), as MaixPy's py_image_resize does for RGB565: the same size is
        a copy; shrinking either side (w0 >= w or h0 > h) is nearest neighbour; enlarging both is
        bilinear on the 5/6/5-bit channels."""
        from pokedex_host.pixels import resize_rgb565

        return Image._from_array(resize_rgb565(self._a, int(w), int(h)))

    def find_rects(self, roi=None, threshold=1000):
        """Quadrilaterals with strong edges (an approximation of MaixPy's imlib_find_rects: see
        emulator/rects.py for what is and is not the same as the board)."""
        from pokedex_host.emulator.rects import find_rects as _find

        x, y, w, h = self._roi(roi)
        threshold = int(threshold)
        if threshold < 0:  # stored as uint32 on the board: a negative value lets nothing through
            return []
        return [rect(*r) for r in _find(self._a, (x, y, w, h), threshold)]

    def find_blobs(
        self,
        thresholds,
        invert=False,
        roi=None,
        x_stride=2,
        y_stride=1,
        area_threshold=10,
        pixels_threshold=10,
        merge=False,
        margin=0,
        threshold_cb=None,
        merge_cb=None,
    ):
        """imlib_find_blobs on RGB565, as MaixPy-v1 has it: for each LAB threshold in turn
        (code = 1 << its index), a scan over every y_stride-th row and every x_stride-th column
        (offset by y % x_stride) seeds a 4-connected flood fill of the unclaimed pixels inside the
        threshold (outside it with invert); a pixel belongs to the first blob that claims it.
        A blob: its box (w = x_max - x_min and h = y_max - y_min, one less than its extent, as
        imlib stores them), pixel count, integer centroid, and rotation = atan2(2 b, a - c) / 2
        (radians, -pi/2..pi/2) from its second moments about that centroid (the board's
        fast_atan2f is an approximation of atan2). Kept when w * h >= area_threshold and
        pixels >= pixels_threshold (and threshold_cb(blob) is true). merge=True then joins blobs
        whose boxes overlap (grown by margin) until none do, as imlib does."""
        import math as _m

        import cv2 as _cv2

        if int(x_stride) <= 0:
            raise OSError("x_stride must not be zero.")
        if int(y_stride) <= 0:
            raise OSError("y_stride must not be zero.")
        thresholds = list(thresholds)
        if not thresholds:
            return []
        x0, y0, w, h = self._roi(roi)
        lab = _lab(self._a[y0 : y0 + h, x0 : x0 + w])
        ys = _np.arange(y0, y0 + h)
        seed = _np.zeros((h, w), bool)
        for r in range(0, h, int(y_stride)):
            start = ys[r] % int(x_stride)
            seed[r, start :: int(x_stride)] = True
        claimed = _np.zeros((h, w), bool)
        found = []  # (threshold index, index of the blob's first seed, blob): the board's order
        for code, t in enumerate(thresholds):
            hit = _in_threshold(lab, t)
            if invert:
                hit = ~hit
            hit &= ~claimed
            n, labels = _cv2.connectedComponents(hit.astype(_np.uint8), connectivity=4)
            first = _np.full(n, -1, _np.int64)
            sl = labels[seed]
            order = _np.flatnonzero(seed.ravel())
            ok = sl > 0
            for lbl, idx in zip(sl[ok][::-1], order[ok][::-1]):  # the earliest seed wins
                first[lbl] = idx
            for lbl in _np.flatnonzero(first >= 0):
                yy, xx = _np.nonzero(labels == lbl)
                claimed[yy, xx] = True
                xx = xx.astype(_np.int64) + x0
                yy = yy.astype(_np.int64) + y0
                npx = len(xx)
                sx, sy = int(xx.sum()), int(yy.sum())
                mx, my = sx // npx, sy // npx
                a = int((xx * xx).sum()) - 2 * mx * sx + npx * mx * mx
                b = int((xx * yy).sum()) - (mx * sy + my * sx) + npx * mx * my
                c = int((yy * yy).sum()) - 2 * my * sy + npx * my * my
                rot = _m.atan2(2 * b, a - c) / 2.0 if a != c else 0.0
                x1, y1 = int(xx.min()), int(yy.min())
                o = blob(x1, y1, int(xx.max()) - x1, int(yy.max()) - y1, npx, mx, my, rot, 1 << code, 1)
                if (
                    o.area() >= int(area_threshold)
                    and npx >= int(pixels_threshold)
                    and (threshold_cb is None or threshold_cb(o))
                ):
                    found.append((code, int(first[lbl]), o))
        out = [o for _, _, o in sorted(found, key=lambda f: (f[0], f[1]))]
        if merge:
            out = _merge_blobs(out, int(margin), merge_cb)
        return out

    def gaussian(self, size, unsharp=False, mul=None, add=0.0, threshold=False, offset=0, invert=False, mask=None):
        """In place: a (2 * size + 1)^2 binomial blur (unsharp, mul, add, threshold, mask are not
        emulated and raise)."""
        if unsharp or mul is not None or add or threshold or offset or invert or mask is not None:
            raise NotImplementedError("emulator: gaussian() options other than size are not emulated")
        import cv2 as _cv2

        k = 2 * int(size) + 1
        row = _np.array([1.0])
        for _ in range(k - 1):
            row = _np.convolve(row, [1.0, 1.0])
        row /= row.sum()
        b = _cv2.sepFilter2D(self._a.astype(_np.float32), -1, row, row, borderType=_cv2.BORDER_REPLICATE)
        from pokedex_host.pixels import to_rgb565

        self._a = to_rgb565(_np.clip(_np.rint(b), 0, 255).astype(_np.uint8))  # stored as RGB565
        return self

    def get_statistics(self, thresholds=None, invert=False, roi=None, bins=None, l_bins=None, a_bins=None, b_bins=None):
        if thresholds is not None:
            raise NotImplementedError("emulator: get_statistics(thresholds=...) is not emulated")
        x, y, w, h = self._roi(roi)
        return statistics(_lab(self._a[y : y + h, x : x + w]))

    def binary(self, thresholds, invert=False, zero=False, mask=None):
        """In place: pixels inside any LAB threshold (l_lo, l_hi, a_lo, a_hi, b_lo, b_hi) become
        white, the others black (inverted with invert=True)."""
        if mask is not None or zero:
            raise NotImplementedError("emulator: binary(zero=..., mask=...) is not emulated")
        lab = _lab(self._a)
        hit = _np.zeros(lab.shape[:2], bool)
        for t in thresholds:
            hit |= _in_threshold(lab, t)
        if invert:
            hit = ~hit
        self._a = _np.where(hit[..., None], _np.uint8(255), _np.uint8(0)).repeat(3, -1).astype(_np.uint8)
        return self

    def draw_line(self, x0, y0=None, x1=None, y1=None, color=(255, 255, 255), thickness=1):
        if y0 is None:  # one tuple (x0, y0, x1, y1)
            x0, y0, x1, y1 = x0
        im = _PIL.fromarray(self._a)
        _Draw.Draw(im).line([int(x0), int(y0), int(x1), int(y1)], fill=_color(color), width=max(1, int(thickness)))
        self._a = _np.asarray(im).copy()
        return self

    def replace(self, image=None, hmirror=False, vflip=False, transpose=False, mask=None):
        """In place: this image's pixels become ``image``'s (None = itself), mirrored left-right
        with ``hmirror``, upside down with ``vflip``, rows and columns swapped with ``transpose``
        (py_image_replace / imlib_replace: the source is copied first when it is this image).
        The pix_ai buffer is not touched: call pix_to_ai() again before the KPU reads it. A colour
        in place of the image and ``mask`` are not emulated (they raise)."""
        if mask is not None or (image is not None and not isinstance(image, Image)):
            raise NotImplementedError(
                "emulator: replace() takes an image (or none): colours and mask= are not emulated"
            )
        src = self._a if image is None else image._a
        if src.shape != self._a.shape:
            raise OSError("Images not equal!")  # imlib_image_operation -> fs_not_equal (same w, h, bpp)
        out = src[:, ::-1] if hmirror else src
        out = out[::-1] if vflip else out
        self._a = _np.ascontiguousarray(out.transpose(1, 0, 2) if transpose else out).copy()
        return self

    def pix_to_ai(self):
        """Fills the planar RGB888 buffer the KPU reads; returns None (py_image_pix_to_ai). For an
        image the firmware made, the buffer is (w rounded up to 64) x h x 3 bytes of GC heap."""
        if self._ai is None and self._heap:
            h, w = self._a.shape[:2]
            _heap_alloc(self, (w + 63) // 64 * 64 * h * 3, "pix_ai")
        self._ai = self._a.transpose(2, 0, 1).copy()
        return None

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
            sub = m[y0 - y : y1 - y, x0 - x : x1 - x]
            self._a[y0:y1, x0:x1][sub] = _color(color)
        return self


def _leave_out(names):
    """A firmware build without some Image methods (MaixPy-v1's minimum build:
    boards/firmware/maixpy.toml) has none of them: using one raises AttributeError in MicroPython's
    words ("'Image' object has no attribute 'find_rects'") and hasattr() is False."""
    for name in names:
        if name in Image.__dict__:
            delattr(Image, name)


def _build_lacks():
    from pokedex_host.emulator import state as _state

    return _state._BOARD.image_lacks if _state._BOARD is not None else ()


_leave_out(_build_lacks())
