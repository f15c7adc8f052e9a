"""kmodel v3 reader: parse, check every offset and size, decode the KPU registers.

Written from the public structure definitions of the Kendryte K210 standalone SDK
(``lib/drivers/include/kpu.h``; docs/kmodel-v3.md summarises them). Layout, all little-endian:

    header      7 x u32: version (3), flags, arch (0), layers_length, max_start_address,
                main_mem_usage, output_count
    outputs     output_count x (address u32, size u32)          -- in main memory
    layer table layers_length x (type u32, body_size u32)
    bodies      one after another, in table order

A ``K210_CONV`` (10240) body starts with 6 x u32: flags, main_mem_out_address, layer_offset,
weights_offset, bn_offset, act_offset; the last four count from the start of the file and point
at the 12 x u64 KPU register block (``kpu_layer_argument_t``), the 8-bit weights, the batch-norm
table (one u64 per output channel) and the activation table (16 + 2 x u64).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

from . import KmodelFormatError

MAX_LAYERS = 4096
MAX_OUTPUTS = 64
MAX_MAIN_MEM = 6 * 2**20  # the K210's general SRAM; the SDK mallocs main_mem_usage from it
KPU_RAM = 2 * 2**20  # KPU SRAM, addressed in 64-byte lines by the registers
KPU_LINE = 64


class LayerType(IntEnum):
    INVALID = 0
    ADD = 1
    QUANTIZED_ADD = 2
    GLOBAL_MAX_POOL2D = 3
    QUANTIZED_GLOBAL_MAX_POOL2D = 4
    GLOBAL_AVERAGE_POOL2D = 5
    QUANTIZED_GLOBAL_AVERAGE_POOL2D = 6
    MAX_POOL2D = 7
    QUANTIZED_MAX_POOL2D = 8
    AVERAGE_POOL2D = 9
    QUANTIZED_AVERAGE_POOL2D = 10
    QUANTIZE = 11
    DEQUANTIZE = 12
    REQUANTIZE = 13
    L2_NORMALIZATION = 14
    SOFTMAX = 15
    CONCAT = 16
    QUANTIZED_CONCAT = 17
    FULLY_CONNECTED = 18
    QUANTIZED_FULLY_CONNECTED = 19
    TENSORFLOW_FLATTEN = 20
    QUANTIZED_TENSORFLOW_FLATTEN = 21
    RESIZE_NEAREST_NEIGHBOR = 22
    QUANTIZED_RESIZE_NEAREST_NEIGHBOR = 23
    CHANNELWISE_DEQUANTIZE = 24
    LOGISTIC = 25
    K210_CONV = 10240
    K210_ADD_PADDING = 10241
    K210_REMOVE_PADDING = 10242
    K210_UPLOAD = 10243


# (register index, field name, low bit, width) for kpu_layer_argument_t, from kpu.h.
_REGISTER_FIELDS = [
    (0, "int_en", 0, 1),
    (0, "ram_flag", 1, 1),
    (0, "full_add", 2, 1),
    (0, "depth_wise_layer", 3, 1),
    (1, "image_src_addr", 0, 15),
    (1, "image_dst_addr", 32, 15),
    (2, "i_ch_num", 0, 10),
    (2, "o_ch_num", 32, 10),
    (2, "o_ch_num_coef", 48, 10),
    (3, "i_row_wid", 0, 10),
    (3, "i_col_high", 10, 9),
    (3, "o_row_wid", 32, 10),
    (3, "o_col_high", 42, 9),
    (4, "kernel_type", 0, 3),
    (4, "pad_type", 3, 1),
    (4, "pool_type", 4, 4),
    (4, "first_stride", 8, 1),
    (4, "bypass_conv", 9, 1),
    (4, "load_para", 10, 1),
    (4, "dma_burst_size", 16, 8),
    (4, "pad_value", 24, 8),
    (4, "bwsx_base_addr", 32, 32),
    (5, "load_coor", 0, 1),
    (5, "load_time", 1, 6),
    (5, "para_size", 15, 17),
    (5, "para_start_addr", 32, 32),
    (6, "coef_column_offset", 0, 4),
    (6, "coef_row_offset", 4, 12),
    (7, "channel_switch_addr", 0, 15),
    (7, "row_switch_addr", 16, 4),
    (7, "coef_size", 20, 8),
    (7, "coef_group", 28, 3),
    (7, "load_act", 31, 1),
    (7, "active_addr", 32, 32),
    (8, "wb_channel_switch_addr", 0, 15),
    (8, "wb_row_switch_addr", 16, 4),
    (8, "wb_group", 20, 3),
    (9, "shr_w", 0, 4),
    (9, "shr_x", 4, 4),
    (9, "arg_w", 8, 24),
    (9, "arg_x", 32, 24),
    (10, "arg_add", 0, 40),
    (11, "send_data_out", 0, 1),
    (11, "channel_byte_num", 16, 16),
    (11, "dma_total_byte", 32, 32),
]
# Bits no field uses, per register: must be zero in a well-formed block.
_RESERVED = {}
for _i in range(12):
    used = 0
    for reg, _n, lo, w in _REGISTER_FIELDS:
        if reg == _i:
            used |= ((1 << w) - 1) << lo
    _RESERVED[_i] = ~used & (2**64 - 1)
# Registers the SDK loader fills in at run time (addresses in the loaded image), so they hold
# whatever the compiler left there: not checked for reserved bits.
_RELOCATED_REGS = {4, 5, 7}

KERNEL_SIZES = {0: 1, 1: 3}  # kernel_type -> k
POOL_TYPES = {  # pool_type -> (kernel, stride, name), per the SDK's kpu.c / nncase 0.1
    0: (1, 1, "none"),
    1: (2, 2, "max 2x2 s2"),
    2: (2, 2, "avg 2x2 s2"),
    3: (4, 4, "max 4x4 s4"),
    4: (4, 4, "avg 4x4 s4"),
    5: (2, 2, "left-top 2x2 s2"),
    6: (2, 2, "right-top 2x2 s2"),
    7: (4, 4, "left-top 4x4 s4"),
    8: (2, 1, "avg 2x2 s1"),
    9: (2, 1, "max 2x2 s1"),
}


@dataclass(frozen=True)
class KPURegisters:
    raw: tuple[int, ...]  # the 12 u64 registers as stored
    fields: dict

    @property
    def in_shape(self) -> tuple[int, int, int]:
        """(width, height, channels) of the layer's input map."""
        f = self.fields
        return f["i_row_wid"] + 1, f["i_col_high"] + 1, f["i_ch_num"] + 1

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """(width, height, channels) after the fused pool."""
        f = self.fields
        return f["o_row_wid"] + 1, f["o_col_high"] + 1, f["o_ch_num"] + 1

    @property
    def kernel(self) -> int:
        return KERNEL_SIZES.get(self.fields["kernel_type"], 0)

    @property
    def depthwise(self) -> bool:
        return bool(self.fields["depth_wise_layer"])

    @property
    def pool(self) -> str:
        return POOL_TYPES.get(self.fields["pool_type"], (0, 0, "unknown"))[2]


