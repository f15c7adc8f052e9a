"""kmodel v3 writer: a list of layers in, the bytes the K210 SDK's ``kpu_load_kmodel`` takes out.

Layout (``kpu.h``; the same choices as the v3 files nncase 0.1 wrote for Kendryte's demos):
header, outputs, layer table, then the bodies back to back. A ``K210_CONV`` body holds its
six-word argument block, then -- at file offsets the KPU can use once the model sits at an
aligned address -- the register block (8-byte aligned), the weights (128), the batch-norm table
(128) and the activation table (256). CPU bodies are their fixed fields plus any trailing data.
The register words the loader fills in (weights, batch-norm and activation addresses) are written
as zero; so are the top 4 bits of activation words, which the 60-bit segment format does not use.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .v3 import _CPU_BODIES, LayerType

ALIGN_REGS, ALIGN_WEIGHTS, ALIGN_BN, ALIGN_ACT = 8, 128, 128, 256
_RELOCATED = {4: 0xFFFFFFFF << 32, 5: 0xFFFFFFFF << 32, 7: 0xFFFFFFFF << 32}  # bwsx, para_start, active addr
ACT_WORD_MASK = (1 << 60) - 1


@dataclass
class ConvLayerSpec:
    registers: tuple[int, ...]  # the 12 u64 of kpu_layer_argument_t
    weights: bytes
    bn: bytes
    act: bytes  # 16 x u64 segments + 16 bias bytes
    main_mem_out: int | None = None  # main-memory address of a copy of the output (KLF_MAIN_MEM_OUT)

    type = LayerType.K210_CONV


@dataclass
class CpuLayerSpec:
    type: LayerType
    fields: dict
    extra: bytes = b""  # what follows the fixed fields (concat ranges, FC weights, requantize table)


@dataclass
class ModelSpec:
    layers: list = field(default_factory=list)
    outputs: list[tuple[int, int]] = field(default_factory=list)  # (main-memory address, bytes)
    main_mem_usage: int = 0
    flags: int = 1  # bit 0: the KPU's 8-bit mode


def _pad(buf: bytearray, align: int) -> None:
    buf += b"\0" * (-len(buf) % align)


def _conv_registers(raw: tuple[int, ...]) -> bytes:
    regs = list(raw)
    for i, mask in _RELOCATED.items():
        regs[i] &= ~mask & (2**64 - 1)
    return struct.pack("<12Q", *regs)


def _act_bytes(act: bytes) -> bytes:
    words = [w & ACT_WORD_MASK for w in struct.unpack_from("<16Q", act, 0)]
    return struct.pack("<16Q", *words) + act[128:144]


def _min_kpu_line(spec: ModelSpec) -> int:
    lines = []
    for lay in spec.layers:
        if isinstance(lay, ConvLayerSpec):
            lines += [lay.registers[1] & 0x7FFF, (lay.registers[1] >> 32) & 0x7FFF]
    return min(lines, default=0)


def write(spec: ModelSpec) -> bytes:
    n = len(spec.layers)
    head = struct.pack("<7I", 3, spec.flags, 0, n, _min_kpu_line(spec), spec.main_mem_usage, len(spec.outputs))
    head += b"".join(struct.pack("<2I", a, s) for a, s in spec.outputs)
    table_at = len(head)
    buf = bytearray(head + b"\0" * (8 * n))
    sizes = []
    for lay in spec.layers:
        start = len(buf)
        if isinstance(lay, ConvLayerSpec):
            if len(lay.act) != 144:
                raise ValueError(f"activation table of {len(lay.act)} B, expected 144")
            args_at = len(buf)
            buf += b"\0" * 24
            _pad(buf, ALIGN_REGS)
            regs_at = len(buf)
            buf += _conv_registers(lay.registers)
            _pad(buf, ALIGN_WEIGHTS)
            w_at = len(buf)
            buf += lay.weights
            _pad(buf, ALIGN_BN)
            bn_at = len(buf)
            buf += lay.bn
            _pad(buf, ALIGN_ACT)
            act_at = len(buf)
            buf += _act_bytes(lay.act)
            flags = 1 if lay.main_mem_out is not None else 0
            struct.pack_into("<6I", buf, args_at, flags, lay.main_mem_out or 0, regs_at, w_at, bn_at, act_at)
        else:
            fmt, names = _CPU_BODIES[lay.type]
            values = []
            for name in names.split():
                if name not in lay.fields:
                    raise ValueError(f"{LayerType(lay.type).name} needs the field {name!r}")
                values.append(lay.fields[name])
            buf += struct.pack(fmt, *values) + lay.extra
            _pad(buf, 4)
        sizes.append(len(buf) - start)
    for i, (lay, size) in enumerate(zip(spec.layers, sizes)):
        struct.pack_into("<2I", buf, table_at + 8 * i, int(lay.type), size)
    return bytes(buf)
