"""The K210 KPU in numpy: its SRAM layout and one layer's integer arithmetic.

Written from the public definitions (K210 SDK ``kpu.h``: ``kpu_layer_argument_t``, the batch-norm
and activation table formats) and the arithmetic nncase 1.9's K210 simulator uses (its
``kpu_conv2d`` / ``kpu_pool2d`` kernels), so that a layer run here gives the simulator's bytes:

    conv   value = sum(x * w) + (arg_x * sum(x) >> shift_x) + (arg_w * sum(w) >> shift_w)
                   + arg_add * input_channels_per_group                 (36-bit accumulator)
           x is the u8 input (pad_value outside the map), w the u8 weights, at stride 1
    bn     value = (value * norm_mul >> norm_shift) + norm_add            (per output channel)
    act    the last of the 16 segments with value > x_start:
           y = round_half_even((value - x_start) * y_mul, shift) + bias, clamped to 0..255
    pool   the fused pool of ``pool_type`` (a stride-2 conv is "conv + left-top 2x2 s2")

The rounding of the activation is nncase's ``carry_shift<int64, Banker=true>`` exactly as it is
written, including how it treats negative values (floor of the integral part, then one away from
zero when the dropped fraction is more than half): the simulator is the reference this module is
tested against, bit for bit.

KPU SRAM (2 MiB) is addressed in 64-byte lines. A map of width W is stored a channel at a time,
row by row; rows of W <= 16 share a line four channels at a time (16-byte slots), W <= 32 two at a
time, wider rows take ceil(W / 64) lines each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import KmodelFormatError
from .matmul import OffsetWeights

KPU_RAM_BYTES = 2 * 2**20
LINE = 64


class KPURangeError(ValueError):
    """A map that does not fit where the registers put it (callers add the file offset)."""


@dataclass(frozen=True)
class RowLayout:
    groups: int  # channels sharing one line
    row_len: int  # lines per row
    row_pitch: int  # bytes between those channels' slots


def row_layout(width: int) -> RowLayout:
    if width <= 16:
        return RowLayout(4, 1, 16)
    if width <= 32:
        return RowLayout(2, 1, 32)
    return RowLayout(1, (width + 63) // 64, 64)


def map_bytes(width: int, height: int, channels: int) -> int:
    """Bytes a (width, height, channels) map occupies in KPU SRAM."""
    lay = row_layout(width)
    blocks = -(-channels // min(channels, lay.groups))
    return lay.row_len * height * blocks * LINE


def check_map(
    addr_line: int, width: int, height: int, channels: int, what: str, ram_bytes: int = KPU_RAM_BYTES
) -> None:
    """Raise :class:`KPURangeError` unless the map fits in KPU SRAM at ``addr_line``."""
    size = map_bytes(width, height, channels)
    if addr_line * LINE + size > ram_bytes:
        raise KPURangeError(
            f"{what}: a {width}x{height}x{channels} map at KPU line {addr_line} ({size} B) runs past the 2 MiB KPU SRAM"
        )


def _view(ram: np.ndarray, addr_line: int, width: int, height: int, channels: int, what: str) -> np.ndarray:
    """A (N, blocks x groups, height, width) view of the maps at ``addr_line`` of N SRAM images."""
    check_map(addr_line, width, height, channels, what, ram.shape[-1])
    start = addr_line * LINE
    n = ram.shape[0]
    lay = row_layout(width)
    blocks = -(-channels // lay.groups)
    if lay.groups == 1:
        v = ram[:, start : start + blocks * height * lay.row_len * LINE].reshape(n, blocks, height, lay.row_len * LINE)
        return v[..., :width]
    # lines of `groups` slots of row_pitch bytes: [block, row, slot, byte] -> [block, slot, row, byte]
    v = ram[:, start : start + blocks * height * LINE].reshape(n, blocks, height, lay.groups, lay.row_pitch)
    return v.transpose(0, 1, 3, 2, 4)[..., :width]


def download(
    ram: np.ndarray, addr_line: int, width: int, height: int, channels: int, what: str = "KPU read"
) -> np.ndarray:
    """The (channels, height, width) u8 map stored at ``addr_line`` -- or (N, channels, height,
    width) when ``ram`` is a batch of N SRAM images (N x 2 MiB)."""
    one = ram.ndim == 1
    v = _view(ram[None] if one else ram, addr_line, width, height, channels, what)
    out = np.ascontiguousarray(v.reshape(v.shape[0], -1, height, width)[:, :channels])
    return out[0] if one else out


def upload(ram: np.ndarray, addr_line: int, fmap: np.ndarray, what: str = "KPU write") -> None:
    """Store a (channels, height, width) u8 map at ``addr_line`` in KPU SRAM layout (or a batch:
    (N, channels, height, width) maps into N x 2 MiB)."""
    if ram.ndim == 1:
        ram, fmap = ram[None], fmap[None]
    n, c, h, w = fmap.shape
    v = _view(ram, addr_line, w, h, c, what)
    lay = row_layout(w)
    if lay.groups == 1:
        v[:, :c] = fmap
        return
    whole = c // lay.groups  # blocks whose slots are all used
    if whole:
        v[:, :whole] = fmap[:, : whole * lay.groups].reshape(n, whole, lay.groups, h, w)
    for ch in range(whole * lay.groups, c):  # a partial last block: the other slots keep their bytes
        v[:, ch // lay.groups, ch % lay.groups] = fmap[:, ch]


@dataclass(frozen=True)
class BatchNorm:
    mul: np.ndarray  # int64 per channel (24-bit signed)
    shift: np.ndarray  # 4-bit
    add: np.ndarray  # 32-bit signed


@dataclass(frozen=True)
class Activation:
    start_x: np.ndarray  # 16 x int64 (36-bit signed)
    mul: np.ndarray  # 16 x int64 (16-bit signed)
    shift: np.ndarray  # 16 x int64 (8-bit)
    add: np.ndarray  # 16 x int64 (u8)


def _signed(v: np.ndarray, bits: int) -> np.ndarray:
    v = v.astype(np.int64)
    return np.where(v >= (1 << (bits - 1)), v - (1 << bits), v)


def decode_bn(raw: bytes, channels: int) -> BatchNorm:
    r = np.frombuffer(raw, dtype="<u8", count=channels)
    return BatchNorm(
        _signed(r & 0xFFFFFF, 24),
        ((r >> np.uint64(56)) & np.uint64(0xF)).astype(np.int64),
        _signed((r >> np.uint64(24)) & np.uint64(0xFFFFFFFF), 32),
    )


def encode_bn(bn: BatchNorm) -> bytes:
    out = (
        (bn.mul.astype(np.int64) & 0xFFFFFF).astype(np.uint64)
        | ((bn.add.astype(np.int64) & 0xFFFFFFFF).astype(np.uint64) << np.uint64(24))
        | ((bn.shift.astype(np.int64) & 0xF).astype(np.uint64) << np.uint64(56))
    )
    return out.astype("<u8").tobytes()


ACT_BYTES = 16 * 8 + 2 * 8


def decode_act(raw: bytes, where: int = 0) -> Activation:
    seg = np.frombuffer(raw, dtype="<u8", count=16)
    bias = np.frombuffer(raw, dtype=np.uint8, count=16, offset=128).astype(np.int64)
    shift = (seg & np.uint64(0xFF)).astype(np.int64)
    if (shift > 62).any():
        i = int(np.argmax(shift > 62))
        raise KmodelFormatError(where + 8 * i, f"activation segment {i} shifts by {int(shift[i])} bits (at most 62)")
    return Activation(
        _signed((seg >> np.uint64(24)) & np.uint64((1 << 36) - 1), 36),
        _signed((seg >> np.uint64(8)) & np.uint64(0xFFFF), 16),
        shift,
        bias,
    )


def encode_act(act: Activation) -> bytes:
    seg = (
        (act.shift.astype(np.int64) & 0xFF).astype(np.uint64)
        | ((act.mul.astype(np.int64) & 0xFFFF).astype(np.uint64) << np.uint64(8))
        | ((act.start_x.astype(np.int64) & ((1 << 36) - 1)).astype(np.uint64) << np.uint64(24))
    )
    return seg.astype("<u8").tobytes() + act.add.astype(np.uint8).tobytes()


def round_shift(v: np.ndarray, shift) -> np.ndarray:
    """nncase's ``carry_shift<int64_t, true>``: shift right, rounding half to even, as written."""
    if np.isscalar(shift):
        if shift <= 0:
            return v
        s = shift
    else:
        s = np.maximum(shift, 1)
    integral = v >> s
    frac = v - (integral << s)  # the dropped bits, 0 <= frac < 2^s
    half = np.int64(1) << (s - 1)
    up = (frac > half) | ((frac == half) & ((integral & 1) == 1))
    sign = (v >> 63) | 1  # -1 for negative values, 1 otherwise
    out = integral + up * sign
    return out if np.isscalar(shift) else np.where(shift > 0, out, v)


