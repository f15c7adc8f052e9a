"""KPU lint: before compiling, say for each layer whether it will run on the K210's KPU or fall
back to the CPU (in float: slow, and 4 bytes per weight), why, and what to change.

The rules are what nncase 1.9.0.20230322 was measured to do (docs/kpu-rules.md). They are
checked against the compiler itself: :func:`placement_from_dump` reads which convolutions
nncase put on the KPU, and the test suite compiles a zoo of good and bad graphs and fails if
lint and compiler disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

KPU_MAX_CHANNELS = 1024
KPU_MAX_WIDTH = 256  # measured: 256 stays on the KPU, 264 does not (nncase 1.9.0.20230322)
KPU_MIN_SIZE = 4
KPU_FUSED_ACTIVATIONS = {"Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "Tanh", "HardSwish"}
# Ops that are cheap bookkeeping on the CPU and expected around a KPU graph.
CPU_OK = {
    "Concat",
    "ReduceMean",
    "GlobalAveragePool",
    "Flatten",
    "Reshape",
    "Squeeze",
    "Unsqueeze",
    "Softmax",
    "Identity",
    "Dropout",
    "Transpose",
    "Add",
    "Dequantize",
}


@dataclass
class LintEntry:
    node: str
    op: str
    placement: str  # "kpu" | "fused" | "cpu"
    shape_in: tuple[int, ...] = ()
    shape_out: tuple[int, ...] = ()
    reason: str = ""
    fix: str = ""
    cpu_float_bytes: int = 0  # extra general-RAM bytes when it runs on the CPU in float
    kpu_bytes: int = 0  # estimated KPU SRAM for this layer's input + output maps
    weights: int = 0


@dataclass
class LintReport:
    entries: list[LintEntry] = field(default_factory=list)
    kpu_sram: int = 2 * 2**20

    @property
    def kpu_convs(self) -> list[LintEntry]:
        return [e for e in self.entries if e.op == "Conv" and e.placement.startswith("kpu")]

    @property
    def cpu_fallbacks(self) -> list[LintEntry]:
        """Layers that should be on the KPU but are not (costly), not cheap CPU bookkeeping."""
        return [e for e in self.entries if e.placement == "cpu" and e.reason]

    @property
    def kpu_over(self) -> list[LintEntry]:
        return [e for e in self.entries if e.kpu_bytes >= self.kpu_sram]

    def conv_placement(self) -> dict[str, str]:
        return {e.node: e.placement for e in self.entries if e.op == "Conv"}

    def table(self) -> str:
        rows = ["| layer | op | in -> out | placement | why / fix |", "|---|---|---|---|---|"]
        for e in self.entries:
            io = f"{'x'.join(map(str, e.shape_in[1:]))} -> {'x'.join(map(str, e.shape_out[1:]))}"
            why = e.reason + (f" — fix: {e.fix}" if e.fix else "")
            rows.append(f"| {e.node} | {e.op} | {io} | {e.placement} | {why} |")
        return "\n".join(rows)


def kpu_map_bytes(c: int, h: int, w: int) -> int:
    """Bytes a C x H x W uint8 map takes in KPU SRAM: rows padded to 16, 32 or a multiple of 64."""
    row = 16 if w <= 16 else 32 if w <= 32 else -(-w // 64) * 64
    return c * h * row


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    out = {}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        out[vi.name] = tuple(d.dim_value for d in dims)
    return out


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _is_swish(n: onnx.NodeProto, producer: dict, kpu_outputs: set[str]) -> bool:
    if len(n.input) != 2:
        return False
    for a, b in ((n.input[0], n.input[1]), (n.input[1], n.input[0])):
        p = producer.get(b)
        if a in kpu_outputs and p is not None and p.op_type in ("Sigmoid", "HardSigmoid") and p.input[0] == a:
            return True
    return False


def lint_model(model: onnx.ModelProto, kpu_sram: int = 2 * 2**20) -> LintReport:
    model = onnx.shape_inference.infer_shapes(model)
    shapes = _shapes(model)
    inits = {i.name: i for i in model.graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    producer = {o: n for n in model.graph.node for o in n.output}
    report = LintReport(kpu_sram=kpu_sram)
    kpu_outputs: set[str] = set()

    for n in model.graph.node:
        if n.op_type == "Constant":
            continue
        sin = shapes.get(n.input[0], ()) if n.input else ()
        sout = shapes.get(n.output[0], ())
        e = LintEntry(n.name or n.output[0], n.op_type, "cpu", sin, sout)
        if n.op_type == "Conv":
            _lint_conv(n, e, inits)
            if e.placement.startswith("kpu"):
                kpu_outputs.add(n.output[0])
                if len(sin) == 4 and len(sout) == 4:
                    out_map = sout[1:]
                    strides = tuple(_attr(n, "strides", (1, 1)))
                    if strides != (1, 1) and (int(_attr(n, "group", 1)) > 1 or strides != (2, 2)):
                        # computed at stride 1 on the KPU, sliced after: the full-size map is in SRAM
                        out_map = (sout[1], sin[2], sin[3])
                    e.kpu_bytes = kpu_map_bytes(*sin[1:]) + kpu_map_bytes(*out_map)
                    # measured: a layer whose maps fill the SRAM exactly still fails to allocate
                    if e.kpu_bytes >= kpu_sram:
                        e.reason = (
                            f"input + output maps need {e.kpu_bytes:,} B of KPU SRAM "
                            f"(> {kpu_sram:,}): the compile will fail"
                        )
                        e.fix = "lower the input size, downsample earlier, or use fewer channels at this resolution"
        elif n.op_type in KPU_FUSED_ACTIVATIONS | {"Clip"} and n.input[0] in kpu_outputs:
            # The KPU's activation is a 16-segment piecewise-linear table after batch norm: ReLU,
            # ReLU6/Clip, LeakyReLU, Sigmoid, Tanh, HardSwish all become table entries.
            e.placement = "fused"
            kpu_outputs.add(n.output[0])
        elif n.op_type in ("MaxPool", "AveragePool"):
            k = tuple(_attr(n, "kernel_shape", ()))
            s = tuple(_attr(n, "strides", (1, 1)))
            if n.input[0] in kpu_outputs and k == (2, 2) and s == (2, 2) and not any(_attr(n, "pads", ()) or ()):
                e.placement = "fused"
                kpu_outputs.add(n.output[0])
            else:
                e.reason = f"{n.op_type} {k} stride {s} does not fuse into a KPU conv"
                e.fix = "use a 2x2 stride-2 pool right after a conv, or a stride-2 3x3 conv instead"
                if len(sout) == 4:
                    e.cpu_float_bytes = 4 * int(np.prod(sin[1:])) + 4 * int(np.prod(sout[1:]))
        elif n.op_type in ("Gemm", "MatMul"):
            w = inits.get(n.input[1])
            nw = int(np.prod(w.dims)) if w is not None else 0
            e.weights = nw
            dims = tuple(w.dims) if w is not None else ()
            if w is not None and len(dims) == 2 and max(dims) <= KPU_MAX_CHANNELS:
                e.placement = "kpu+cpu"
                e.reason = "fully connected: nncase runs it as a KPU 1x1 conv on a map padded to 4x4 (CPU pad + copy)"
            else:
                e.cpu_float_bytes = 4 * nw
                e.reason = (
                    f"fully connected {dims} (> {KPU_MAX_CHANNELS} wide) runs on the CPU in float "
                    f"({4 * nw:,} B of float weights)"
                )
                e.fix = (
                    "replace it with 1x1 convs (<= 1024 outputs each) on the last feature map, "
                    "concatenated, then global average pool"
                )
        elif n.op_type == "Mul" and _is_swish(n, producer, kpu_outputs):
            e.placement = "fused"
            e.reason = "x * sigmoid(x) (SiLU / HardSwish) fuses into the KPU's activation table"
            kpu_outputs.add(n.output[0])
        elif n.op_type in (
            "Mul",
            "Div",
            "Sub",
            "Sigmoid",
            "HardSigmoid",
            "Pad",
            "Resize",
            "Upsample",
            "PRelu",
            "Exp",
            "Pow",
            "Sqrt",
            "Erf",
            "Tanh",
            "Relu",
            "Clip",
            "LeakyRelu",
            "HardSwish",
            "Slice",
        ):
            if len(sout) == 4:
                e.cpu_float_bytes = 4 * int(np.prod(sout[1:]))
            e.reason = f"{n.op_type} here runs on the CPU" + (" in float" if e.cpu_float_bytes else "")
            e.fix = {
                "Mul": "use ReLU6 instead of SiLU/Swish (x*sigmoid(x) is a CPU multiply)",
                "Pad": "use symmetric padding (PyTorch padding=k//2), not TF 'SAME' asymmetric pads",
                "Sub": "fold normalisation into the first conv",
                "Div": "fold normalisation into the first conv",
            }.get(n.op_type, "keep to Conv + BN + ReLU/ReLU6 between KPU layers")
        elif n.op_type in CPU_OK:
            e.placement = "cpu"
            if n.op_type in ("ReduceMean", "GlobalAveragePool") and len(sin) == 4:
                e.cpu_float_bytes = 4 * int(np.prod(sin[1:]))
        else:
            e.reason = f"{n.op_type} has no KPU form"
            e.fix = "replace it with KPU-friendly ops (conv 1x1/3x3, ReLU6, 2x2 pools)"
        report.entries.append(e)
    return report


def _lint_conv(n: onnx.NodeProto, e: LintEntry, inits: dict) -> None:
    k = tuple(_attr(n, "kernel_shape", ()))
    s = tuple(_attr(n, "strides", (1, 1)))
    d = tuple(_attr(n, "dilations", (1, 1)))
    g = int(_attr(n, "group", 1))
    pads = tuple(_attr(n, "pads", (0, 0, 0, 0)))
    w = inits.get(n.input[1])
    if w is not None:
        e.weights = int(np.prod(w.dims))
    cin = e.shape_in[1] if len(e.shape_in) == 4 else 0
    cout = e.shape_out[1] if len(e.shape_out) == 4 else 0
    h = e.shape_in[2] if len(e.shape_in) == 4 else 0
    wid = e.shape_in[3] if len(e.shape_in) == 4 else 0
    # Conditions that keep a conv off the KPU entirely (it runs on the CPU in float).
    hard: list[tuple[str, str]] = []
    if k not in ((1, 1), (3, 3)):
        hard.append((f"kernel {k[0]}x{k[1]}", "use 3x3 (stack two for a 5x5 field) or 1x1"))
    if g != 1 and not (g == cin == cout):
        hard.append((f"grouped conv (groups={g})", "use groups=1 or depthwise (groups = channels)"))
    if cin > KPU_MAX_CHANNELS or cout > KPU_MAX_CHANNELS:
        hard.append(
            (
                f"{cin} -> {cout} channels (> {KPU_MAX_CHANNELS})",
                "split the layer into convs of <= 1024 outputs and concatenate (a 1025-class head: 513 + 512)",
            )
        )
    if wid > KPU_MAX_WIDTH:
        hard.append((f"input width {wid} > {KPU_MAX_WIDTH}", "downsample before this layer or use a smaller input"))
    # Conditions nncase works around with CPU steps around a KPU conv.
    soft: list[tuple[str, str]] = []
    if s not in ((1, 1), (2, 2)):
        soft.append((f"stride {s}: KPU runs it at stride 1, the CPU slices the result", "use stride 1 or 2"))
    if d != (1, 1):
        soft.append((f"dilation {d}: CPU space-to-batch transposes around the KPU conv", "use dilation 1"))
    if k in ((1, 1), (3, 3)) and pads != (k[0] // 2,) * 4:
        soft.append(
            (
                f"padding {pads}: the KPU pads by k//2 on every side, so the CPU pads and slices",
                "use padding=k//2 on every side (PyTorch padding=1 for 3x3), not TF 'SAME'",
            )
        )
    if 0 < h < KPU_MIN_SIZE or 0 < wid < KPU_MIN_SIZE:
        soft.append(
            (
                f"input {h}x{wid} is smaller than {KPU_MIN_SIZE}x{KPU_MIN_SIZE}: CPU pads it up and slices",
                "apply this conv before the last downsampling (e.g. a head on the 7x7 map)",
            )
        )
    if g > 1 and s == (2, 2):
        soft.append(("depthwise stride 2: KPU at stride 1 plus a CPU slice", ""))
    if hard:
        e.placement = "cpu"
        e.reason = "; ".join(p for p, _ in hard)
        e.fix = "; ".join(f for _, f in hard)
        e.cpu_float_bytes = 4 * e.weights
    else:
        e.placement = "kpu+cpu" if soft else "kpu"
        e.reason = "; ".join(p for p, _ in soft)
        e.fix = "; ".join(f for _, f in soft if f)


_OP_RE = re.compile(r"^\[(\w+)\]\s+(.*)$")


@dataclass(frozen=True)
class CompiledOp:
    module: str  # "k210" (KPU module) or "stackvm" (CPU)
    kind: str  # nncase op name, e.g. KPUConv2D, Conv2D, Dequantize
    name: str  # the ONNX node name it came from, without nncase's "(Conv)" suffix


def compiled_ops(dump_dir: Path) -> list[CompiledOp]:
    """The ops nncase emitted, read from ``dump_dir/<module>/<fn>/runtime_ops.txt``."""
    ops = []
    for f in sorted(Path(dump_dir).glob("*/*/runtime_ops.txt")):
        module = f.parent.parent.name
        for line in f.read_text(errors="replace").splitlines():
            m = _OP_RE.match(line.strip())
            if m:
                name = re.sub(r"\(\w+\)(/.*)?$", "", m.group(2).strip())
                ops.append(CompiledOp(module, m.group(1), name))
    return ops


def _belongs(op_name: str, node: str) -> bool:
    return op_name == node or op_name.startswith(node + "(") or op_name.startswith(node + ".")


def placement_from_dump(dump_dir: Path, nodes: list[str]) -> dict[str, str]:
    """ONNX node name -> "kpu" | "cpu" | "absent", as nncase placed it (KPU if any KPU conv
    came from the node, whatever CPU helpers surround it)."""
    ops = compiled_ops(dump_dir)
    out = {}
    for node in nodes:
        mine = [op for op in ops if _belongs(op.name, node)]
        if any(op.kind == "KPUConv2D" for op in mine):
            out[node] = "kpu"
        elif mine:
            out[node] = "cpu"
        else:
            out[node] = "absent"
    return out


def compare_with_compiler(report: LintReport, dump_dir: Path) -> list[str]:
    """Disagreements between lint and nncase about which layers run on the KPU."""
    predicted = {
        e.node: ("kpu" if e.placement.startswith("kpu") else "cpu")
        for e in report.entries
        if e.op in ("Conv", "Gemm", "MatMul")
    }
    actual = placement_from_dump(dump_dir, list(predicted))
    return [
        f"{node}: lint says {p}, nncase placed it on {actual[node]}"
        for node, p in predicted.items()
        if actual[node] != p
    ]