@dataclass(frozen=True)
class ConvLayer:
    flags: int
    main_mem_out_address: int
    layer_offset: int
    weights_offset: int
    bn_offset: int
    act_offset: int
    registers: KPURegisters

    @property
    def weights_size(self) -> int:
        w, h, c = self.registers.in_shape
        _, _, o = self.registers.out_shape
        k = self.registers.kernel
        return o * k * k * (1 if self.registers.depthwise else c)

    @property
    def bn_size(self) -> int:
        return self.registers.out_shape[2] * 8

    ACT_SIZE = 16 * 8 + 2 * 8


@dataclass(frozen=True)
class Layer:
    index: int
    type: int
    body_offset: int
    body_size: int
    fields: dict = field(default_factory=dict)  # decoded body (CPU layers)
    conv: ConvLayer | None = None

    @property
    def name(self) -> str:
        try:
            return LayerType(self.type).name
        except ValueError:
            return f"UNKNOWN({self.type})"


@dataclass(frozen=True)
class KmodelV3:
    version: int
    flags: int
    arch: int
    layers_length: int
    max_start_address: int
    main_mem_usage: int
    outputs: tuple[tuple[int, int], ...]
    layers: tuple[Layer, ...]
    size: int

    @property
    def conv_layers(self) -> list[Layer]:
        return [lay for lay in self.layers if lay.type == LayerType.K210_CONV]

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the KPU convolutions, counted as the float model defines them
        (:func:`conv_macs`)."""
        return conv_macs([lay.conv.registers for lay in self.conv_layers])

    @property
    def input_shape(self) -> tuple[int, int, int] | None:
        """(channels, height, width) of the u8 image a first K210_CONV reads (what MaixPy checks
        camera images against); None when the model starts with another layer."""
        first = self.layers[0]
        if first.conv is None:
            return None
        w, h, c = first.conv.registers.in_shape
        return (c, h, w)


SUBSAMPLE_POOLS = {5: 2, 6: 2, 7: 4}  # pool_type -> stride of the pools that only pick pixels (a conv's stride)


def conv_macs(layers: list[KPURegisters]) -> int:
    """Multiply-accumulates of KPU convolutions in execution order, counted as the float model
    defines them (what a PyTorch count over its Conv2d layers gives): output pixels x output
    channels x input channels (1 when depthwise) x k x k.

    The KPU computes every conv at its input's resolution, then pools. A subsampling pool
    (left-top / right-top) is the float conv's stride, so that conv counts at its output's
    resolution; a max or average pool is a layer of its own, so the conv counts before it. A
    1x1 subsampling conv only reads every s-th pixel of its input: when it follows the conv that
    made that input (nncase moves a depthwise conv's stride onto the pointwise conv after it),
    that conv counts at the subsampled resolution too, as the float model's strided conv. Maps
    nncase pads up to the KPU's smallest width (4) count as the KPU computes them: more than the
    float model's count (a 64 px input's last 2x2 stage)."""
    total = 0
    for i, r in enumerate(layers):
        w, h, c = r.in_shape
        s = SUBSAMPLE_POOLS.get(r.fields["pool_type"], 1)
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if nxt is not None and nxt.kernel == 1 and nxt.in_shape == r.out_shape:
            s *= SUBSAMPLE_POOLS.get(nxt.fields["pool_type"], 1)
        total += (w // s) * (h // s) * r.out_shape[2] * (1 if r.depthwise else c) * r.kernel * r.kernel
    return total


# CPU layer bodies: field names of the fixed part (u32 unless noted), per kpu.h.
_CPU_BODIES: dict[int, tuple[str, str]] = {
    LayerType.ADD: ("<5I", "flags in_a in_b out count"),
    LayerType.QUANTIZED_ADD: (
        "<5I9i",
        "flags in_a in_b out count in_a_offset in_a_mul in_a_shift in_b_offset "
        "in_b_mul in_b_shift out_offset out_mul out_shift",
    ),
    LayerType.GLOBAL_AVERAGE_POOL2D: ("<5I", "flags in out kernel_size channels"),
    LayerType.QUANTIZED_GLOBAL_AVERAGE_POOL2D: ("<5I", "flags in out kernel_size channels"),
    LayerType.GLOBAL_MAX_POOL2D: ("<5I", "flags in out kernel_size channels"),
    LayerType.QUANTIZED_GLOBAL_MAX_POOL2D: ("<5I", "flags in out kernel_size channels"),
    LayerType.QUANTIZED_MAX_POOL2D: (
        "<15I",
        "flags in out in_w in_h in_c out_w out_h out_c kernel_w kernel_h stride_w stride_h pad_w pad_h",
    ),
    LayerType.AVERAGE_POOL2D: (
        "<16I",
        "flags in out in_w in_h in_c out_w out_h out_c kernel_w kernel_h stride_w stride_h pad_w pad_h act",
    ),
    LayerType.QUANTIZE: ("<4I2f", "flags in out count scale bias"),
    LayerType.DEQUANTIZE: ("<4I2f", "flags in out count scale bias"),
    LayerType.REQUANTIZE: ("<4I", "flags in out count"),
    LayerType.L2_NORMALIZATION: ("<4I", "flags in out channels"),
    LayerType.SOFTMAX: ("<4I", "flags in out channels"),
    LayerType.CONCAT: ("<3I", "flags out input_count"),
    LayerType.QUANTIZED_CONCAT: ("<3I", "flags out input_count"),
    LayerType.FULLY_CONNECTED: ("<6I", "flags in out in_channels out_channels act"),
    LayerType.TENSORFLOW_FLATTEN: ("<6I", "flags in out width height channels"),
    LayerType.QUANTIZED_TENSORFLOW_FLATTEN: ("<6I", "flags in out width height channels"),
    LayerType.RESIZE_NEAREST_NEIGHBOR: ("<9I", "flags in out in_w in_h in_c out_w out_h align_corners"),
    LayerType.QUANTIZED_RESIZE_NEAREST_NEIGHBOR: ("<9I", "flags in out in_w in_h in_c out_w out_h align_corners"),
    LayerType.CHANNELWISE_DEQUANTIZE: ("<5I", "flags in out channels channel_size"),
    LayerType.LOGISTIC: ("<4I", "flags in out channels"),
    LayerType.K210_ADD_PADDING: ("<4I", "flags in kpu_out channels"),
    LayerType.K210_REMOVE_PADDING: ("<4I", "flags in out channels"),
    LayerType.K210_UPLOAD: ("<6I", "flags in kpu_out width height channels"),
}


def decode_registers(raw: tuple[int, ...]) -> dict:
    return {name: (raw[reg] >> lo) & ((1 << w) - 1) for reg, name, lo, w in _REGISTER_FIELDS}


def encode_registers(fields: dict) -> tuple[int, ...]:
    """The 12 u64 of a register block from field values (absent fields are 0); signed values
    are stored two's complement in their width."""
    regs = [0] * 12
    for reg, name, lo, w in _REGISTER_FIELDS:
        v = int(fields.get(name, 0))
        if v < 0:
            v += 1 << w
        if not 0 <= v < (1 << w):
            raise ValueError(f"register field {name} = {fields[name]} does not fit {w} bits")
        regs[reg] |= v << lo
    return tuple(regs)


