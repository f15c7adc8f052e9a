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


def _view(ram: np.ndarray, addr_line: int, width: int, height: int, channels: int, what: str) -> tuple[np.ndarray, int]:
    start = addr_line * LINE
    size = map_bytes(width, height, channels)
    if start + size > ram.size:
        raise KPURangeError(f"{what}: a {width}x{height}x{channels} map at KPU line {addr_line} "
                            f"({size} B) runs past the 2 MiB KPU SRAM")
    lay = row_layout(width)
    blocks = -(-channels // lay.groups)
    if lay.groups == 1:
        v = ram[start:start + blocks * height * lay.row_len * LINE].reshape(blocks, height, lay.row_len * LINE)
        return v[:, :, :width], channels
    # lines of `groups` slots of row_pitch bytes: [block, row, slot, byte] -> [block, slot, row, byte]
    v = ram[start:start + blocks * height * LINE].reshape(blocks, height, lay.groups, lay.row_pitch)
    return v.transpose(0, 2, 1, 3)[:, :, :, :width], channels


def download(ram: np.ndarray, addr_line: int, width: int, height: int, channels: int, what: str = "KPU read") -> np.ndarray:
    """The (channels, height, width) u8 map stored at ``addr_line``."""
    v, c = _view(ram, addr_line, width, height, channels, what)
    return np.ascontiguousarray(v.reshape(-1, height, width)[:c])


def upload(ram: np.ndarray, addr_line: int, fmap: np.ndarray, what: str = "KPU write") -> None:
    """Store a (channels, height, width) u8 map at ``addr_line`` in KPU SRAM layout."""
    c, h, w = fmap.shape
    v, _ = _view(ram, addr_line, w, h, c, what)
    lay = row_layout(w)
    if lay.groups == 1:
        v[:c] = fmap
        return
    whole = c // lay.groups  # blocks whose slots are all used
    if whole:
        v[:whole] = fmap[:whole * lay.groups].reshape(whole, lay.groups, h, w)
    for ch in range(whole * lay.groups, c):  # a partial last block: the other slots keep their bytes
        v[ch // lay.groups, ch % lay.groups] = fmap[ch]


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
    return BatchNorm(_signed(r & 0xFFFFFF, 24), ((r >> np.uint64(56)) & np.uint64(0xF)).astype(np.int64),
                     _signed((r >> np.uint64(24)) & np.uint64(0xFFFFFFFF), 32))


def encode_bn(bn: BatchNorm) -> bytes:
    out = ((bn.mul.astype(np.int64) & 0xFFFFFF).astype(np.uint64)
           | ((bn.add.astype(np.int64) & 0xFFFFFFFF).astype(np.uint64) << np.uint64(24))
           | ((bn.shift.astype(np.int64) & 0xF).astype(np.uint64) << np.uint64(56)))
    return out.astype("<u8").tobytes()


ACT_BYTES = 16 * 8 + 2 * 8


def decode_act(raw: bytes, where: int = 0) -> Activation:
    seg = np.frombuffer(raw, dtype="<u8", count=16)
    bias = np.frombuffer(raw, dtype=np.uint8, count=16, offset=128).astype(np.int64)
    shift = (seg & np.uint64(0xFF)).astype(np.int64)
    if (shift > 62).any():
        i = int(np.argmax(shift > 62))
        raise KmodelFormatError(where + 8 * i, f"activation segment {i} shifts by {int(shift[i])} bits (at most 62)")
    return Activation(_signed((seg >> np.uint64(24)) & np.uint64((1 << 36) - 1), 36),
                      _signed((seg >> np.uint64(8)) & np.uint64(0xFFFF), 16), shift, bias)


def encode_act(act: Activation) -> bytes:
    seg = ((act.shift.astype(np.int64) & 0xFF).astype(np.uint64)
           | ((act.mul.astype(np.int64) & 0xFFFF).astype(np.uint64) << np.uint64(8))
           | ((act.start_x.astype(np.int64) & ((1 << 36) - 1)).astype(np.uint64) << np.uint64(24)))
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
        return cls(bool(f["depth_wise_layer"]), {0: 1, 1: 3}[f["kernel_type"]], f["pool_type"], f["pad_value"],
                   s(f["arg_x"], 24), f["shr_x"], s(f["arg_w"], 24), f["shr_w"], s(f["arg_add"], 40))


def conv(x: np.ndarray, weights: np.ndarray, args: ConvArgs, out_channels: int) -> np.ndarray:
    """The KPU's 36-bit accumulator for every output (out_channels, H, W), before batch norm."""
    c, h, w = x.shape
    k = args.kernel
    p = k // 2
    xp = np.pad(x, ((0, 0), (p, p), (p, p)), constant_values=args.pad_value) if p else x
    if args.depthwise:
        # at most 9 products < 2^16 per output: int32 holds them
        wt = weights.reshape(c, k, k).astype(np.int32)
        acc = np.zeros((c, h, w), np.int32)
        sx = np.zeros((c, h, w), np.int32)
        for ky in range(k):
            for kx in range(k):
                tap = xp[:, ky:ky + h, kx:kx + w].astype(np.int32)
                acc += tap * wt[:, ky, kx][:, None, None]
                sx += tap
        acc = acc.astype(np.int64)
        sx = sx.astype(np.int64)
        sw = wt.astype(np.int64).reshape(c, -1).sum(1)[:, None, None]
        g_ic = 1
    else:
        cols = np.empty((c, k, k, h, w), np.float64)
        for ky in range(k):
            for kx in range(k):
                cols[:, ky, kx] = xp[:, ky:ky + h, kx:kx + w]
        cols = cols.reshape(c * k * k, h * w)
        wt = weights.reshape(out_channels, c * k * k).astype(np.float64)
        # products < 2^16 and at most 1024*9 of them: float64 sums stay exact integers
        acc = (wt @ cols).astype(np.int64).reshape(out_channels, h, w)
        sx = cols.sum(0).astype(np.int64).reshape(1, h, w)
        sw = wt.sum(1).astype(np.int64)[:, None, None]
        g_ic = c
    return acc + ((args.arg_x * sx) >> args.shift_x) + ((args.arg_w * sw) >> args.shift_w) + args.arg_add * g_ic


def segment_index(v: np.ndarray, start_x: np.ndarray) -> np.ndarray:
    """Index of the last activation segment with ``v > start_x`` (0 when there is none)."""
    if np.all(np.diff(start_x) >= 0):
        return np.maximum(np.searchsorted(start_x, v, side="left") - 1, 0)
    idx = np.zeros(v.shape, np.int64)  # an unsorted table: scan it as the hardware description reads
    for i in range(16):
        idx = np.where(v > start_x[i], i, idx)
    return idx


def bn_act(acc: np.ndarray, bn: BatchNorm, act: Activation) -> np.ndarray:
    v = ((acc * bn.mul[:, None, None]) >> bn.shift[:, None, None]) + bn.add[:, None, None]
    idx = segment_index(v, act.start_x)
    out = act.add[idx]  # segments with y_mul 0 are just their bias
    # segments sharing (mul, shift) are computed together with scalar parameters, whole-array
    # (selecting with np.where is cheaper than boolean indexing for the one or two groups tables have)
    groups: dict[tuple[int, int], list[int]] = {}
    for i in range(16):
        if act.mul[i] != 0:
            groups.setdefault((int(act.mul[i]), int(act.shift[i])), []).append(i)
    if groups:
        start = act.start_x[idx]
    for (mul, shift), segs in groups.items():
        y = round_shift((v - start) * mul, shift) + out
        if len(segs) == 16:
            out = y
        else:
            member = np.zeros(16, bool)
            member[segs] = True
            out = np.where(member[idx], y, out)
    return np.clip(out, 0, 255).astype(np.uint8)


POOL_STRIDE = {0: 1, 1: 2, 2: 2, 3: 4, 4: 4, 5: 2, 6: 2, 7: 4, 8: 1, 9: 1}
POOL_SIZE = {0: 1, 1: 2, 2: 2, 3: 4, 4: 4, 5: 2, 6: 2, 7: 4, 8: 2, 9: 2}


def pool(y: np.ndarray, pool_type: int) -> np.ndarray:
    c, h, w = y.shape
    s, f = POOL_STRIDE[pool_type], POOL_SIZE[pool_type]
    oh, ow = h // s, w // s
    if pool_type == 0:
        return y
    if pool_type in (5, 7):  # left-top: the window's first pixel
        return np.ascontiguousarray(y[:, :oh * s:s, :ow * s:s])
    if pool_type == 6:  # right-top: row 0, column 1 of the window
        out = np.zeros((c, oh, ow), np.uint8)
        cols = np.arange(ow) * s + 1
        ok = cols < w
        out[:, :, ok] = y[:, :oh * s:s, :][:, :, cols[ok]]
        return out
    yy = (np.arange(oh) * s)[:, None] + np.arange(f)[None, :]  # (oh, f)
    xx = (np.arange(ow) * s)[:, None] + np.arange(f)[None, :]
    if pool_type in (1, 3, 9):  # max; outside the map counts as 0 (u8's lowest)
        pad = np.pad(y, ((0, 0), (0, f), (0, f)))
        win = pad[:, yy[:, None, :, None], xx[None, :, None, :]]  # (c, oh, ow, f, f)
        return win.max(axis=(3, 4)).astype(np.uint8)
    # mean: indices clamped to the map, integer sum divided by f*f (truncating)
    yc, xc = np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)
    win = y[:, yc[:, None, :, None], xc[None, :, None, :]].astype(np.uint32)
    return (win.sum(axis=(3, 4)) // (f * f)).astype(np.uint8)


def pooled_size(size: int, pool_type: int) -> int:
    return size // POOL_STRIDE[pool_type]
