"""Memory figures of a compiled kmodel, read from nncase's dump (its printed summary is empty).

The buffers come from the compiler's schedule (``kmodel/sched.py`` reads it); here they become
the build's figures: run-time RAM (kmodel + ``@data`` + I/O), the KPU SRAM peak and each KPU
layer's maps. ``kmodel_info.txt``'s MEMORY USAGES block, when nncase writes one, is cross-checked
against these figures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PokedexError
from ..kmodel.sched import KPU_SEGMENTS, Buffer, parse_sched

_INFO_RE = re.compile(r"^(\w+):\s+[\d.]+ \w+\s+\((\d+) B\)")


@dataclass(frozen=True)
class KPULayer:
    name: str
    in_bytes: int
    out_bytes: int
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]

    @property
    def total(self) -> int:
        return self.in_bytes + self.out_bytes


@dataclass
class MemoryReport:
    kmodel_bytes: int
    input_bytes: int
    output_bytes: int
    data_bytes: int
    kpu_peak: int
    kpu_layers: list[KPULayer] = field(default_factory=list)
    data_buffers: list[Buffer] = field(default_factory=list)
    cpu_ops: list[tuple[str, str]] = field(default_factory=list)  # (kind, name) run by the CPU
    crosscheck: list[str] = field(default_factory=list)  # disagreements with kmodel_info.txt

    @property
    def runtime_total(self) -> int:
        """What the model takes from general RAM at run time: kmodel + working data + I/O."""
        return self.kmodel_bytes + self.data_bytes + self.input_bytes + self.output_bytes

    def as_dict(self) -> dict:
        return {
            "kmodel_bytes": self.kmodel_bytes,
            "data_bytes": self.data_bytes,
            "input_bytes": self.input_bytes,
            "output_bytes": self.output_bytes,
            "runtime_total": self.runtime_total,
            "kpu_sram_peak": self.kpu_peak,
            "kpu_layers": len(self.kpu_layers),
            "largest_kpu_layer": max((lay.total for lay in self.kpu_layers), default=0),
            "cpu_ops": [f"{k} {n}" for k, n in self.cpu_ops],
            "crosscheck": self.crosscheck,
        }


def _kmodel_info(dump_dir: Path) -> dict[str, int]:
    f = dump_dir / "kmodel_info.txt"
    if not f.is_file():
        return {}
    out = {}
    for line in f.read_text(errors="replace").splitlines():
        m = _INFO_RE.match(line.strip())
        if m:
            out[m.group(1).lower()] = int(m.group(2))
    return out


def read_memory(dump_dir: Path, kmodel: Path) -> MemoryReport:
    from .lint import compiled_ops

    codegen = Path(dump_dir) / "codegen"
    scheds = sorted(codegen.glob("*.sched"))
    if not scheds:
        raise PokedexError(
            f"nncase wrote no schedule files under {codegen}",
            "the compile did not finish; see compile.log in the output folder",
        )
    seg_end: dict[tuple[str, str], int] = {}
    all_bufs: list[Buffer] = []
    layers: list[KPULayer] = []
    for s in scheds:
        bufs, convs = parse_sched(s)
        all_bufs += bufs
        for b in bufs:
            key = (b.module, b.segment)
            seg_end[key] = max(seg_end.get(key, 0), b.end)
        by_id = {b.id: b for b in bufs}
        for out_id, ins in convs:
            o, i = by_id.get(out_id), by_id.get(ins[0]) if ins else None
            if o is not None and i is not None:
                layers.append(KPULayer(o.name, i.bytes, o.bytes, i.shape, o.shape))
        if not convs:
            # nncase 1.9 often stops writing the compute sequence after the function's signature;
            # the KPU maps are then read off the buffer list: each conv's output in KPU SRAM, its
            # input the map before it (the uploaded image for the first)
            maps = [
                b for b in sorted(bufs, key=lambda b: b.id) if b.segment in KPU_SEGMENTS and not b.name.endswith("/act")
            ]
            for prev, cur in zip(maps, maps[1:]):
                if cur.name.endswith("(Conv)"):
                    layers.append(KPULayer(cur.name, prev.bytes, cur.bytes, prev.shape, cur.shape))

    def seg_total(seg: str) -> int:
        return sum(v for (mod, sg), v in seg_end.items() if sg == seg)

    def seg_max(seg: str) -> int:
        return max((v for (mod, sg), v in seg_end.items() if sg == seg), default=0)

    def io(seg: str) -> int:
        # The model's own input/output are those of the entry function ("main"); a sub-module's
        # @input/@output are the caller's buffers, already counted there.
        if ("main", seg) in seg_end:
            return seg_end[("main", seg)]
        return seg_max(seg)

    rep = MemoryReport(
        kmodel_bytes=Path(kmodel).stat().st_size,
        # the model's input and output live once, however many modules touch them
        input_bytes=io("input"),
        output_bytes=io("output"),
        # each module gets its own working data
        data_bytes=seg_total("data"),
        kpu_peak=max((seg_max(s) for s in KPU_SEGMENTS), default=0),
        kpu_layers=layers,
        data_buffers=sorted((b for b in all_bufs if b.segment == "data"), key=lambda b: -b.bytes),
        cpu_ops=[(op.kind, op.name) for op in compiled_ops(dump_dir) if op.module != "k210" and op.kind != "Call"],
    )
    info = _kmodel_info(Path(dump_dir))
    for key, ours in (
        ("input", rep.input_bytes),
        ("output", rep.output_bytes),
        ("data", rep.data_bytes),
        ("model", rep.kmodel_bytes),
    ):
        theirs = info.get(key)
        # nncase rounds buffers up to 8 bytes in the schedule and reports exact tensor sizes
        if theirs is not None and abs(theirs - ours) > 8:
            rep.crosscheck.append(f"{key}: schedule says {ours:,} B, kmodel_info.txt says {theirs:,} B")
    return rep