class _Reader:
    def __init__(self, data: bytes, path: str | None):
        self.data = data
        self.path = path

    def fail(self, offset: int, reason: str):
        raise KmodelFormatError(offset, reason, self.path)

    def unpack(self, fmt: str, offset: int, what: str) -> tuple:
        size = struct.calcsize(fmt)
        if offset < 0 or offset + size > len(self.data):
            self.fail(offset, f"{what} ({size} bytes) runs past the end of the file ({len(self.data)} bytes)")
        return struct.unpack_from(fmt, self.data, offset)

    def region(self, offset: int, size: int, what: str, *, align: int = 1) -> None:
        if offset < 0 or size < 0 or offset + size > len(self.data):
            self.fail(offset, f"{what} [{offset}, {offset + size}) is outside the file ({len(self.data)} bytes)")
        if offset % align:
            self.fail(offset, f"{what} is not {align}-byte aligned")


def parse(data: bytes, path: str | None = None) -> KmodelV3:
    """Parse and check a kmodel v3; raises :class:`KmodelFormatError` with the offset at fault."""
    r = _Reader(bytes(data), path)
    version, flags, arch, n_layers, max_start, main_mem, n_out = r.unpack("<7I", 0, "header")
    if version != 3:
        r.fail(0, f"version {version}, expected 3" + (" (this is a 'KMDL' v4/v5 file)" if data[:4] == b"LDMK" else ""))
    if arch != 0:
        r.fail(8, f"arch {arch}, expected 0 (K210)")
    if not 0 < n_layers <= MAX_LAYERS:
        r.fail(12, f"layers_length {n_layers} is not in 1..{MAX_LAYERS}")
    if main_mem > MAX_MAIN_MEM:
        r.fail(20, f"main_mem_usage {main_mem} B is more than the K210's {MAX_MAIN_MEM} B of general SRAM")
    if not 0 < n_out <= MAX_OUTPUTS:
        r.fail(24, f"output_count {n_out} is not in 1..{MAX_OUTPUTS}")
    off = 28
    outputs = []
    for i in range(n_out):
        addr, size = r.unpack("<2I", off, f"output {i}")
        if addr + size > main_mem:
            r.fail(off, f"output {i} [{addr}, {addr + size}) is outside main memory ({main_mem} bytes)")
        outputs.append((addr, size))
        off += 8
    table = []
    for i in range(n_layers):
        table.append(r.unpack("<2I", off, f"layer header {i}") + (off,))
        off += 8
    body = off
    layers = []
    for i, (typ, size, hdr_off) in enumerate(table):
        r.region(body, size, f"layer {i} body")
        if typ == LayerType.K210_CONV:
            layers.append(_conv_layer(r, i, body, size, main_mem))
        elif typ in _CPU_BODIES:
            fmt, names = _CPU_BODIES[typ]
            need = struct.calcsize(fmt)
            if size < need:
                r.fail(hdr_off + 4, f"layer {i} ({LayerType(typ).name}) body is {size} bytes, needs at least {need}")
            vals = r.unpack(fmt, body, f"layer {i} body")
            fields = dict(zip(names.split(), vals))
            for k in ("in", "out", "in_a", "in_b"):
                if k in fields and fields[k] > main_mem:
                    r.fail(
                        body,
                        f"layer {i} ({LayerType(typ).name}) {k} address {fields[k]} is past main memory ({main_mem})",
                    )
            if "kpu_out" in fields and fields["kpu_out"] >= KPU_RAM // KPU_LINE:
                r.fail(body, f"layer {i} ({LayerType(typ).name}) KPU address {fields['kpu_out']} is past the KPU SRAM")
            layers.append(Layer(i, typ, body, size, fields))
        else:
            r.fail(hdr_off, f"layer {i} has unknown type {typ}")
        body += size
    return KmodelV3(version, flags, arch, n_layers, max_start, main_mem, tuple(outputs), tuple(layers), len(data))


