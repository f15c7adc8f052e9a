"""The KPU layer's integer pipeline as compiled loops (numba), for the v3 interpreter's speed.

In numpy, batch norm and the activation table cost a dozen int64 passes over every output of
every layer; here each output is one pass: the convolution's sums, the KPU's offsets, batch norm,
the activation segment, clamping. The arithmetic is kpu.py's (its docstring states it), element
for element; int64 wraps the same way in numba and numpy, and the tests compare these kernels
with direct loops and the interpreter with nncase's simulator bit for bit.

Maps are channels last, (N, H, W, C) or (N, L, C) with L = H x W pixels, so the per-channel work
of one pixel is a vector loop the compiler turns into SIMD (int64 lanes included, where the CPU
has them). Per-channel constants come in as ``cw`` (the weight-sum terms, fixed per layer) and
the batch-norm / activation tables as int64 arrays.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _round_shift(v, s):
    """nncase's carry_shift<int64, Banker=true>, as written (see kpu.round_shift); branch-free,
    since the segment (and so the shift) of neighbouring outputs differs at random."""
    s1 = max(s, 1)
    integral = v >> s1
    frac = v - (integral << s1)
    half = np.int64(1) << (s1 - 1)
    up = np.int64(frac > half) | (np.int64(frac == half) & (integral & 1))
    r = integral + up * ((v >> 63) | 1)
    return r if s > 0 else v


@njit(cache=True, inline="always")
def _segment(v, start, ordered):
    """The last segment with v > start (0 when none)."""
    if ordered:  # ascending starts (every table nncase writes): count, without branches
        cnt = 0
        for j in range(16):
            cnt += v > start[j]
        return cnt - 1 if cnt > 0 else 0
    seg = 0
    for j in range(16):  # scanned in table order
        if v > start[j]:
            seg = j
    return seg


@njit(cache=True, inline="always")
def _bn(acc, m, sh, ad):
    return ((acc * m) >> sh) + ad


@njit(cache=True, inline="always")
def _act01(v, s0, s1, m0, m1, h0, h1, d0, d1):
    """Segment 0 or 1 of an ordered table (below / above zero in nncase's tables: most outputs,
    and which one is a coin toss), both computed and one selected: no branch to mispredict, and
    a loop of these vectorises. The segments' start, mul, shift and bias come as scalars (loop
    invariants the compiler need not reload). Not clamped."""
    y0 = _round_shift((v - s0) * m0, h0) + d0
    y1 = _round_shift((v - s1) * m1, h1) + d1
    return y1 if v > s1 else y0


@njit(cache=True, inline="always")
def _clamp(y):
    return 0 if y < 0 else (255 if y > 255 else y)


@njit(cache=True, inline="always")
def _bn_act(acc, m, sh, ad, start, amul, ashift, aadd, ordered):
    v = _bn(acc, m, sh, ad)
    if ordered and v <= start[2]:
        return _clamp(_act01(v, start[0], start[1], amul[0], amul[1], ashift[0], ashift[1], aadd[0], aadd[1]))
    seg = _segment(v, start, ordered)
    return _clamp(_round_shift((v - start[seg]) * amul[seg], ashift[seg]) + aadd[seg])


@njit(cache=True, parallel=True)
def bn_act_u8(acc, mul, shift, add, start, amul, ashift, aadd, ordered):
    """(N, C, L) int64 accumulators -> (N, C, L) u8."""
    n, c, length = acc.shape
    out = np.empty((n, c, length), np.uint8)
    for nc in prange(n * c):
        b, ch = nc // c, nc % c
        for i in range(length):
            out[b, ch, i] = _bn_act(acc[b, ch, i], mul[ch], shift[ch], add[ch], start, amul, ashift, aadd, ordered)
    return out


@njit(cache=True, inline="always")
def _bn_act_vec(a, mul, shift, add, start, amul, ashift, aadd, ordered, out):
    """_bn_act over one pixel's channels: ``a`` (C,) int64 accumulators -> ``out`` (C,) u8.

    With ordered starts, segments 0 and 1 are computed for every channel in one branch-free loop
    that the compiler vectorises (the per-channel batch norm varies along it, the activation
    table does not); the few channels beyond segment 1 (ReLU6's saturation, in nncase's tables)
    are then redone one by one with the general rule."""
    c = a.shape[0]
    if not ordered:
        for i in range(c):
            out[i] = _bn_act(a[i], mul[i], shift[i], add[i], start, amul, ashift, aadd, ordered)
        return
    s0, s1, s2 = start[0], start[1], start[2]
    m0, m1, h0, h1, d0, d1 = amul[0], amul[1], ashift[0], ashift[1], aadd[0], aadd[1]
    far = 0
    for i in range(c):
        v = _bn(a[i], mul[i], shift[i], add[i])
        out[i] = _clamp(_act01(v, s0, s1, m0, m1, h0, h1, d0, d1))
        far += v > s2
    if far:
        for i in range(c):
            if _bn(a[i], mul[i], shift[i], add[i]) > s2:
                out[i] = _bn_act(a[i], mul[i], shift[i], add[i], start, amul, ashift, aadd, ordered)


@njit(cache=True, inline="always")
def _dw_pixel(xp, w, k, b, y0, x0, arg_x, shift_x, cw, s, sx, a):
    """One output pixel of a depthwise k x k convolution, every channel at once (channels last,
    so the taps are vector operations): ``a`` (C,) int64 gets the KPU's accumulators."""
    c = a.shape[0]
    s[:] = 0
    sx[:] = 0
    for ky in range(k):
        for kx in range(k):
            row = xp[b, y0 + ky, x0 + kx]
            wt = w[ky * k + kx]
            for i in range(c):
                v = np.int32(row[i])
                s[i] += v * wt[i]  # < 9 x 255 x 255: int32 is exact
                sx[i] += v
    for i in range(c):
        a[i] = np.int64(s[i]) + ((arg_x * np.int64(sx[i])) >> shift_x) + cw[i]


