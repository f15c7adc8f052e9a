"""nncase 1.9's schedule files: the physical buffers of a compiled model and where they live.

``dump_dir/codegen/<module>.sched`` lists every buffer with its segment and byte range:
``@input``/``@output`` (the model's I/O), ``@data`` (working main memory), ``@rdata`` (constants
inside the kmodel) and, in the K210 module, the KPU's own 2 MiB SRAM (which this nncase release
prints as ``@unknown``); the compute sequence, when nncase writes it, names each KPU conv's
input and output buffers.

A format of the compiler's dump, like the kmodel formats beside it: ``from_nncase`` reads the
buffers to re-emit a v5 build as v3, and the build's memory figures (``compile/memory.py``) are
sums over them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_BUF_RE = re.compile(r"^%(\d+)\((.*)\)\s*:\s*<(\w+) \[([\d,]*)\] (\d+) bytes of \[[\d,]*\]>\s*@(\w+)\[(\d+), (\d+)\]")
_KPU_RE = re.compile(r"^\s*%(\d+)\s*=\s*KPUConv2D\(([^)]*)\)")
KPU_SEGMENTS = ("unknown", "kpu")


@dataclass(frozen=True)
class Buffer:
    module: str
    id: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    bytes: int
    segment: str
    start: int
    end: int


def parse_sched(path: Path) -> tuple[list[Buffer], list[tuple[int, list[int]]]]:
    """Buffers and the KPU conv calls (output id, input ids) of one ``.sched`` file."""
    module = path.stem
    buffers, convs = [], []
    for line in path.read_text(errors="replace").splitlines():
        m = _BUF_RE.match(line.strip())
        if m:
            shape = tuple(int(x) for x in m.group(4).split(",") if x)
            buffers.append(
                Buffer(
                    module,
                    int(m.group(1)),
                    m.group(2),
                    m.group(3),
                    shape,
                    int(m.group(5)),
                    m.group(6),
                    int(m.group(7)),
                    int(m.group(8)),
                )
            )
            continue
        m = _KPU_RE.match(line)
        if m:
            ins = [int(x.strip().lstrip("%").split("[")[0]) for x in m.group(2).split(",") if x.strip()]
            convs.append((int(m.group(1)), ins))
    return buffers, convs