@dataclass(frozen=True)
class ConvArgs:
    """The arithmetic a KPU layer applies, decoded from its register block."""

    depthwise: bool
    kernel: int
    pool_type: int
    pad_value: int
    arg_x: int
    shift_x: int
    arg_w: int
    shift_w: int
    arg_add: int

    @classmethod
    def from_fields(cls, f: dict) -> "ConvArgs":
        def s(v, bits):
            return v - (1 << bits) if v >= (1 << (bits - 1)) else v

        return cls(
            bool(f["depth_wise_layer"]),
            {0: 1, 1: 3}[f["kernel_type"]],
            f["pool_type"],
            f["pad_value"],
            s(f["arg_x"], 24),
            f["shr_x"],
            s(f["arg_w"], 24),
            f["shr_w"],
            s(f["arg_add"], 40),
        )


class ConvKernel:
    """One KPU convolution layer's arithmetic, prepared once (weights as int8 offsets, per-channel
    constants) and run on batches. The work is done channels last: ``nhwc(x)`` maps (N, H, W, C)
    u8 to the layer's (N, H', W', OC) u8 outputs before the pool; ``acc(x)`` gives the 36-bit
    accumulators and ``kernel(x, bn, act)`` the outputs, both for channel-planar (N, C, H, W) u8.

    The sums are exact integers: depthwise taps in int32 per pixel over all channels (compiled
    loops, ``_kernels``), full convolutions as matrix products of ``x - 128`` and ``w - 128``
    (``matmul``: int8 -> int32, or float32 in blocks exact by construction, whichever this
    process measured faster), the offsets added back in int64:
    sum(x w) = sum((x - 128)(w - 128)) + 128 sum(x) + 128 sum(w) - 128^2 K."""

    def __init__(
        self,
        weights: np.ndarray,
        args: ConvArgs,
        in_channels: int,
        out_channels: int,
        bn: "BatchNorm | None" = None,
        act: "Activation | None" = None,
    ):
        self.args, self.c, self.oc, k = args, in_channels, out_channels, args.kernel
        # a layer's batch-norm and activation tables, as the kernels take them, prepared once
        self.tables = _tables(bn, act) if bn is not None and act is not None else None
        w = np.asarray(weights, np.uint8)
        if args.depthwise:
            wd = w.reshape(in_channels, k * k).astype(np.int32)
            self.w = np.ascontiguousarray(wd.T)  # (k x k taps, C)
            sw = wd.sum(1, dtype=np.int64)
            self.cw = ((args.arg_w * sw) >> args.shift_w) + args.arg_add
        else:
            kk = in_channels * k * k
            w4 = w.reshape(out_channels, in_channels, k, k)
            # (ky, kx, C) x OC, the order of a channels-last im2col row
            self.mat = OffsetWeights(w4.transpose(2, 3, 1, 0).reshape(kk, out_channels))
            sw = w4.reshape(out_channels, kk).astype(np.int64).sum(1)
            self.cw = 128 * sw - 16384 * kk + ((args.arg_w * sw) >> args.shift_w) + args.arg_add * in_channels

    def _padded(self, x: np.ndarray) -> np.ndarray:
        p = self.args.kernel // 2
        return np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=self.args.pad_value) if p else x

    def _products(self, x: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray, int, int]:
        """(N, L, OC) offset products (int32, or float32 holding the same integers: see
        :meth:`OffsetWeights.products`) and (N, L) int64 input sums of a full convolution at every
        ``stride``-th pixel of channels-last ``x``, with the output's height and width."""
        n, c = x.shape[0], x.shape[3]
        k = self.args.kernel
        if k == 1:
            xs = x[:, ::stride, ::stride] if stride > 1 else x
            h, w = xs.shape[1:3]
            cols = np.ascontiguousarray(xs).reshape(n * h * w, c)
        else:  # im2col in u8: (n, h, w, ky, kx, c), the order of self.mat's weight rows
            xp = self._padded(x)
            h, w = (xp.shape[1] - k) // stride + 1, (xp.shape[2] - k) // stride + 1
            cols = np.empty((n, h, w, k, k, c), np.uint8)
            for ky in range(k):
                for kx in range(k):
                    cols[:, :, :, ky, kx] = xp[
                        :, ky : ky + stride * (h - 1) + 1 : stride, kx : kx + stride * (w - 1) + 1 : stride
                    ]
            cols = cols.reshape(n * h * w, c * k * k)
        prod, xs = self.mat.products(cols)
        return prod.reshape(n, h * w, self.oc), xs.reshape(n, h * w), h, w

    def nhwc(
        self, x: np.ndarray, bn: "BatchNorm | None" = None, act: "Activation | None" = None, stride: int = 1
    ) -> np.ndarray:
        """(N, H, W, C) u8 -> (N, ceil(H / stride), ceil(W / stride), OC) u8 outputs (batch norm and
        activation applied) at every ``stride``-th row and column; ``bn``, ``act`` default to the
        layer's own (given when the kernel was made)."""
        from . import _kernels

        a = self.args
        tables = self.tables if bn is None else _tables(bn, act)
        if a.depthwise:
            return _kernels.dw_bn_act(self._padded(x), self.w, a.kernel, stride, a.arg_x, a.shift_x, self.cw, *tables)
        prod, xs, h, w = self._products(x, stride)
        return _kernels.full_bn_act(prod, xs, a.arg_x, a.shift_x, self.cw, *tables).reshape(-1, h, w, self.oc)

    def acc(self, x: np.ndarray, stride: int = 1) -> np.ndarray:
        """(N, OC, ceil(H / stride), ceil(W / stride)) int64 accumulators of channel-planar ``x``
        at every ``stride``-th row and column (a left-top pool after the layer keeps only those)."""
        from . import _kernels

        a = self.args
        x = to_nhwc(x)
        if a.depthwise:
            out = _kernels.dw_acc(self._padded(x), self.w, a.kernel, stride, a.arg_x, a.shift_x, self.cw)
        else:
            prod, xs, h, w = self._products(x, stride)
            out = _kernels.full_acc(prod, xs, a.arg_x, a.shift_x, self.cw).reshape(-1, h, w, self.oc)
        return to_nchw(out)

    def __call__(
        self, x: np.ndarray, bn: "BatchNorm | None" = None, act: "Activation | None" = None, stride: int = 1
    ) -> np.ndarray:
        """:meth:`nhwc` for channel-planar (N, C, H, W) maps."""
        return to_nchw(self.nhwc(to_nhwc(x), bn, act, stride))