def _conv_layer(r: _Reader, i: int, body: int, size: int, main_mem: int) -> Layer:
    if size < 24:
        r.fail(body, f"layer {i} (K210_CONV) body is {size} bytes, needs at least 24")
    flags, out_addr, layer_off, w_off, bn_off, act_off = r.unpack("<6I", body, f"layer {i} conv arguments")
    r.region(layer_off, 96, f"layer {i} KPU registers", align=8)
    raw = r.unpack("<12Q", layer_off, f"layer {i} KPU registers")
    for reg, mask in _RESERVED.items():
        if reg not in _RELOCATED_REGS and raw[reg] & mask:
            r.fail(layer_off + 8 * reg, f"layer {i} KPU register {reg} has reserved bits set (0x{raw[reg] & mask:X})")
    regs = KPURegisters(raw, decode_registers(raw))
    conv = ConvLayer(flags, out_addr, layer_off, w_off, bn_off, act_off, regs)
    f = regs.fields
    if regs.kernel == 0:
        r.fail(layer_off + 32, f"layer {i} kernel_type {f['kernel_type']} is not 1x1 or 3x3")
    if f["pool_type"] not in POOL_TYPES:
        r.fail(layer_off + 32, f"layer {i} pool_type {f['pool_type']} is unknown")
    if regs.depthwise and regs.in_shape[2] != regs.out_shape[2]:
        r.fail(layer_off, f"layer {i} is depthwise but has {regs.in_shape[2]} -> {regs.out_shape[2]} channels")
    for name in ("image_src_addr", "image_dst_addr"):
        if f[name] >= KPU_RAM // KPU_LINE:
            r.fail(layer_off + 8, f"layer {i} {name} {f[name]} is past the KPU SRAM")
    r.region(w_off, conv.weights_size, f"layer {i} weights")
    r.region(bn_off, conv.bn_size, f"layer {i} batch-norm table", align=8)
    r.region(act_off, ConvLayer.ACT_SIZE, f"layer {i} activation table", align=8)
    if flags & 1 and out_addr + regs.out_shape[0] * regs.out_shape[1] * regs.out_shape[2] > main_mem:
        r.fail(body + 4, f"layer {i} main-memory output at {out_addr} runs past main memory ({main_mem})")
    return Layer(i, LayerType.K210_CONV, body, size, {}, conv)


def read(path: Path | str) -> KmodelV3:
    p = Path(path)
    return parse(p.read_bytes(), str(p))