@njit(cache=True, parallel=True)
def dw_acc(xp, w, k, stride, arg_x, shift_x, cw):
    """Depthwise k x k over padded channels-last (N, H + k - 1, W + k - 1, C) u8 with ``w``
    (k x k, C) int32 taps, at every ``stride``-th row and column -> (N, ceil(H / stride),
    ceil(W / stride), C) int64."""
    n, hp, wp, c = xp.shape
    h, wd = (hp - k) // stride + 1, (wp - k) // stride + 1
    out = np.empty((n, h, wd, c), np.int64)
    for by in prange(n * h):
        b, y = by // h, by % h
        s, sx = np.empty(c, np.int32), np.empty(c, np.int32)
        for x in range(wd):
            _dw_pixel(xp, w, k, b, y * stride, x * stride, arg_x, shift_x, cw, s, sx, out[b, y, x])
    return out


@njit(cache=True, parallel=True)
def dw_bn_act(xp, w, k, stride, arg_x, shift_x, cw, mul, shift, add, start, amul, ashift, aadd, ordered):
    """dw_acc + batch norm + activation -> channels-last u8."""
    n, hp, wp, c = xp.shape
    h, wd = (hp - k) // stride + 1, (wp - k) // stride + 1
    out = np.empty((n, h, wd, c), np.uint8)
    for by in prange(n * h):
        b, y = by // h, by % h
        s, sx, a = np.empty(c, np.int32), np.empty(c, np.int32), np.empty(c, np.int64)
        for x in range(wd):
            _dw_pixel(xp, w, k, b, y * stride, x * stride, arg_x, shift_x, cw, s, sx, a)
            _bn_act_vec(a, mul, shift, add, start, amul, ashift, aadd, ordered, out[b, y, x])
    return out


@njit(cache=True, inline="always")
def _full_base(xs, b, i, arg_x, shift_x):
    """The per-pixel part of a full convolution's accumulator: 128 sum(x) + the KPU's x term."""
    sx = xs[b, i]
    return 128 * sx + ((arg_x * sx) >> shift_x)


@njit(cache=True, parallel=True)
def full_acc(prod, xs, arg_x, shift_x, cw):
    """A full convolution's accumulators from its offset products: ``prod`` (N, L, C) are
    sum((x - 128)(w - 128)), int32 or float32 holding those integers (matmul.py), ``xs`` (N, L)
    int64 the sums of x; ``cw`` holds the per-channel rest (128 sum(w) - 128^2 K and the KPU's
    weight and add terms). -> (N, L, C) int64, channels last like ``prod`` (writing
    channel-planar here would be a strided write per output)."""
    n, length, c = prod.shape
    out = np.empty((n, length, c), np.int64)
    for bi in prange(n * length):
        b, i = bi // length, bi % length
        base = _full_base(xs, b, i, arg_x, shift_x)
        for ch in range(c):
            out[b, i, ch] = np.int64(prod[b, i, ch]) + base + cw[ch]
    return out


@njit(cache=True, parallel=True)
def full_bn_act(prod, xs, arg_x, shift_x, cw, mul, shift, add, start, amul, ashift, aadd, ordered):
    """full_acc + batch norm + activation -> (N, L, C) u8."""
    n, length, c = prod.shape
    out = np.empty((n, length, c), np.uint8)
    total = n * length
    for part in prange((total + 63) // 64):  # 64 pixels per task: one scratch row per task
        a = np.empty(c, np.int64)
        for bi in range(part * 64, min(total, part * 64 + 64)):
            b, i = bi // length, bi % length
            base = _full_base(xs, b, i, arg_x, shift_x)
            for ch in range(c):
                a[ch] = np.int64(prod[b, i, ch]) + base + cw[ch]
            _bn_act_vec(a, mul, shift, add, start, amul, ashift, aadd, ordered, out[b, i])
    return out


@njit(cache=True, parallel=True)
def offset_rows(cols, out):
    """``out`` = ``cols`` - 128 for (M, K) u8 ``cols`` into an (M, K) int8 or float32 ``out`` (the
    offset operand of a full convolution's product); returns the (M,) int64 sums of the rows of
    ``cols``: one pass over the input rows for both."""
    m, k = cols.shape
    sums = np.empty(m, np.int64)
    for i in prange(m):
        s = 0
        for j in range(k):
            v = np.int32(cols[i, j])
            s += v
            out[i, j] = v - 128
        sums[i] = s
    return sums
