"""Re-emit an nncase 1.9 K210 build (kmodel v5 + its dump) as kmodel v3.

nncase 1.9 has already done the hard part for the KPU: quantised the weights and computed each
convolution's register block, batch-norm and activation tables. They are all inside the v5 file:

- the register blocks in the ``k210`` module's ``.text`` (:func:`v5.kpu_layers`), function after
  function, in execution order;
- the weights / batch-norm / activation tables in its ``.rdata``, at the ``@rdata[start, end]``
  ranges the schedules (``dump/codegen/k210_N.sched``) give for the constants of each conv;
- which convolutions copy their output to main memory (a ``KPUDownload`` after them) and which
  function output that copy is;
- everything the CPU does between and after the KPU functions: the ``stackvm`` module's program,
  decoded by :mod:`.stackvm` (calls, quantise, dequantise, slices, pads, copies, means, adds).

The v3 file is a list of layers in which KPU convolutions and CPU layers interleave, all CPU
layers working in one main-memory buffer. :func:`convert` runs the stackvm program symbolically
over a shadow of its memory: every element nncase would compute is tracked as *where its value
comes from* (a byte a KPU conv downloaded, that byte dequantised, a float a v3 layer wrote, or a
constant). Slices, pads and copies only move those descriptions around; a v3 layer is emitted only
where a value must exist in memory: the bytes a KPU function uploads (``CONCAT`` gathers them,
``K210_UPLOAD`` sends them), the floats a mean or an add reads (``DEQUANTIZE``, ``CONCAT``), the
means (``GLOBAL_AVERAGE_POOL2D``), sums (``ADD``), quantised floats (``QUANTIZE``), a quantise of
a dequantised byte that is not the identity (``REQUANTIZE``), and the model's outputs. Constants
(a pad's zero point) come from a ``REQUANTIZE`` whose table is that one value.

What v3 cannot express is refused, naming nncase's op and the layer it came from.
"""

from __future__ import annotations

import bisect
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import PokedexError
from . import stackvm, v5
from .sched import Buffer, parse_sched
from .stackvm import Operand
from .v3 import LayerType
from .write_v3 import ConvLayerSpec, CpuLayerSpec, ModelSpec, write

_OP_RE = re.compile(r"^\[(\w+)\]\s*(.*)$")
ALIGN = 8  # every region: the DMA writes whole u64 words, and floats are read as words


class ConversionError(PokedexError):
    def __init__(
        self,
        message: str,
        hint: str = "build --format v5 for this model (CanMV loads it), or change the layer named above",
    ):
        super().__init__(message, hint)


@dataclass(frozen=True)
class Dequant:
    name: str
    scale: float
    bias: float

    @property
    def zero_point(self) -> float:
        return -self.bias / self.scale


@dataclass(frozen=True)
class Conversion:
    data: bytes
    kpu_layers: int
    dequant: tuple[Dequant, ...]
    main_mem_usage: int
    output_shape: tuple[int, ...]
    kpu_functions: int = 1
    cpu_layers: tuple[tuple[str, str], ...] = ()  # (v3 layer type, what it does), in order
    notes: tuple[str, ...] = ()


