"""kmodel v5 (nncase 1.x) container reader, and the K210 module's KPU layers inside it.

Layout (little-endian), as nncase 1.9 writes it and as checked here against its own schedule:

    model header   'KMDL' (stored 'LDMK'), version 5, header_size, flags, alignment, modules,
                   entry_module, entry_function                              -- 8 x u32
    module         type char[16] ('stackvm', 'k210'), version, header_size, size, mempools,
                   shared_mempools, sections, functions, reserved            -- 48 bytes
                   ... mempool descriptors, function headers ...
    section        name char[16] ('.rdata', '.text'), flags, body_start, body_size, reserved;
                   the body starts body_start bytes after this 32-byte header (alignment padding)

The K210 module's ``.text`` carries each KPU convolution's hardware register block
(``kpu_layer_argument_t``, 12 x u64) packed at 4-byte alignment, in execution order; the
addresses of weights, batch-norm and activation tables are zero there (filled in at load time),
and the tables themselves live in the module's ``.rdata``. :func:`kpu_layers` finds the blocks;
``from_nncase`` uses them to re-emit the model as kmodel v3.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from . import KmodelFormatError
from .v3 import _RELOCATED_REGS, _RESERVED, POOL_TYPES, KPURegisters, decode_registers


@dataclass(frozen=True)
class Section:
    name: str
    offset: int  # file offset of the body
    size: int


@dataclass(frozen=True)
class Module:
    type: str
    offset: int
    size: int
    version: int
    sections: tuple[Section, ...]

    def section(self, name: str) -> Section:
        for s in self.sections:
            if s.name == name:
                return s
        raise KmodelFormatError(self.offset, f"module {self.type} has no {name} section")


@dataclass(frozen=True)
class KmodelV5:
    version: int
    alignment: int
    modules: tuple[Module, ...]
    size: int

    def module(self, type_: str) -> Module:
        for m in self.modules:
            if m.type == type_:
                return m
        raise KmodelFormatError(0, f"no {type_} module")


def parse(data: bytes, path: str | None = None) -> KmodelV5:
    def fail(off, why):
        raise KmodelFormatError(off, why, path)

    if len(data) < 32 or data[:4] != b"LDMK":
        fail(0, "not a 'KMDL' kmodel")
    _, version, header_size, flags, alignment, n_modules, _, _ = struct.unpack_from("<8I", data, 0)
    if version != 5:
        fail(4, f"version {version}, expected 5")
    if not 0 < n_modules <= 16:
        fail(20, f"{n_modules} modules")
    off = header_size
    modules = []
    for _ in range(n_modules):
        if off + 48 > len(data):
            fail(off, "module header runs past the end of the file")
        mtype = data[off : off + 16].split(b"\0")[0].decode("ascii", "replace")
        mver, mhdr, msize, _, _, n_sections, _, _ = struct.unpack_from("<8I", data, off + 16)
        if msize < mhdr or off + msize > len(data):
            fail(off, f"module {mtype} of {msize} bytes runs past the end of the file")
        body = data[off : off + msize]
        sections = []
        for name in (b".rdata", b".text", b".data", b".bss"):
            i = body.find(name + b"\0")
            while i >= 0 and len(sections) < n_sections:
                flags_, start, size, _ = struct.unpack_from("<4I", body, i + 16)
                s_off = off + i + 32 + start
                if s_off + size <= off + msize:
                    sections.append(Section(name.decode(), s_off, size))
                    break
                i = body.find(name + b"\0", i + 1)
        modules.append(Module(mtype, off, msize, mver, tuple(sorted(sections, key=lambda s: s.offset))))
        off += msize
    return KmodelV5(version, alignment, tuple(modules), len(data))


def kpu_layers(data: bytes, model: KmodelV5 | None = None) -> list[tuple[int, KPURegisters]]:
    """(file offset, decoded registers) of every KPU convolution, in order."""
    model = model or parse(data)
    text = model.module("k210").section(".text")
    out = []
    i = text.offset
    end = text.offset + text.size
    while i + 96 <= end:
        raw = struct.unpack_from("<12Q", data, i)
        if all((raw[r] & m) == 0 for r, m in _RESERVED.items() if r not in _RELOCATED_REGS):
            f = decode_registers(raw)
            if (
                f["kernel_type"] in (0, 1)
                and f["pool_type"] in POOL_TYPES
                and f["channel_byte_num"] > 0
                and f["dma_total_byte"] > 0
            ):
                out.append((i, KPURegisters(raw, f)))
                i += 96
                continue
        i += 4
    return out