def to_nhwc(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> contiguous (N, H, W, C)."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def to_nchw(x: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> contiguous (N, C, H, W)."""
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _tables(bn: "BatchNorm", act: "Activation") -> tuple[np.ndarray, ...]:
    start = np.asarray(act.start_x, np.int64)
    return (
        *(
            np.ascontiguousarray(t, dtype=np.int64)
            for t in (bn.mul, bn.shift, bn.add, start, act.mul, act.shift, act.add)
        ),
        bool(np.all(np.diff(start) >= 0)),
    )


def conv(x: np.ndarray, weights: np.ndarray, args: ConvArgs, out_channels: int) -> np.ndarray:
    """The KPU's 36-bit accumulator for every output, before batch norm: (out_channels, H, W) for a
    (C, H, W) input, (N, out_channels, H, W) for a batch."""
    one = x.ndim == 3
    xb = np.asarray(x[None] if one else x, np.uint8)
    out = ConvKernel(weights, args, xb.shape[1], out_channels).acc(xb)
    return out[0] if one else out


def bn_act(acc: np.ndarray, bn: BatchNorm, act: Activation) -> np.ndarray:
    """Batch norm then the activation table, per output channel (axis -3), as u8."""
    from ._kernels import bn_act_u8

    shape = acc.shape
    a = np.ascontiguousarray(acc, dtype=np.int64).reshape(-1, shape[-3], shape[-2] * shape[-1])
    return bn_act_u8(a, *_tables(bn, act)).reshape(shape)


POOL_STRIDE = {0: 1, 1: 2, 2: 2, 3: 4, 4: 4, 5: 2, 6: 2, 7: 4, 8: 1, 9: 1}
POOL_SIZE = {0: 1, 1: 2, 2: 2, 3: 4, 4: 4, 5: 2, 6: 2, 7: 4, 8: 2, 9: 2}


def pool(y: np.ndarray, pool_type: int) -> np.ndarray:
    """The fused pool over the last two axes of (..., H, W) u8 maps."""
    h, w = y.shape[-2:]
    s, f = POOL_STRIDE[pool_type], POOL_SIZE[pool_type]
    oh, ow = h // s, w // s
    if pool_type == 0:
        return y
    if pool_type in (5, 7):  # left-top: the window's first pixel
        return np.ascontiguousarray(y[..., : oh * s : s, : ow * s : s])
    if pool_type == 6:  # right-top: row 0, column 1 of the window
        out = np.zeros((*y.shape[:-2], oh, ow), np.uint8)
        cols = np.arange(ow) * s + 1
        ok = cols < w
        out[..., ok] = y[..., : oh * s : s, :][..., cols[ok]]
        return out
    yy = (np.arange(oh) * s)[:, None] + np.arange(f)[None, :]  # (oh, f)
    xx = (np.arange(ow) * s)[:, None] + np.arange(f)[None, :]
    if pool_type in (1, 3, 9):  # max; outside the map counts as 0 (u8's lowest)
        pad = np.pad(y, [(0, 0)] * (y.ndim - 2) + [(0, f), (0, f)])
        win = pad[..., yy[:, None, :, None], xx[None, :, None, :]]  # (..., oh, ow, f, f)
        return win.max(axis=(-2, -1)).astype(np.uint8)
    # mean: indices clamped to the map, integer sum divided by f*f (truncating)
    yc, xc = np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)
    win = y[..., yc[:, None, :, None], xc[None, :, None, :]].astype(np.uint32)
    return (win.sum(axis=(-2, -1)) // (f * f)).astype(np.uint8)


def conv_layer(
    kernel: ConvKernel, x: np.ndarray, bn: BatchNorm | None = None, act: Activation | None = None
) -> np.ndarray:
    """A whole KPU layer on (N, C, H, W) u8: convolution, batch norm, activation, pool."""
    return to_nchw(conv_layer_nhwc(kernel, to_nhwc(x), bn, act))


def conv_layer_nhwc(
    kernel: ConvKernel, x: np.ndarray, bn: BatchNorm | None = None, act: Activation | None = None
) -> np.ndarray:
    """:func:`conv_layer` channels last, (N, H, W, C) -> (N, H', W', OC). A left-top pool keeps
    every s-th output of the row and column, so only those are computed."""
    pt = kernel.args.pool_type
    h, w = x.shape[1:3]
    if pt in (5, 7):
        s = POOL_STRIDE[pt]
        return np.ascontiguousarray(kernel.nhwc(x, bn, act, stride=s)[:, : h // s, : w // s])
    y = kernel.nhwc(x, bn, act)
    return y if pt == 0 else to_nhwc(pool(to_nchw(y), pt))


def pooled_size(size: int, pool_type: int) -> int:
    return size // POOL_STRIDE[pool_type]
