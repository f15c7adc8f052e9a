"""The stackvm decoder on hand-assembled programs laid out as nncase 1.9's emitters write them
(docs/notes/nncase-stackvm.md): operands resolved, and malformed programs refused by offset."""

from __future__ import annotations

import struct

import pytest

from pokedex_host.kmodel.stackvm import StackVMError, decode


def lea(loc, off):
    return struct.pack("<BBBI", 0x17, loc, 0, off)


def ldc(v):
    return struct.pack("<Bi", 0x02, v)


def ldr(v):
    return struct.pack("<Bf", 0x05, v)


def stshape(reg, values):
    return b"".join(ldc(v) for v in values) + struct.pack("<BBB", 0x31, reg, len(values))


def stpaddings(reg, pads):
    return b"".join(ldc(b) + ldc(a) + ldc(0) for b, a in pads) + struct.pack("<BBB", 0x32, reg, len(pads))


def tensor(funct, fmt, *fields):
    return struct.pack("<BH", 0x5E, funct) + struct.pack(fmt, *fields)


SHAPE = (1, 8, 2, 2)
STRIDES = (32, 4, 2, 1)


def test_dequantize_slice_pad_quantize_and_call():
    prog = (
        # call function 1 of module 1: one input (data @0, u8 1x8x2x2), one output (data @64)
        lea(3, 0)
        + ldc(4)
        + stshape(0, SHAPE)
        + ldc(0)
        + stshape(1, STRIDES)
        + ldc(1)
        + lea(3, 64)
        + ldc(4)
        + stshape(2, SHAPE)
        + ldc(2)
        + stshape(3, STRIDES)
        + ldc(3)
        + tensor(0x03, "<IHBB", 1, 1, 1, 1)
        # dequantize u8 -> f32
        + lea(3, 64)
        + lea(3, 128)
        + stshape(0, SHAPE)
        + stshape(1, STRIDES)
        + stshape(2, STRIDES)
        + ldr(0.5)
        + ldr(-3.0)
        + tensor(0x0B, "<5B", 4, 9, 0, 1, 2)
        # slice [.., 0:2:2, 1:2] -> 1x8x1x1
        + lea(3, 128)
        + lea(3, 512)
        + stshape(0, SHAPE)
        + stshape(1, STRIDES)
        + stshape(2, (8, 1, 1, 1))
        + stshape(3, (0, 0, 0, 1))
        + stshape(4, (1, 8, 2, 2))
        + stshape(5, (1, 1, 2, 1))
        + tensor(0x1E, "<7B", 9, 0, 1, 2, 3, 4, 5)
        # pad H and W by (0, 3) with an int 0, as pad_conv writes it
        + lea(3, 512)
        + lea(3, 1024)
        + ldc(0)
        + stshape(0, (1, 8, 1, 1))
        + stshape(1, (8, 1, 1, 1))
        + stshape(2, (128, 16, 4, 1))
        + stpaddings(0, [(0, 0), (0, 0), (0, 3), (0, 3)])
        + tensor(0x13, "<6B", 9, 0, 1, 2, 0, 0)
        # quantize f32 -> u8
        + lea(3, 1024)
        + lea(1, 0)
        + stshape(0, (1, 8, 4, 4))
        + stshape(1, (128, 16, 4, 1))
        + stshape(2, (128, 16, 4, 1))
        + ldr(40.0)
        + ldr(7.0)
        + tensor(0x14, "<5B", 9, 4, 0, 1, 2)
        # mean over H, W
        + lea(3, 128)
        + lea(1, 256)
        + ldr(0.0)
        + stshape(0, SHAPE)
        + stshape(1, STRIDES)
        + stshape(2, (8, 1, 1, 1))
        + stshape(3, (2, 3))
        + tensor(0x17, "<6B?", 9, 0, 1, 2, 0, 3, True)
    )
    ops = decode(prog)
    assert [o.kind for o in ops] == ["CALL", "DEQUANTIZE", "SLICE", "PAD", "QUANTIZE", "REDUCE"]
    call, deq, sl, pad, q, red = ops
    assert call.params == {"function": 1, "module": 1}
    assert call.inputs[0].buffer.offset == 0 and call.outputs[0].buffer.offset == 64
    assert call.inputs[0].shape == SHAPE and call.outputs[0].strides == STRIDES and call.inputs[0].dtype == "u8"
    assert deq.params == {"scale": 0.5, "bias": -3.0} and deq.outputs[0].dtype == "f32"
    assert sl.outputs[0].shape == (1, 8, 1, 1) and sl.params["begin"] == (0, 0, 0, 1)
    assert sl.params["step"] == (1, 1, 2, 1)
    assert pad.params["paddings"] == ((0, 0, 0), (0, 0, 0), (0, 3, 0), (0, 3, 0))
    assert pad.params["value"] == ("i", 0) and pad.outputs[0].shape == (1, 8, 4, 4)
    assert q.params == {"scale": 40.0, "bias": 7.0} and q.outputs[0].buffer.location == "output"
    assert red.params["op"] == "mean" and red.params["axes"] == (2, 3) and red.outputs[0].shape == (1, 8, 1, 1)


def test_an_op_outside_the_k210_glue_is_named_not_decoded():
    ops = decode(lea(3, 0) + lea(3, 64) + tensor(0x24, "<B", 9))  # TRANSPOSE
    assert ops[0].kind == "TRANSPOSE" and not ops[0].decoded


def test_malformed_programs_are_refused_with_the_offset():
    with pytest.raises(StackVMError, match="byte 0: opcode 0xEE"):
        decode(b"\xee")
    with pytest.raises(StackVMError, match="run past the end"):
        decode(b"\x02\x01")
    with pytest.raises(StackVMError, match="shape register 0 is read before"):
        decode(lea(3, 0) + lea(3, 8) + tensor(0x09, "<4B", 4, 0, 1, 2))
    with pytest.raises(StackVMError, match="stack is empty"):
        decode(tensor(0x09, "<4B", 4, 0, 1, 2))


def test_main_memory_regions_share_bytes_only_when_their_lives_do_not_overlap():
    from pokedex_host.kmodel.from_nncase import _Emitter
    from pokedex_host.kmodel.v3 import LayerType

    em = _Emitter()
    a, b, c = em.alloc(100), em.alloc(40), em.alloc(64)  # laid out one after another: 0, 104, 144
    em.cpu_layer(LayerType.DEQUANTIZE, {"in": a, "out": a, "count": 1, "scale": 0.0, "bias": 1.0})  # 0: a
    em.cpu_layer(LayerType.CONCAT, {"out": b, "input_count": 1}, struct.pack("<2I", a + 8, 16))  # 1: a, b
    em.cpu_layer(LayerType.REQUANTIZE, {"in": b, "out": c, "count": 8}, bytes(256))  # 2: b, c
    layers, outputs, size = em.pack([(c, 64)])
    f = [lay.fields for lay in layers]
    new_a, new_b, new_c = f[0]["in"], f[1]["out"], f[2]["out"]
    assert new_a == 0 and new_b == 104  # a and b are both used by layer 1
    assert new_c == 0  # a is dead after layer 1: c takes its place
    assert struct.unpack("<2I", layers[1].extra) == (new_a + 8, 16)
    assert outputs == [(new_c, 64)] and size == 144 < em.top
    assert em.split([(96, 20)]) == [(96, 8), (104, 12)]  # a gather never spans two regions
    assert not em.within(96, 20) and em.within(104, 40)