def _ops(path: Path) -> list[tuple[str, str]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        m = _OP_RE.match(line.strip())
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def _find(dump: Path, module: str, fn: str, leaf: str) -> Path:
    """nncase writes ``dump/<module>/<function>/<leaf>``; build folders keep ``<module>.<function>.<leaf>``."""
    for p in (dump / module / fn / leaf, dump / f"{module}.{fn}.{leaf}"):
        if p.is_file():
            return p
    raise ConversionError(
        f"{dump}: no {leaf} for {module}/{fn} (the compiler's dump is needed to re-emit v3)",
        "rebuild; build-kmodel keeps the dump it needs under <out>/compiler/",
    )


def _sched(dump: Path, name: str) -> list[Buffer]:
    for p in (dump / "codegen" / f"{name}.sched", dump / f"{name}.sched"):
        if p.is_file():
            return parse_sched(p)[0]
    raise ConversionError(f"{dump}: no {name}.sched", "rebuild; build-kmodel keeps it under <out>/compiler/")


# ------------------------------------------------------------------------------ the KPU functions
@dataclass
class _KFunction:
    name: str
    convs: list[ConvLayerSpec]  # main_mem_out filled in when the function is called
    shapes: list[tuple[tuple[int, int, int], tuple[int, int, int]]]  # (in, out) (w, h, c) per conv
    image_src: int  # KPU line the first conv reads its input from
    downloads: list[int]  # conv index of each function output, in output order


def _k210_functions(kmodel: bytes, model: v5.KmodelV5, dump: Path, names: list[str], where: str) -> list[_KFunction]:
    blocks = v5.kpu_layers(kmodel, model)
    rdata = model.module("k210").section(".rdata")
    out, used = [], 0
    for fn in names:
        k_ops = _ops(_find(dump, "k210", fn, "runtime_ops.txt"))
        if not k_ops or k_ops[0][0] != "KPUUpload" or any(k == "KPUUpload" for k, _ in k_ops[1:]):
            raise ConversionError(
                f"{where}: KPU function {fn} must start with the single upload of its input; got "
                + ", ".join(k for k, _ in k_ops[:4])
            )
        bad = sorted({k for k, _ in k_ops if k not in ("KPUUpload", "KPUConv2D", "KPUDownload")})
        if bad:
            raise ConversionError(f"{where}: KPU function {fn} has ops v3 cannot express: {', '.join(bad)}")
        conv_names, dl_conv = [], []
        for k, n in k_ops[1:]:
            if k == "KPUConv2D":
                conv_names.append(n)
            elif k == "KPUDownload":
                if not conv_names:
                    raise ConversionError(f"{where}: {fn}: a download before any KPU conv")
                dl_conv.append(len(conv_names) - 1)
        mine = blocks[used : used + len(conv_names)]
        used += len(conv_names)
        if len(mine) != len(conv_names):
            raise ConversionError(
                f"{where}: found {len(blocks)} KPU register blocks but the compiler lists more "
                f"KPU convolutions ({fn}: {len(conv_names)})",
                "report this with the build folder",
            )
        k_bufs = sorted(_sched(dump, fn), key=lambda b: b.id)
        consts, pending = [], {}
        for b in k_bufs:
            if b.segment == "rdata":
                if b.name.endswith("/act"):
                    pending["act"] = b
                elif b.dtype == "u64":
                    pending["bn"] = b
                elif b.dtype == "u8":
                    pending["weights"] = b
            elif b.segment in ("unknown", "kpu") and b.name in conv_names and not b.name.endswith("/act"):
                if set(pending) != {"act", "bn", "weights"}:
                    raise ConversionError(
                        f"{where}: could not find the weights / batch norm / activation of "
                        f"{b.name} in the schedule of {fn}"
                    )
                consts.append(pending)
                pending = {}
        if len(consts) != len(mine):
            raise ConversionError(
                f"{where}: the schedule of {fn} gives tables for {len(consts)} convolutions, the "
                f"file has {len(mine)} register blocks for it"
            )
        # function outputs in the order of their @output offsets; the downloads come in that order
        dl_bufs = sorted((b for b in k_bufs if b.segment == "output"), key=lambda b: b.start)
        if len(dl_bufs) != len(dl_conv):
            raise ConversionError(f"{where}: {fn} has {len(dl_conv)} downloads but {len(dl_bufs)} outputs")

        def blob(b: Buffer) -> bytes:
            if b.end > rdata.size:
                raise ConversionError(
                    f"{where}: {b.name} @rdata[{b.start}, {b.end}) is past the K210 .rdata ({rdata.size} B)"
                )
            return kmodel[rdata.offset + b.start : rdata.offset + b.start + b.bytes]

        convs = [
            ConvLayerSpec(regs.raw, blob(c["weights"]), blob(c["bn"]), blob(c["act"]), None)
            for (_, regs), c in zip(mine, consts)
        ]
        shapes = [(regs.in_shape, regs.out_shape) for _, regs in mine]
        out.append(_KFunction(fn, convs, shapes, mine[0][1].fields["image_src_addr"], dl_conv))
    if used != len(blocks):
        raise ConversionError(
            f"{where}: found {len(blocks)} KPU register blocks but the compiler lists {used} KPU convolutions",
            "report this with the build folder",
        )
    return out


# ------------------------------------------------------------------------- symbolic values
# what an element of the stackvm's memory holds
EMPTY, BYTE, U8C, DEQ, FLOAT, F32C, INNER = 0, 1, 2, 3, 4, 5, -1
_U8_KINDS, _F32_KINDS = (BYTE, U8C), (DEQ, FLOAT, F32C)


@dataclass
class _Vals:
    """Element descriptions of a tensor: kind, a (v3 address or u8 constant), b (param id or float)."""

    kind: np.ndarray
    a: np.ndarray
    b: np.ndarray

    @property
    def shape(self):
        return self.kind.shape

    def flat(self) -> _Vals:
        return _Vals(self.kind.reshape(-1), self.a.reshape(-1), self.b.reshape(-1))

    def map(self, f) -> _Vals:
        return _Vals(f(self.kind), f(self.a), f(self.b))


class _Shadow:
    """The stackvm's input, output and data pools, one description per element's first byte."""

    def __init__(self):
        self.pools: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _pool(self, loc: str, size: int):
        k, a, b = self.pools.get(loc, (np.zeros(0, np.int8), np.zeros(0, np.int64), np.zeros(0, np.float64)))
        if len(k) < size:
            n = max(size, 2 * len(k))
            k = np.concatenate([k, np.zeros(n - len(k), np.int8)])
            a = np.concatenate([a, np.zeros(n - len(a), np.int64)])
            b = np.concatenate([b, np.zeros(n - len(b), np.float64)])
            self.pools[loc] = (k, a, b)
        return self.pools[loc]

    @staticmethod
    def addresses(op: Operand) -> np.ndarray:
        idx = np.indices(op.shape, dtype=np.int64) if op.shape else np.zeros((0,), np.int64)
        off = sum(i * s for i, s in zip(idx, op.strides)) if op.shape else np.zeros((), np.int64)
        return op.buffer.offset + op.itemsize * np.asarray(off, np.int64)

    def read(self, op: Operand, what: str) -> _Vals:
        adr = self.addresses(op)
        k, a, b = self._pool(op.buffer.location, int(adr.max()) + op.itemsize if adr.size else 0)
        kind = k[adr]
        if (kind == EMPTY).any() or (kind == INNER).any():
            raise ConversionError(
                f"{what} reads {op.buffer.location} bytes no earlier step wrote "
                f"(offset {op.buffer.offset}, shape {list(op.shape)})",
                "report this with the build folder; build --format v5 meanwhile",
            )
        want = _U8_KINDS if op.dtype == "u8" else _F32_KINDS
        if not np.isin(kind, want).all():
            raise ConversionError(f"{what} reads {op.dtype} where another type was written")
        return _Vals(kind.copy(), a[adr].copy(), b[adr].copy())

    def write(self, op: Operand, v: _Vals) -> None:
        adr = self.addresses(op)
        if adr.shape != v.shape:
            raise ConversionError(f"internal: writing {v.shape} values to a {adr.shape} operand")
        k, a, b = self._pool(op.buffer.location, int(adr.max()) + op.itemsize if adr.size else 0)
        for j in range(1, op.itemsize):
            k[adr + j] = INNER
        k[adr], a[adr], b[adr] = v.kind, v.a, v.b


# ------------------------------------------------------------------------------- the emitter
def _f32(x) -> np.float32:
    return np.float32(x)


def _sim_quantize(x: np.ndarray, inv_scale: float, zp: float) -> np.ndarray:
    """nncase's quantise as its simulator computes it: x * (1/scale) + zero point in single
    precision, rounded half to even, clamped to 0..255."""
    with np.errstate(all="ignore"):
        v = np.asarray(x, np.float32) * _f32(inv_scale) + _f32(zp)
        return np.clip(np.rint(v), 0, 255).astype(np.uint8)


def _sim_dequantize(q: np.ndarray, scale: float, bias: float) -> np.ndarray:
    return (np.asarray(q, np.float32) * _f32(scale) + _f32(bias)).astype(np.float32)


def _runs(*keys: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of the maximal runs over which all ``keys`` are constant."""
    n = len(keys[0])
    if n == 0:
        return []
    change = np.zeros(n, bool)
    change[0] = True
    for k in keys:
        change[1:] |= k[1:] != k[:-1]
    starts = np.flatnonzero(change)
    return list(zip(starts.tolist(), np.append(starts[1:], n).tolist()))


def _ranges(addr: np.ndarray, size: int) -> list[tuple[int, int]]:
    """(start, bytes) of the maximal runs of consecutive elements of ``size`` bytes."""
    if len(addr) == 0:
        return []
    brk = np.flatnonzero(np.diff(addr) != size) + 1
    starts = np.concatenate([[0], brk])
    ends = np.concatenate([brk, [len(addr)]])
    return [(int(addr[s]), int(e - s) * size) for s, e in zip(starts, ends)]


class _Emitter:
    def __init__(self):
        self.layers: list = []
        self.cpu: list[tuple[str, str]] = []
        self.top = 0
        self.params: list[tuple[float, float]] = []  # dequantisation (scale, bias) by id
        self.pools: dict[int, tuple[int, int]] = {}  # constant byte -> (address, length)
        self.regions: list[tuple[int, int]] = []  # (start, bytes) in allocation order
        self.starts: list[int] = []  # their starts, ascending (for bisect)

    def alloc(self, n: int) -> int:
        """A fresh region of n bytes. Regions are laid out one after another while the layers
        are written; :meth:`pack` then lets regions whose lives do not overlap share memory."""
        at = self.top
        self.top += -(-max(n, 1) // ALIGN) * ALIGN
        self.regions.append((at, self.top - at))
        self.starts.append(at)
        return at

    def region(self, addr: int) -> int:
        return bisect.bisect_right(self.starts, addr) - 1

    def within(self, addr: int, n: int) -> bool:
        """Do n bytes from addr lie in one region (so that moving regions keeps them together)?"""
        r = self.region(addr)
        return r >= 0 and addr + n <= self.regions[r][0] + self.regions[r][1]

    def split(self, ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """(start, bytes) ranges cut where one region ends and the next begins."""
        out = []
        for a, n in ranges:
            while n > 0:
                r = self.region(a)
                take = min(n, self.regions[r][0] + self.regions[r][1] - a)
                out.append((a, take))
                a, n = a + take, n - take
        return out

    def pack(self, outputs: list[tuple[int, int]]) -> tuple[list, list[tuple[int, int]], int]:
        """Place the regions so that two share bytes only when no layer needs both at once (a
        region lives from the first layer that touches it to the last; the outputs to the end),
        first fit in order of first use; then rewrite every address. Returns (layers, outputs,
        main memory size)."""
        starts = self.starts
        first, last = {}, {}
        for i, lay in enumerate(self.layers):
            for a in _addresses(lay):
                r = bisect.bisect_right(starts, a) - 1
                first.setdefault(r, i)
                last[r] = i
        end = len(self.layers)
        for a, _ in outputs:
            r = bisect.bisect_right(starts, a) - 1
            first.setdefault(r, end)
            last[r] = end
        placed: list[tuple[int, int, int, int]] = []  # (offset, size, first, last)
        new = {}
        for r in sorted(first, key=lambda r: (first[r], r)):
            size = self.regions[r][1]
            busy = sorted((o, o + n) for o, n, f, end in placed if not (end < first[r] or last[r] < f))
            at = 0
            for lo, hi in busy:
                if at + size <= lo:
                    break
                at = max(at, hi)
            new[r] = at
            placed.append((at, size, first[r], last[r]))

        def move(a: int) -> int:
            r = bisect.bisect_right(starts, a) - 1
            return new[r] + a - starts[r]

        layers = [_relocated(lay, move) for lay in self.layers]
        top = max((o + n for o, n, _, _ in placed), default=0)
        return layers, [(move(a), n) for a, n in outputs], -(-top // ALIGN) * ALIGN

    def cpu_layer(self, t: LayerType, fields: dict, extra: bytes = b"", what: str = "") -> None:
        self.layers.append(CpuLayerSpec(t, {"flags": 0, **fields}, extra))
        self.cpu.append((t.name, what))

    def param(self, scale: float, bias: float) -> int:
        key = (float(_f32(scale)), float(_f32(bias)))
        if key not in self.params:
            self.params.append(key)
        return self.params.index(key)

    # -- materialise descriptions as bytes / floats in main memory
    def const_pool(self, value: int, n: int) -> int:
        have = self.pools.get(value)
        if have and have[1] >= n:
            return have[0]
        at = self.alloc(n)
        self.cpu_layer(
            LayerType.REQUANTIZE,
            {"in": at, "out": at, "count": n},
            bytes([value]) * 256,
            f"{n} bytes of the constant {value}",
        )
        self.pools[value] = (at, n)
        return at

    def dense_u8(self, v: _Vals, what: str) -> int:
        v = v.flat()
        n = len(v.kind)
        if (v.kind == BYTE).all():
            if n and (v.a == v.a[0] + np.arange(n)).all() and self.within(int(v.a[0]), n):
                return int(v.a[0])
            if n > 1 and (v.a == v.a[0] + 16 * np.arange(n)).all() and self.within(int(v.a[0]), 16 * n):
                out = self.alloc(n)
                self.cpu_layer(
                    LayerType.K210_REMOVE_PADDING,
                    {"in": int(v.a[0]), "out": out, "channels": n},
                    what=f"{what}: pixel (0, 0) of {n} 4x4 maps",
                )
                return out
        ranges = []
        for s, e in _runs(v.kind, np.where(v.kind == U8C, v.a, -1)):
            if v.kind[s] == U8C:
                ranges.append(("c", int(v.a[s]), e - s))
            else:
                ranges += [("b", a, size) for a, size in self.split(_ranges(v.a[s:e], 1))]
        for kind, val, size in ranges:
            if kind == "c":
                self.const_pool(val, max(size for k, x, size in ranges if k == "c" and x == val))
        out = self.alloc(n)
        body = b"".join(struct.pack("<2I", self.pools[x][0] if k == "c" else x, size) for k, x, size in ranges)
        self.cpu_layer(
            LayerType.CONCAT,
            {"out": out, "input_count": len(ranges)},
            body,
            f"{what}: gather {n} bytes from {len(ranges)} ranges",
        )
        return out

    def dense_f32(self, v: _Vals, what: str) -> int:
        v = v.flat()
        n = len(v.kind)
        if (
            (v.kind == FLOAT).all()
            and n
            and (v.a == v.a[0] + 4 * np.arange(n)).all()
            and self.within(int(v.a[0]), 4 * n)
        ):
            return int(v.a[0])
        dest = self.alloc(4 * n)
        for s, e in _runs(v.kind, np.where(v.kind == DEQ, v.b, 0), np.where(v.kind == F32C, v.b, 0)):
            k = v.kind[s]
            if k == DEQ:
                scale, bias = self.params[int(v.b[s])]
                src = self.dense_u8(_Vals(np.full(e - s, BYTE, np.int8), v.a[s:e], np.zeros(e - s)), what)
                self.cpu_layer(
                    LayerType.DEQUANTIZE,
                    {"in": src, "out": dest + 4 * s, "count": e - s, "scale": scale, "bias": bias},
                    what=f"{what}: {e - s} values",
                )
            elif k == FLOAT:
                ranges = self.split(_ranges(v.a[s:e], 4))
                self.cpu_layer(
                    LayerType.CONCAT,
                    {"out": dest + 4 * s, "input_count": len(ranges)},
                    b"".join(struct.pack("<2I", a, size) for a, size in ranges),
                    f"{what}: gather {e - s} floats",
                )
            else:  # a constant float: 0 * any byte + value
                self.cpu_layer(
                    LayerType.DEQUANTIZE,
                    {"in": dest, "out": dest + 4 * s, "count": e - s, "scale": 0.0, "bias": float(v.b[s])},
                    what=f"{what}: {e - s} x the constant {float(v.b[s])}",
                )
        return dest


def _v3_quantize(inv_scale: float, zp: float) -> tuple[float, float]:
    """kpu.c's QUANTIZE computes roundf((x - bias) * (1.f / scale)): choose a scale whose
    reciprocal is nncase's 1/scale to the bit, and the bias that moves the zero point."""
    s = _f32(inv_scale)
    scale = _f32(1) / s
    for _ in range(64):
        r = _f32(1) / scale
        if r == s:
            break
        scale = np.nextafter(scale, np.inf if r > s else -np.inf, dtype=np.float32)
    else:
        raise ConversionError(f"no single-precision scale has 1/scale = {float(s)!r}")
    return float(scale), float(_f32(-_f32(zp) * scale)) if zp else 0.0


# --------------------------------------------------------------------------------- convert
@dataclass
class _Run:
    """What the op handlers share while the stackvm program is replayed."""

    where: str
    em: _Emitter
    sh: _Shadow
    fns: list[_KFunction]
    k210_modules: list[int]
    dequant: list[Dequant]
    notes: list[str]

    def fail(self, what: str, why: str, hint: str | None = None):
        raise ConversionError(f"{self.where}: {what}: {why}", *([hint] if hint else []))

    def fresh(self, dst: Operand, kind: int, at: int, step: int) -> None:
        """Record that dst's elements now live at at, at + step, ... (in C order)."""
        n = int(np.prod(dst.shape))
        self.sh.write(
            dst,
            _Vals(
                np.full(dst.shape, kind, np.int8), (at + step * np.arange(n)).reshape(dst.shape), np.zeros(dst.shape)
            ),
        )


def _op_call(r: _Run, i: int, o: stackvm.TensorOp, what: str) -> None:
    """A K210 function: its input uploaded (the image needs nothing: kpu.c sends it to the first
    conv), its convolutions, each download written to a fresh region that becomes a call output."""
    if o.params["module"] not in r.k210_modules:
        r.fail(what, f"calls module {o.params['module']}, not the K210 module")
    fn = r.fns[o.params["function"]]
    if len(o.inputs) != 1:
        r.fail(what, f"a KPU function with {len(o.inputs)} inputs")
    (w, h, c), _ = fn.shapes[0]
    src = o.inputs[0]
    if tuple(src.shape) != (1, c, h, w) or src.dtype != "u8":
        r.fail(what, f"uploads a {src.dtype} {list(src.shape)} map, its first conv reads [1, {c}, {h}, {w}]")
    if src.buffer.location == "input":
        if i != 0:
            r.fail(what, "reads the image again; v3 sends it to the KPU once")
    else:
        addr = r.em.dense_u8(r.sh.read(src, what), what)
        r.em.cpu_layer(
            LayerType.K210_UPLOAD,
            {"in": addr, "kpu_out": fn.image_src, "width": w, "height": h, "channels": c},
            what=f"{what}: {c}x{h}x{w} to the KPU",
        )
    if len(o.outputs) != len(fn.downloads):
        r.fail(what, f"takes {len(o.outputs)} outputs, {fn.name} downloads {len(fn.downloads)}")
    outs = {}
    for dst, ci in zip(o.outputs, fn.downloads):
        ow, oh, oc = fn.shapes[ci][1]
        if tuple(dst.shape) != (1, oc, oh, ow):
            r.fail(what, f"output {list(dst.shape)} is not the conv's {oc}x{oh}x{ow}")
        outs[ci] = (r.em.alloc(ow * oh * oc), dst)
    for ci, spec in enumerate(fn.convs):
        r.em.layers.append(
            ConvLayerSpec(spec.registers, spec.weights, spec.bn, spec.act, outs[ci][0] if ci in outs else None)
        )
    for at, dst in outs.values():
        r.fresh(dst, BYTE, at, 1)


def _op_dequantize(r: _Run, i: int, o: stackvm.TensorOp, what: str) -> None:
    src, dst = o.inputs[0], o.outputs[0]
    if (src.dtype, dst.dtype) != ("u8", "f32"):
        r.fail(what, f"dequantise {src.dtype} -> {dst.dtype}; v3 has u8 -> f32")
    v = r.sh.read(src, what)
    scale, bias = o.params["scale"], o.params["bias"]
    r.dequant.append(Dequant(what.split(" ", 1)[-1], scale, bias))
    p = r.em.param(scale, bias)
    const = _sim_dequantize(np.where(v.kind == U8C, v.a, 0), scale, bias).astype(np.float64)
    r.sh.write(dst, _Vals(np.where(v.kind == BYTE, DEQ, F32C).astype(np.int8), v.a, np.where(v.kind == BYTE, p, const)))


def _op_quantize(r: _Run, i: int, o: stackvm.TensorOp, what: str) -> None:
    """Dequantised bytes: nothing when the round trip is the identity, else a REQUANTIZE table;
    constants: quantised here; computed floats: a QUANTIZE layer."""
    src, dst = o.inputs[0], o.outputs[0]
    if (src.dtype, dst.dtype) != ("f32", "u8"):
        r.fail(what, f"quantise {src.dtype} -> {dst.dtype}; the KPU takes u8")
    em = r.em
    inv, zp = o.params["scale"], o.params["bias"]
    v = r.sh.read(src, what).flat()
    out = _Vals(np.full(v.kind.shape, BYTE, np.int8), v.a.copy(), np.zeros(v.kind.shape))
    c = v.kind == F32C
    out.kind[c], out.a[c] = U8C, _sim_quantize(v.b[c], inv, zp)
    for p in np.unique(v.b[v.kind == DEQ]).astype(int):
        m = (v.kind == DEQ) & (v.b == p)
        table = _sim_quantize(_sim_dequantize(np.arange(256), *em.params[p]), inv, zp)
        if not (table == np.arange(256)).all():  # not a round trip: one table lookup per byte
            n = int(m.sum())
            src_at = em.dense_u8(_Vals(np.full(n, BYTE, np.int8), v.a[m], np.zeros(n)), what)
            at = em.alloc(n)
            em.cpu_layer(
                LayerType.REQUANTIZE,
                {"in": src_at, "out": at, "count": n},
                table.tobytes(),
                f"{what}: {n} bytes to the next scale",
            )
            out.a[m] = at + np.arange(n)
    f = v.kind == FLOAT
    if f.any():
        n = int(f.sum())
        src_at = em.dense_f32(v.map(lambda x: x[f]), what)
        at = em.alloc(n)
        scale, bias = _v3_quantize(inv, zp)
        em.cpu_layer(
            LayerType.QUANTIZE,
            {"in": src_at, "out": at, "count": n, "scale": scale, "bias": bias},
            what=f"{what}: {n} values",
        )
        out.a[f] = at + np.arange(n)
        if zp:
            r.notes.append(
                f"{what}: zero point {zp} moved into QUANTIZE's bias (kpu.c subtracts it before "
                "scaling; nncase adds it after)"
            )
    r.sh.write(dst, out.map(lambda x: x.reshape(dst.shape)))


def _op_move(r: _Run, i: int, o: stackvm.TensorOp, what: str) -> None:
    """COPY, SLICE and PAD only move element descriptions (a pad adds constants)."""
    src, dst = o.inputs[0], o.outputs[0]
    v = r.sh.read(src, what)
    if o.kind == "SLICE":
        sl = tuple(slice(b, e, s) for b, e, s in zip(o.params["begin"], o.params["end"], o.params["step"]))
        v = v.map(lambda x: x[sl])
    elif o.kind == "PAD":
        v = _pad(v, o, src.dtype, r.where, what)
    if v.shape != tuple(dst.shape):
        r.fail(what, f"makes {list(v.shape)}, its output is {list(dst.shape)}")
    r.sh.write(dst, v)


def _op_reduce(r: _Run, i: int, o: stackvm.TensorOp, what: str) -> None:
    src, dst = o.inputs[0], o.outputs[0]
    rank = len(src.shape)
    if (
        o.params["op"] != "mean"
        or src.dtype != "f32"
        or rank < 3
        or o.params["axes"] != (rank - 2, rank - 1)
        or o.params["init"][1] != 0
        or any(d != 1 for d in src.shape[:-3])
    ):
        r.fail(
            what,
            f"a {o.params['op']} over axes {list(o.params['axes'])} of {src.dtype} {list(src.shape)}; v3 "
            "has the float mean over H and W (GLOBAL_AVERAGE_POOL2D)",
            "use a global average pool, or build --format v5"
            + ("; kpu.c has no global max pool" if o.params["op"] == "max" else ""),
        )
    ch, k = src.shape[-3], src.shape[-2] * src.shape[-1]
    at = r.em.dense_f32(r.sh.read(src, what), what)
    out = r.em.alloc(4 * ch)
    r.em.cpu_layer(
        LayerType.GLOBAL_AVERAGE_POOL2D,
        {"in": at, "out": out, "kernel_size": k, "channels": ch},
        what=f"{what}: {ch} channels of {k}",
    )
    r.fresh(dst, FLOAT, out, 4)


def _op_binary(r: _Run, i: int, o: stackvm.TensorOp, what: str) -> None:
    a, b = o.inputs
    dst = o.outputs[0]
    lo, hi = o.params["clamp"]
    clamped = lo > -3.0e38 or hi < 3.0e38
    if (
        o.params["op"] != "add"
        or a.dtype != "f32"
        or tuple(a.shape) != tuple(b.shape)
        or tuple(a.shape) != tuple(dst.shape)
        or clamped
    ):
        r.fail(
            what,
            f"{o.params['op']} of {a.dtype} {list(a.shape)} and {list(b.shape)}"
            + (f", clamped to [{lo}, {hi}]" if clamped else "")
            + "; v3 has the float add of two same-shaped tensors (ADD)",
        )
    n = int(np.prod(a.shape))
    pa = r.em.dense_f32(r.sh.read(a, what), what)
    pb = r.em.dense_f32(r.sh.read(b, what), what)
    out = r.em.alloc(4 * n)
    r.em.cpu_layer(LayerType.ADD, {"in_a": pa, "in_b": pb, "out": out, "count": n}, what=f"{what}: {n} values")
    r.fresh(dst, FLOAT, out, 4)


_OPS = {
    "CALL": _op_call,
    "DEQUANTIZE": _op_dequantize,
    "QUANTIZE": _op_quantize,
    "COPY": _op_move,
    "SLICE": _op_move,
    "PAD": _op_move,
    "REDUCE": _op_reduce,
    "BINARY": _op_binary,
}


def convert(kmodel: bytes, dump: Path, *, path: str | None = None) -> Conversion:
    """The v3 file for an nncase 1.9 v5 build and its dump (see the module docstring)."""
    dump = Path(dump)
    where = path or "kmodel"
    model = v5.parse(kmodel, path)
    text = model.module("stackvm").section(".text")
    ops = stackvm.decode(kmodel[text.offset : text.offset + text.size])
    names = _ops(_find(dump, "stackvm", "main", "runtime_ops.txt"))
    named = len(names) == len(ops)  # nncase lists one runtime op per TENSOR instruction

    def label(i: int) -> str:
        return f"{names[i][0]} {names[i][1]}" if named else f"{ops[i].kind} (op {i + 1} of the CPU program)"

    k210_modules = [i for i, m in enumerate(model.modules) if m.type == "k210"]
    call_fns = sorted({o.params["function"] for o in ops if o.kind == "CALL"})
    if not call_fns or not k210_modules:
        raise ConversionError(f"{where}: the model has no KPU function")
    fns = _k210_functions(kmodel, model, dump, [f"k210_{i}" for i in range(max(call_fns) + 1)], where)
    if not ops or ops[0].kind != "CALL" or ops[0].inputs[0].buffer.location != "input":
        first = label(0) if ops else "nothing"
        raise ConversionError(
            f"{where}: the graph starts with a CPU step ({first}) before the KPU; v3 feeds the "
            "image straight to the first KPU layer",
            "feed u8 pixels 0..255 (the default input range) or build --format v5",
        )
    r = _Run(where, _Emitter(), _Shadow(), fns, k210_modules, [], [])
    for i, o in enumerate(ops):
        handler = _OPS.get(o.kind) if o.decoded else None
        if handler is None:
            r.fail(label(i), f"v3 has no layer for nncase's {o.kind} on the CPU")
        handler(r, i, o, label(i))

    # the model's outputs, from the main function's schedule
    outs = sorted((b for b in _sched(dump, "main") if b.segment == "output"), key=lambda b: b.start)
    if not outs:
        raise ConversionError(f"{where}: the schedule names no model output")
    outputs = []
    for b in outs:
        if b.dtype not in ("f32", "u8"):
            raise ConversionError(f"{where}: output {b.name} is {b.dtype}; v3 outputs here are u8 or f32")
        strides = tuple(int(np.prod(b.shape[j + 1 :])) for j in range(len(b.shape)))
        op = Operand(stackvm.BufferRef("output", b.start), b.dtype, tuple(b.shape), strides)
        v = r.sh.read(op, f"output {b.name}")
        what = f"output {b.name}"
        at = r.em.dense_f32(v, what) if b.dtype == "f32" else r.em.dense_u8(v, what)
        outputs.append((at, int(np.prod(b.shape)) * op.itemsize))
    shape = tuple(outs[0].shape[1:])
    while len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    layers, outputs, main_mem = r.em.pack(outputs)
    spec = ModelSpec(layers, outputs, main_mem)
    return Conversion(
        write(spec),
        sum(len(f.convs) for f in fns),
        tuple(r.dequant),
        spec.main_mem_usage,
        shape,
        kpu_functions=len(call_fns),
        cpu_layers=tuple(r.em.cpu),
        notes=tuple(dict.fromkeys(r.notes)),
    )


def _pad(v: _Vals, o: stackvm.TensorOp, dtype: str, where: str, what: str) -> _Vals:
    if o.params["mode"] != "constant" or any(m for _, _, m in o.params["paddings"]):
        raise ConversionError(
            f"{where}: {what}: a {o.params['mode']} pad with interior padding "
            f"{[m for _, _, m in o.params['paddings']]}; v3 runs constant pads only"
        )
    kind, value = o.params["value"]
    if dtype == "u8":
        ck, ca, cb = U8C, int(value), 0.0
    else:
        if kind == "i" and value != 0:
            raise ConversionError(f"{where}: {what}: an integer pad value {value} on floats")
        ck, ca, cb = F32C, 0, float(_f32(value))
    crop = tuple(slice(max(0, -b), d - max(0, -a)) for d, (b, a, _) in zip(v.shape, o.params["paddings"]))
    v = v.map(lambda x: x[crop])
    widths = [(max(0, b), max(0, a)) for b, a, _ in o.params["paddings"]]
    return _Vals(
        np.pad(v.kind, widths, constant_values=ck),
        np.pad(v.a, widths, constant_values=ca),
        np.pad(v.b, widths, constant_values=cb),
    )


_ADDRESS_FIELDS = ("in", "out", "in_a", "in_b")  # main-memory addresses in kpu.c's CPU layer structs


def _addresses(lay) -> list[int]:
    """The main-memory addresses a layer written here reads or writes (each inside one region)."""
    if isinstance(lay, ConvLayerSpec):
        return [] if lay.main_mem_out is None else [lay.main_mem_out]
    out = [lay.fields[k] for k in _ADDRESS_FIELDS if k in lay.fields]
    if lay.type == LayerType.CONCAT:
        out += [a for a, _ in struct.iter_unpack("<2I", lay.extra)]
    return out


def _relocated(lay, move):
    if isinstance(lay, ConvLayerSpec):
        if lay.main_mem_out is None:
            return lay
        return ConvLayerSpec(lay.registers, lay.weights, lay.bn, lay.act, move(lay.main_mem_out))
    fields = {k: (move(v) if k in _ADDRESS_FIELDS else v) for k, v in lay.fields.items()}
    extra = lay.extra
    if lay.type == LayerType.CONCAT:
        extra = b"".join(struct.pack("<2I", move(a), n) for a, n in struct.iter_unpack("<2I", lay.extra))
    return CpuLayerSpec(lay.type, fields, extra)
