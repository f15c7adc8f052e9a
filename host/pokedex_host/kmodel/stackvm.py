"""Decode the CPU program nncase 1.9 writes into a kmodel v5's ``stackvm`` module.

The program is a stack machine's bytecode (encoding and emitters: docs/notes/nncase-stackvm.md,
read from nncase v1.9.0's ``opcode.h``, ``op_writer.h`` and ``src/codegen/stackvm/ops``). Each
tensor operation is emitted as: push the buffers (``LEA_BUFFER``), push scalars (``LDC_I4`` /
``LDC_R4``), fill shape registers (``LDC_I4`` per dimension, then ``STSHAPE reg, rank``), then one
``TENSOR funct`` instruction naming the registers it reads. :func:`decode` runs that machine
symbolically -- no data, only the operands -- and returns one :class:`TensorOp` per ``TENSOR``
instruction, with its buffers, shapes, element strides and parameters resolved.

Only what nncase's K210 flow puts between KPU functions is decoded in full (call, quantise,
dequantise, copy, slice, pad, reduce, binary); any other tensor function is returned with its
name and no operands, and decoding stops there, so the caller can refuse it by name.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..errors import PokedexError

# datatype_t (runtime/datatypes.def)
DTYPES = {
    0: ("i8", 1),
    1: ("i16", 2),
    2: ("i32", 4),
    3: ("i64", 8),
    4: ("u8", 1),
    5: ("u16", 2),
    6: ("u32", 4),
    7: ("u64", 8),
    8: ("f16", 2),
    9: ("f32", 4),
    10: ("f64", 8),
    11: ("bf16", 2),
}
_ITEMSIZE = {name: size for name, size in DTYPES.values()}
# LEA_BUFFER locations (runtime/datatypes.h memory_location_t)
LOCATIONS = {0: "input", 1: "output", 2: "rdata", 3: "data", 4: "shared_data"}
REDUCE_OPS = {0: "mean", 1: "min", 2: "max", 3: "sum"}
BINARY_OPS = {0: "add", 1: "sub", 2: "mul", 3: "div", 4: "min", 5: "max", 6: "pow"}
PAD_MODES = {0: "constant", 1: "reflect", 2: "symmetric", 3: "edge"}

# tensor_function_t (runtime/stackvm/opcode.h), for naming what is not decoded
FUNCTS = {
    0x00: "BATCH_TO_SPACE",
    0x01: "BINARY",
    0x02: "BROADCAST",
    0x03: "CALL",
    0x04: "COMPARE",
    0x05: "CLAMP",
    0x06: "CONV2D",
    0x07: "CONV2D_TRANSPOSE",
    0x08: "CONVERT",
    0x09: "COPY",
    0x0A: "CUMSUM",
    0x0B: "DEQUANTIZE",
    0x0C: "GATHER",
    0x0D: "GATHER_ND",
    0x0E: "HARDMAX",
    0x0F: "LOGISTIC",
    0x10: "LUT1D",
    0x11: "MATMUL",
    0x12: "ONEHOT",
    0x13: "PAD",
    0x14: "QUANTIZE",
    0x15: "RANDOM_NORMAL",
    0x16: "RANDOM_UNIFORM",
    0x17: "REDUCE",
    0x18: "REDUCE_ARG",
    0x19: "REDUCE_PROD",
    0x1A: "REDUCE_WINDOW2D",
    0x1B: "RESIZE_IMAGE",
    0x1C: "ROI_ALIGN",
    0x1D: "SIGMOID",
    0x1E: "SLICE",
    0x1F: "SOFTMAX",
    0x20: "SPACE_TO_BATCH",
    0x21: "TAKE",
    0x22: "TERNARY",
    0x23: "TOPK",
    0x24: "TRANSPOSE",
    0x25: "TRILU",
    0x26: "UNARY",
    0x27: "GRU",
    0x28: "TFLITE_DETECTION_POSTPROCESS",
    0x29: "LAYER_NORMALIZATION",
    0x2A: "COMPRESS",
    0x2B: "GATHER_ELEMENTS",
}

# fields after the u16 funct, per decoded funct: struct format and names ("r*" = a shape register)
_TENSOR_FIELDS = {
    0x01: (
        "<B6BBff",
        "dtype r_shape_a r_strides_a r_shape_b r_strides_b r_shape_out r_strides_out op clamp_lo clamp_hi",
    ),
    0x03: ("<IHBB", "function module n_in n_out"),
    0x09: ("<BBBB", "dtype r_shape r_strides r_strides_out"),
    0x0B: ("<BBBBB", "dtype_in dtype_out r_shape r_strides r_strides_out"),
    0x13: ("<BBBBBB", "dtype r_shape r_strides r_strides_out r_paddings mode"),
    0x14: ("<BBBBB", "dtype_in dtype_out r_shape r_strides r_strides_out"),
    0x17: ("<BBBBBB?", "dtype r_shape r_strides r_strides_out op r_axis keep_dims"),
    0x1E: ("<BBBBBBB", "dtype r_shape r_strides r_strides_out r_begin r_end r_step"),
}


@dataclass(frozen=True)
class BufferRef:
    location: str  # input, output, data, rdata
    offset: int  # bytes into that pool


@dataclass(frozen=True)
class Operand:
    buffer: BufferRef
    dtype: str
    shape: tuple[int, ...]
    strides: tuple[int, ...]  # in elements

    @property
    def itemsize(self) -> int:
        return _ITEMSIZE[self.dtype]


@dataclass
class TensorOp:
    kind: str  # FUNCTS name
    at: int  # byte offset of the TENSOR instruction in .text
    inputs: list[Operand] = field(default_factory=list)
    outputs: list[Operand] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    decoded: bool = True


class StackVMError(PokedexError):
    def __init__(self, at: int, why: str):
        super().__init__(
            f"stackvm program, byte {at}: {why}",
            "report this with the build folder (compiler/ holds the dump); build --format v5 meanwhile",
        )


def decode(text: bytes) -> list[TensorOp]:
    """Every TENSOR instruction of ``text`` (a stackvm function body), operands resolved."""
    stack: list = []
    regs: dict[int, tuple] = {}
    pads: dict[int, tuple] = {}
    ops: list[TensorOp] = []
    i = 0

    def take(fmt: str):
        nonlocal i
        n = struct.calcsize(fmt)
        if i + n > len(text):
            raise StackVMError(i, f"instruction operands run past the end of the program ({len(text)} bytes)")
        v = struct.unpack_from(fmt, text, i)
        i += n
        return v

    def pop(at: int, what: str):
        if not stack:
            raise StackVMError(at, f"the stack is empty where {what} is expected")
        return stack.pop()

    def reg(at: int, r: int) -> tuple:
        if r not in regs:
            raise StackVMError(at, f"shape register {r} is read before it is written")
        return regs[r]

    while i < len(text):
        at = i
        (op,) = take("<B")
        if op == 0x00:  # NOP
            continue
        if op == 0x02:
            stack.append(("i", take("<i")[0]))
        elif op in (0x03, 0x04):
            stack.append(("i", op - 0x03))
        elif op == 0x05:
            stack.append(("f", take("<f")[0]))
        elif op == 0x17:
            loc, _sub, off = take("<BBI")
            if loc not in LOCATIONS:
                raise StackVMError(at, f"LEA_BUFFER to unknown location {loc}")
            stack.append(("b", BufferRef(LOCATIONS[loc], off)))
        elif op == 0x2F:
            v = pop(at, "a value to duplicate")
            stack += [v, v]
        elif op == 0x30:
            pop(at, "a value to drop")
        elif op in (0x31, 0x32):
            r, rank = take("<BB")
            if op == 0x31:
                vals = [pop(at, "a dimension") for _ in range(rank)][::-1]
                if any(k != "i" for k, _ in vals):
                    raise StackVMError(at, "STSHAPE pops a non-integer")
                regs[r] = tuple(v for _, v in vals)
            else:
                vals = [pop(at, "a padding") for _ in range(3 * rank)][::-1]
                if any(k != "i" for k, _ in vals):
                    raise StackVMError(at, "STPADDINGS pops a non-integer")
                v = [x for _, x in vals]
                pads[r] = tuple((v[3 * a], v[3 * a + 1], v[3 * a + 2]) for a in range(rank))
        elif op == 0x59:  # RET
            break
        elif op == 0x5E:
            (funct,) = take("<H")
            name = FUNCTS.get(funct, f"0x{funct:04X}")
            if funct not in _TENSOR_FIELDS:
                # its operand layout is not decoded here, so nothing after it can be read
                ops.append(TensorOp(name, at, decoded=False))
                break
            fmt, names = _TENSOR_FIELDS[funct]
            f = dict(zip(names.split(), take(fmt)))
            ops.append(_tensor(name, at, f, pop, reg, pads))
            if stack:
                raise StackVMError(at, f"{name} left {len(stack)} values on the stack")
        else:
            raise StackVMError(at, f"opcode 0x{op:02X} is not one nncase's K210 flow emits in a main program")
    return ops


def _dt(at: int, code: int) -> str:
    if code not in DTYPES:
        raise StackVMError(at, f"unknown datatype {code}")
    return DTYPES[code][0]


def _buf(at, pop, what) -> BufferRef:
    k, v = pop(at, what)
    if k != "b":
        raise StackVMError(at, f"{what} is not a buffer address")
    return v


def _tensor(name: str, at: int, f: dict, pop, reg, pads) -> TensorOp:
    o = TensorOp(name, at)
    if name == "CALL":
        # per operand, pushed: LEA_BUFFER, LDC_I4 dtype, (shape) LDC_I4 reg, (strides) LDC_I4 reg;
        # popped outputs last-first, then inputs
        def operand() -> Operand:
            (_, r_strides), (_, r_shape), (_, dt) = pop(at, "strides"), pop(at, "shape"), pop(at, "datatype")
            buf = _buf(at, pop, "a call operand")
            return Operand(buf, _dt(at, dt), reg(at, r_shape), reg(at, r_strides))

        outs = [operand() for _ in range(f["n_out"])][::-1]
        ins = [operand() for _ in range(f["n_in"])][::-1]
        o.inputs, o.outputs = ins, outs
        o.params = {"function": f["function"], "module": f["module"]}
        return o
    if name == "BINARY":
        out, b, a = (_buf(at, pop, w) for w in ("the output", "input b", "input a"))
        dt = _dt(at, f["dtype"])
        o.inputs = [
            Operand(a, dt, reg(at, f["r_shape_a"]), reg(at, f["r_strides_a"])),
            Operand(b, dt, reg(at, f["r_shape_b"]), reg(at, f["r_strides_b"])),
        ]
        o.outputs = [Operand(out, dt, reg(at, f["r_shape_out"]), reg(at, f["r_strides_out"]))]
        o.params = {"op": BINARY_OPS.get(f["op"], str(f["op"])), "clamp": (f["clamp_lo"], f["clamp_hi"])}
        return o
    if name in ("QUANTIZE", "DEQUANTIZE"):
        (_, b), (_, s) = pop(at, "the bias"), pop(at, "the scale")
        out, src = _buf(at, pop, "the output"), _buf(at, pop, "the input")
        shape = reg(at, f["r_shape"])
        o.inputs = [Operand(src, _dt(at, f["dtype_in"]), shape, reg(at, f["r_strides"]))]
        o.outputs = [Operand(out, _dt(at, f["dtype_out"]), shape, reg(at, f["r_strides_out"]))]
        # quantize pushes 1/scale and the zero point; dequantize the scale and -zero_point*scale
        o.params = {"scale": float(s), "bias": float(b)}
        return o
    if name == "PAD":
        value = pop(at, "the pad value")
    if name == "REDUCE":
        init = pop(at, "the initial value")
    out, src = _buf(at, pop, "the output"), _buf(at, pop, "the input")
    dt = _dt(at, f["dtype"])
    shape = reg(at, f["r_shape"])
    o.inputs = [Operand(src, dt, shape, reg(at, f["r_strides"]))]
    if name == "COPY":
        o.outputs = [Operand(out, dt, shape, reg(at, f["r_strides_out"]))]
    elif name == "SLICE":
        begin, end, step = reg(at, f["r_begin"]), reg(at, f["r_end"]), reg(at, f["r_step"])
        begin = tuple(_signed(v) for v in begin)
        end = tuple(_signed(v) for v in end)
        step = tuple(_signed(v) for v in step)
        oshape = tuple(len(range(b, e, s)) for b, e, s in zip(begin, end, step))
        o.outputs = [Operand(out, dt, oshape, reg(at, f["r_strides_out"]))]
        o.params = {"begin": begin, "end": end, "step": step}
    elif name == "PAD":
        if f["r_paddings"] not in pads:
            raise StackVMError(at, f"padding register {f['r_paddings']} is read before it is written")
        p = pads[f["r_paddings"]]
        oshape = tuple(d + b + a + (d - 1) * m for d, (b, a, m) in zip(shape, p))
        o.outputs = [Operand(out, dt, oshape, reg(at, f["r_strides_out"]))]
        o.params = {"paddings": p, "mode": PAD_MODES.get(f["mode"], str(f["mode"])), "value": value}
    elif name == "REDUCE":
        axes = tuple(_signed(v) for v in reg(at, f["r_axis"]))
        axes = tuple(a % len(shape) for a in axes)
        oshape = tuple(1 if a in axes else d for a, d in enumerate(shape) if f["keep_dims"] or a not in axes)
        o.outputs = [Operand(out, dt, oshape, reg(at, f["r_strides_out"]))]
        o.params = {
            "op": REDUCE_OPS.get(f["op"], str(f["op"])),
            "axes": axes,
            "keep_dims": f["keep_dims"],
            "init": init,
        }
    return o


def _signed(v: int) -> int:
    """Shape registers hold size_t; slice ends and steps may be negative int32 stored in them."""
    v &= 0xFFFFFFFFFFFFFFFF
    return v - (1 << 64) if v >= 1 << 63 else v
