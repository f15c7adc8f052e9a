"""Re-emit an nncase 1.9 K210 build (kmodel v5 + its dump) as kmodel v3.

nncase 1.9 has already done the hard part for the KPU: quantised the weights and computed each
convolution's register block, batch-norm and activation tables. They are all inside the v5 file:

- the register blocks in the ``k210`` module's ``.text`` (:func:`v5.kpu_layers`), in execution order;
- the weights / batch-norm / activation tables in its ``.rdata``, at the ``@rdata[start, end]``
  ranges the schedule (``dump/codegen/k210_0.sched``) gives for the constants of each conv;
- which convolutions copy their output to main memory (a ``KPUDownload`` after them in the K210
  function's op list) and where (the ``@output`` range of that download);
- the output dequantisation: the ``stackvm`` module's program pushes each ``Dequantize``'s scale
  and bias as two ``LDC_R4`` immediates just before the ``TENSOR DEQUANTIZE`` (u8 -> f32) op.

The v3 model is then: the KPU convolutions (the input uploaded where the first one reads it), one
``DEQUANTIZE`` per downloaded output written side by side (that is the concatenation), and a float
``GLOBAL_AVERAGE_POOL2D`` when the graph ends with a spatial ``ReduceMean``. Graphs of any other
shape are refused with the reason (for instance nncase splitting the KPU graph into several
functions with CPU pads between them, which it does for maps under 4x4).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

from ..errors import PokedexError
from ..build.memory import Buffer, parse_sched
from . import v5
from .v3 import LayerType
from .write_v3 import ConvLayerSpec, CpuLayerSpec, ModelSpec, write

_DEQUANT_RE = re.compile(rb"\x05(.{4})\x05(.{4})\x5e\x0b\x00\x04\x09", re.DOTALL)
_OP_RE = re.compile(r"^\[(\w+)\]\s*(.*)$")


class ConversionError(PokedexError):
    def __init__(self, message: str, hint: str = "build --format v5 for this model, or change it so that "
                                                 "nncase keeps the whole network in one KPU function"):
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
    raise ConversionError(f"{dump}: no {leaf} for {module}/{fn} (the compiler's dump is needed to re-emit v3)",
                          "rebuild; build-kmodel keeps the dump it needs under <out>/compiler/")


def _sched(dump: Path, name: str) -> list[Buffer]:
    for p in (dump / "codegen" / f"{name}.sched", dump / f"{name}.sched"):
        if p.is_file():
            return parse_sched(p)[0]
    raise ConversionError(f"{dump}: no {name}.sched", "rebuild; build-kmodel keeps it under <out>/compiler/")


def dequant_params(data: bytes, model: v5.KmodelV5) -> list[tuple[float, float]]:
    """(scale, bias) of every u8 -> f32 Dequantize in the stackvm program, in program order."""
    text = model.module("stackvm").section(".text")
    body = data[text.offset:text.offset + text.size]
    return [(struct.unpack("<f", m.group(1))[0], struct.unpack("<f", m.group(2))[0]) for m in _DEQUANT_RE.finditer(body)]


def convert(kmodel: bytes, dump: Path, *, path: str | None = None) -> Conversion:
    dump = Path(dump)
    where = path or "kmodel"
    model = v5.parse(kmodel, path)

    main_ops = _ops(_find(dump, "stackvm", "main", "runtime_ops.txt"))
    calls = [n for k, n in main_ops if k == "Call"]
    if len(calls) != 1:
        raise ConversionError(
            f"{where}: nncase split the KPU graph into {len(calls)} functions ({', '.join(calls)}) with CPU steps "
            "between them; a v3 file is one KPU program",
            "nncase runs maps smaller than 4x4 through CPU pads between KPU functions, which the v3 re-emitter "
            "cannot express yet: that happens below 128 px input for this project's students, and for any "
            "classifier that pools globally before its head (the head's 1x1 maps). Keep the maps at 4x4 or "
            "more until the last KPU layer (put the global pool after the head, as this project's students "
            "do), or build --format v5 for CanMV")
    if main_ops[0][0] != "Call":
        raise ConversionError(f"{where}: the graph starts with a CPU step ({main_ops[0][0]} {main_ops[0][1]}) before "
                              "the KPU; v3 feeds the image straight to the first KPU layer",
                              "feed u8 pixels 0..255 (the default input range) or build --format v5")
    tail = main_ops[1:]
    deq_names = [n for k, n in tail if k == "Dequantize"]
    others = [(k, n) for k, n in tail if k not in ("Dequantize", "Reduce", "Concat")]
    if others:
        raise ConversionError(f"{where}: CPU steps after the KPU that v3 has no layer for here: "
                              + ", ".join(f"{k} {n}" for k, n in others))
    reduce = [n for k, n in tail if k == "Reduce"]
    if len(reduce) > 1 or (reduce and tail[-1][0] != "Reduce"):
        raise ConversionError(f"{where}: expected at most one ReduceMean, at the end; got {tail}")
    if reduce and "reduce_mean" not in reduce[0]:
        raise ConversionError(f"{where}: the final reduction {reduce[0]} is not a mean")

    fn = calls[0]
    k_ops = _ops(_find(dump, "k210", fn, "runtime_ops.txt"))
    if not k_ops or k_ops[0][0] != "KPUUpload" or any(k == "KPUUpload" for k, _ in k_ops[1:]):
        raise ConversionError(f"{where}: the KPU function must start with the single upload of the image; got "
                              + ", ".join(k for k, _ in k_ops[:4]))
    bad = [k for k, _ in k_ops if k not in ("KPUUpload", "KPUConv2D", "KPUDownload")]
    if bad:
        raise ConversionError(f"{where}: KPU function ops v3 cannot express: {', '.join(sorted(set(bad)))}")
    conv_names: list[str] = []
    downloads: list[int] = []  # index of the conv each download copies out
    for k, n in k_ops[1:]:
        if k == "KPUConv2D":
            conv_names.append(n)
        elif k == "KPUDownload":
            if not conv_names:
                raise ConversionError(f"{where}: a download before any KPU conv")
            downloads.append(len(conv_names) - 1)

    blocks = v5.kpu_layers(kmodel, model)
    if len(blocks) != len(conv_names):
        raise ConversionError(f"{where}: found {len(blocks)} KPU register blocks but the compiler lists "
                              f"{len(conv_names)} KPU convolutions", "report this with the build folder")

    k_bufs = sorted(_sched(dump, fn), key=lambda b: b.id)
    rdata = model.module("k210").section(".rdata")
    consts: list[dict] = []
    pending: dict = {}
    conv_out: list[Buffer] = []
    dl_bufs = [b for b in k_bufs if b.name.startswith("KPUDownload")]
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
                raise ConversionError(f"{where}: could not find the weights / batch norm / activation of {b.name} "
                                      "in the schedule")
            consts.append(pending)
            conv_out.append(b)
            pending = {}
    if len(consts) != len(blocks):
        raise ConversionError(f"{where}: the schedule gives tables for {len(consts)} convolutions, the file has "
                              f"{len(blocks)} register blocks")
    if len(dl_bufs) != len(downloads):
        raise ConversionError(f"{where}: {len(downloads)} downloads but {len(dl_bufs)} download buffers")

    def blob(b: Buffer) -> bytes:
        if b.end > rdata.size:
            raise ConversionError(f"{where}: {b.name} @rdata[{b.start}, {b.end}) is past the K210 .rdata "
                                  f"({rdata.size} B)")
        return kmodel[rdata.offset + b.start:rdata.offset + b.start + b.bytes]

    # main memory: each downloaded u8 map (8-byte aligned, the DMA writes whole u64 words), then the
    # dequantised floats side by side, then the pooled output
    layers: list = []
    addr = 0
    dl_addr: dict[int, int] = {}
    for ci in downloads:
        w, h, c = blocks[ci][1].out_shape
        dl_addr[ci] = addr
        addr += -(-(w * h * c) // 8) * 8
    for i, ((_, regs), cst) in enumerate(zip(blocks, consts)):
        layers.append(ConvLayerSpec(regs.raw, blob(cst["weights"]), blob(cst["bn"]), blob(cst["act"]),
                                    dl_addr.get(i)))

    params = dequant_params(kmodel, model)
    if len(params) != len(deq_names):
        raise ConversionError(f"{where}: {len(deq_names)} Dequantize ops but {len(params)} dequantisation "
                              "parameter pairs found in the stackvm program")
    if len(deq_names) != len(downloads):
        raise ConversionError(f"{where}: {len(downloads)} KPU outputs but {len(deq_names)} Dequantize ops")
    dequant = []
    by_name = {conv_names[ci]: ci for ci in downloads}
    float_base = addr
    spatial = None
    channels = 0
    order = []
    for name, (scale, bias) in zip(deq_names, params):
        conv_name = name.rsplit("/dequantize", 1)[0]
        ci = by_name.get(conv_name)
        if ci is None:
            raise ConversionError(f"{where}: Dequantize {name} does not follow a downloaded KPU output")
        w, h, c = blocks[ci][1].out_shape
        if spatial is None:
            spatial = (w, h)
        elif spatial != (w, h) and reduce:
            raise ConversionError(f"{where}: outputs of different sizes ({spatial} and {(w, h)}) before the mean")
        order.append((ci, c, scale, bias))
        dequant.append(Dequant(name, scale, bias))
        channels += c
    off = float_base
    for ci, c, scale, bias in order:
        w, h, _ = blocks[ci][1].out_shape
        layers.append(CpuLayerSpec(LayerType.DEQUANTIZE, {"flags": 0, "in": dl_addr[ci], "out": off,
                                                          "count": w * h * c, "scale": scale, "bias": bias}))
        off += 4 * w * h * c
    if reduce:
        w, h = spatial
        out_at = off
        layers.append(CpuLayerSpec(LayerType.GLOBAL_AVERAGE_POOL2D, {"flags": 0, "in": float_base, "out": out_at,
                                                                     "kernel_size": w * h, "channels": channels}))
        outputs = [(out_at, 4 * channels)]
        end = out_at + 4 * channels
        out_shape = (channels,)
    else:
        outputs = [(float_base, off - float_base)]
        end = off
        out_shape = (channels,) + ((spatial[1], spatial[0]) if spatial else ())
    spec = ModelSpec(layers, outputs, -(-end // 8) * 8)
    data = write(spec)
    return Conversion(data, len(blocks), tuple(dequant), spec.main_mem_usage, out_shape)
