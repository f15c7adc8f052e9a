"""kmodel v3: KPU arithmetic and SRAM layout, the writer <-> reader round trip, the interpreter
(on generated models and on Kendryte's shipped demos), and fuzzing. No compiler needed here;
the checks against nncase's simulator are in test_kmodel_v3_build.py."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from conftest import SHARED
from v3_fixtures import conv_layer, random_act, small_model, spread

from pokedex_host.kmodel import KmodelFormatError, v3
from pokedex_host.kmodel import kpu as K
from pokedex_host.kmodel.interp import Interpreter
from pokedex_host.kmodel.write_v3 import CpuLayerSpec, ModelSpec, write

REF = SHARED / "data" / "k210_reference"


# -- KPU SRAM layout ---------------------------------------------------------------------------


def _addr(width, height, c, y, x):
    """Byte address of pixel (c, y, x), straight from the layout rule in kpu.py's docstring."""
    if width <= 16:
        groups, row_len, pitch = 4, 1, 16
    elif width <= 32:
        groups, row_len, pitch = 2, 1, 32
    else:
        groups, row_len, pitch = 1, (width + 63) // 64, 64
    return (c // groups) * row_len * height * 64 + (c % groups) * pitch + y * row_len * 64 + x


@pytest.mark.parametrize(
    "w,h,c",
    [(1, 1, 1), (4, 4, 5), (16, 3, 7), (17, 2, 3), (32, 5, 2), (33, 2, 2), (64, 2, 3), (100, 3, 2), (224, 2, 3)],
)
def test_layout_matches_the_rule_and_round_trips(w, h, c):
    rng = np.random.default_rng(w * 100 + c)
    fmap = rng.integers(0, 256, (c, h, w), dtype=np.uint8)
    ram = np.full(K.KPU_RAM_BYTES, 0xAA, np.uint8)
    K.upload(ram, 3, fmap)
    for ch in range(c):
        for y in range(h):
            for x in range(w):
                assert ram[3 * 64 + _addr(w, h, ch, y, x)] == fmap[ch, y, x]
    assert np.array_equal(K.download(ram, 3, w, h, c), fmap)
    # bytes outside the map's slots are untouched
    touched = {3 * 64 + _addr(w, h, ch, y, x) for ch in range(c) for y in range(h) for x in range(w)}
    assert all(ram[i] == 0xAA for i in range(3 * 64, 3 * 64 + K.map_bytes(w, h, c)) if i not in touched)
    assert K.map_bytes(w, h, c) >= len(touched)


def test_a_map_past_the_kpu_sram_is_refused():
    ram = np.zeros(K.KPU_RAM_BYTES, np.uint8)
    with pytest.raises(K.KPURangeError, match="past the 2 MiB"):
        K.upload(ram, 32767, np.zeros((2, 4, 4), np.uint8))


# -- arithmetic --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "v,s,want",
    [
        (5, 1, 2),
        (7, 1, 4),
        (6, 2, 2),
        (10, 2, 2),
        (11, 2, 3),
        (9, 2, 2),
        (-3, 1, -2),
        (-5, 2, -3),
        (-8, 2, -2),
        (123, 0, 123),
        (2**40 + 2**39, 40, 2),
    ],
)
def test_round_shift_is_nncases_banker_rounding(v, s, want):
    # includes nncase's treatment of negatives (-5 >> 2 with rounding gives -3): the simulator's result
    assert int(K.round_shift(np.array([v], np.int64), np.array([s]))[0]) == want
    assert int(K.round_shift(np.array([v], np.int64), s)[0]) == want


def _conv_reference(x, w, args, out_c):
    """The KPU accumulator by direct loops, from the formula in kpu.py's docstring."""
    c, h, wd = x.shape
    k, p = args.kernel, args.kernel // 2
    out = np.zeros((out_c, h, wd), np.int64)
    for o in range(out_c):
        ins = [o] if args.depthwise else range(c)
        for y in range(h):
            for xx in range(wd):
                acc = sx = sw = 0
                for i_n, i in enumerate(ins):
                    for ky in range(k):
                        for kx in range(k):
                            yy, xk = y + ky - p, xx + kx - p
                            xv = int(x[i, yy, xk]) if 0 <= yy < h and 0 <= xk < wd else args.pad_value
                            wv = int(w[o, 0 if args.depthwise else i_n, ky, kx])
                            acc += xv * wv
                            sx += xv
                            sw += wv
                out[o, y, xx] = (
                    acc
                    + ((args.arg_x * sx) >> args.shift_x)
                    + ((args.arg_w * sw) >> args.shift_w)
                    + args.arg_add * len(ins)
                )
    return out


@pytest.mark.parametrize("kernel,depthwise", [(3, False), (1, False), (3, True)])
def test_conv_matches_direct_loops(kernel, depthwise):
    rng = np.random.default_rng(kernel + 10 * depthwise)
    c, out_c, h, wd = 3, 3 if depthwise else 4, 5, 6
    x = rng.integers(0, 256, (c, h, wd), dtype=np.uint8)
    w = rng.integers(0, 256, (out_c, 1 if depthwise else c, kernel, kernel), dtype=np.uint8)
    args = K.ConvArgs(depthwise, kernel, 0, 37, -300, 3, 77, 2, -12345)
    assert np.array_equal(K.conv(x, w.ravel(), args, out_c), _conv_reference(x, w, args, out_c))


def test_batch_norm_and_activation_follow_the_tables():
    bn = K.BatchNorm(np.array([3, -2]), np.array([1, 0]), np.array([10, 1000]))
    # segment 0 catches everything below 0 (output 0); segment 1: y = round((v - 0) * 1 >> 0) + 5
    # segment 2 from v > 100: y = round((v - 100) * 2 >> 2) + 50
    start = np.array([-(2**35), 0, 100] + [2**34 + i for i in range(13)])
    mul = np.array([0, 1, 2] + [0] * 13)
    shift = np.array([0, 0, 2] + [0] * 13)
    add = np.array([0, 5, 50] + [255] * 13)
    act = K.Activation(start, mul, shift, add)
    acc = np.array([[[-20, 0, 30, 200]], [[0, 100, 600, 450]]], np.int64)
    got = K.bn_act(acc, bn, act)
    v0 = [(-60 >> 1) + 10, 10, (90 >> 1) + 10, (600 >> 1) + 10]  # -20, 10, 55, 310
    v1 = [1000, 800, -200, 100]

    def f(v):
        if v > 100:
            return min(255, int(K.round_shift(np.array([(v - 100) * 2]), 2)[0]) + 50)
        if v > 0:
            return v + 5
        return 0

    assert got.tolist() == [[[f(v) for v in v0]], [[f(v) for v in v1]]]
    assert K.decode_bn(K.encode_bn(bn), 2).mul.tolist() == [3, -2]
    back = K.decode_act(K.encode_act(act))
    assert back.start_x.tolist() == start.tolist() and back.add.tolist() == add.tolist()


def test_unsorted_activation_table_uses_the_last_matching_segment():
    start = np.array([-(2**35)] + [50] * 15)
    start[3] = 10  # segment 3 (start 10) comes after segments 1, 2 (start 50): v = 60 -> segment 15
    act = K.Activation(start, np.zeros(16, np.int64), np.zeros(16, np.int64), np.arange(16) * 10)
    v = np.array([[[5, 20, 60]]], np.int64)
    bn = K.BatchNorm(np.array([1]), np.array([0]), np.array([0]))
    assert K.bn_act(v, bn, act).tolist() == [[[0, 30, 150]]]


@pytest.mark.parametrize(
    "pool,want",
    [
        (0, [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]]),
        (1, [[6, 8], [14, 16]]),
        (2, [[3, 5], [11, 13]]),
        (3, [[16]]),
        (4, [[8]]),
        (5, [[1, 3], [9, 11]]),
        (6, [[2, 4], [10, 12]]),
        (7, [[1]]),
        (8, [[3, 4, 5, 6], [7, 8, 9, 10], [11, 12, 13, 14], [13, 14, 15, 16]]),
        (9, [[6, 7, 8, 8], [10, 11, 12, 12], [14, 15, 16, 16], [14, 15, 16, 16]]),
    ],
)
def test_pools(pool, want):
    y = np.arange(1, 17, dtype=np.uint8).reshape(1, 4, 4)
    assert K.pool(y, pool)[0].tolist() == want


@pytest.mark.parametrize("pool", [5, 7])
@pytest.mark.parametrize("kernel,depthwise", [(3, False), (1, False), (3, True)])
def test_a_left_top_pool_computes_only_the_outputs_it_keeps(pool, kernel, depthwise):
    # conv_layer computes every s-th output only; it must equal the whole layer then the pool,
    # including odd sizes (the pool drops the last row / column)
    rng = np.random.default_rng(pool + kernel)
    c, out_c = 4, 4 if depthwise else 6
    x = rng.integers(0, 256, (3, c, 9, 11), dtype=np.uint8)
    w = rng.integers(0, 256, out_c * (1 if depthwise else c) * kernel * kernel, dtype=np.uint8)
    args = K.ConvArgs(depthwise, kernel, pool, 7, -128, 0, 3, 1, -50)
    bn = K.BatchNorm(rng.integers(2**10, 2**12, out_c), rng.integers(2, 6, out_c), rng.integers(-(2**12), 2**12, out_c))
    act = K.Activation(
        np.array([-(2**35), 0] + [2**20 + 1000 * i for i in range(14)]),
        np.array([0, 3] + [1] * 14),
        np.array([0, 4] + [0] * 14),
        np.array([0, 0] + [250] * 14),
    )
    kern = K.ConvKernel(w, args, c, out_c)
    whole = K.pool(K.bn_act(K.conv(x, w, args, out_c), bn, act), pool)
    assert np.array_equal(K.conv_layer(kern, x, bn, act), whole)
    assert whole.shape == (3, out_c, 9 // K.POOL_STRIDE[pool], 11 // K.POOL_STRIDE[pool])


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("kernel,depthwise", [(3, False), (1, False), (3, True)])
def test_the_fused_layer_equals_the_accumulators_through_the_tables(kernel, depthwise, ordered):
    # the interpreter's channels-last kernels do batch norm + activation per pixel over a vector of
    # channels (segments 0/1 for all, the rest redone); 13 channels leave a vector tail, random
    # tables put outputs in every segment, a shuffled table takes the general path
    rng = np.random.default_rng(kernel + 2 * depthwise + 4 * ordered)
    c = 13
    out_c = c if depthwise else 11
    x = rng.integers(0, 256, (4, c, 7, 9), dtype=np.uint8)
    w = rng.integers(0, 256, out_c * (1 if depthwise else c) * kernel * kernel, dtype=np.uint8)
    args = K.ConvArgs(depthwise, kernel, 0, 9, -200, 2, 50, 1, -999)
    act = K.decode_act(random_act(rng))
    if not ordered:
        order = rng.permutation(15) + 1
        act = K.Activation(*(np.concatenate([t[:1], t[order]]) for t in (act.start_x, act.mul, act.shift, act.add)))
    acc = K.conv(x, w, args, out_c)
    lo, hi = np.percentile(acc, [5, 95])  # a batch norm that spreads the sums over the table's range
    bn = K.BatchNorm(
        np.full(out_c, int(2**22 // max(hi - lo, 1))), np.full(out_c, 0), rng.integers(-(2**20), 2**20, out_c)
    )
    want = K.bn_act(acc, bn, act)
    segs = (
        np.searchsorted(act.start_x, ((acc * bn.mul[:, None, None]) >> 0) + bn.add[:, None, None]) if ordered else None
    )
    assert segs is None or len(np.unique(segs)) >= 4  # the tables are exercised beyond segments 0 and 1
    assert np.array_equal(K.conv_layer(K.ConvKernel(w, args, c, out_c), x, bn, act), want)


def _eager_run(data: bytes, images: np.ndarray, index: int) -> np.ndarray:
    """Convolution layers run the plain way: every input read from SRAM, every output stored."""
    m = v3.parse(data)
    it = Interpreter(data)
    ram = np.zeros((len(images), K.KPU_RAM_BYTES), np.uint8)
    main = np.zeros((len(images), m.main_mem_usage), np.uint8)
    K.upload(ram, it._convs[0].src, images)
    for lay in m.layers:
        cv = it._convs[lay.index]
        y = K.conv_layer(cv.kernel, K.download(ram, cv.src, *cv.in_shape))
        K.upload(ram, cv.dst, y)
        if cv.main_out is not None:
            main[:, cv.main_out : cv.main_out + y[0].size] = y.reshape(len(images), -1)
    a, size = m.outputs[index]
    return main[:, a : a + size]


@pytest.mark.parametrize("overlap", [False, True])
def test_sram_reads_see_every_earlier_write(overlap):
    # layer 2 reads layer 0's map again after layer 1 wrote elsewhere (kept map) or over part of it
    # (SRAM, with layer 1's bytes); layer 3 reads layer 1's map. The interpreter keeps maps and stores
    # outputs lazily; it must give what storing and reloading every map gives.
    rng = np.random.default_rng(7 + overlap)
    x = rng.integers(0, 256, (3, 3, 12, 12), dtype=np.uint8)
    l0, y0 = spread(conv_layer(rng, (12, 12, 3), 6, pool=5, src=0, dst=100)[0], x)  # 6x6x6: lines 100-111
    l1, y1 = spread(conv_layer(rng, (6, 6, 6), 5, kernel=1, src=100, dst=104 if overlap else 200)[0], y0)
    l2, _ = spread(conv_layer(rng, (6, 6, 6), 6, depthwise=True, src=100, dst=300, main_out=0)[0], y0)
    l3, _ = spread(conv_layer(rng, (6, 6, 5), 4, kernel=1, src=104 if overlap else 200, dst=400, main_out=256)[0], y1)
    data = write(ModelSpec([l0, l1, l2, l3], [(0, 6 * 6 * 6), (256, 6 * 6 * 4)], 512))
    assert len(np.unique(y0)) > 100 and len(np.unique(y1)) > 100
    it = Interpreter(data)
    for i in range(2):
        assert np.array_equal(it.run_many(x, i), _eager_run(data, x, i))


def test_a_batch_gives_each_images_own_outputs():
    it = Interpreter(small_model(seed=3))
    x = np.random.default_rng(1).integers(0, 256, (5, *it.input_shape), dtype=np.uint8)
    assert np.array_equal(it.run_many(x), np.stack([it.run_output(img) for img in x]))
    assert np.array_equal(it.run_many(x[2:3])[0], it.run_output(x[2]))


# -- writer <-> reader ---------------------------------------------------------------------------


def test_writer_output_reads_back_field_for_field():
    rng = np.random.default_rng(3)
    layers, shapes = [], []
    spec_convs = []
    for i, (shape, oc, kern, dw, pool) in enumerate(
        [((20, 10, 3), 6, 3, False, 1), ((10, 5, 6), 6, 3, True, 0), ((10, 5, 6), 9, 1, False, 0)]
    ):
        lay, out = conv_layer(
            rng,
            shape,
            oc,
            kernel=kern,
            depthwise=dw,
            pool=pool,
            src=10 * i,
            dst=10 * i + 5,
            main_out=64 if i == 2 else None,
        )
        layers.append(lay)
        spec_convs.append(lay)
        shapes.append(out)
    layers.append(
        CpuLayerSpec(
            v3.LayerType.DEQUANTIZE, {"flags": 0, "in": 64, "out": 512, "count": 450, "scale": 0.25, "bias": -3.5}
        )
    )
    layers.append(
        CpuLayerSpec(
            v3.LayerType.CONCAT, {"flags": 0, "out": 4000, "input_count": 2}, struct.pack("<4I", 512, 100, 612, 200)
        )
    )
    spec = ModelSpec(layers, [(4000, 300), (512, 1800)], 4400)
    data = write(spec)
    m = v3.parse(data)
    assert (m.version, m.flags, m.arch, m.main_mem_usage, m.outputs) == (3, 1, 0, 4400, ((4000, 300), (512, 1800)))
    assert m.max_start_address == 0 and [lay.name for lay in m.layers] == ["K210_CONV"] * 3 + ["DEQUANTIZE", "CONCAT"]
    assert sum(lay.body_size for lay in m.layers) == len(data) - (28 + 8 * 2 + 8 * 5)
    for lay, spec_l in zip(m.conv_layers, spec_convs):
        c = lay.conv
        assert c.layer_offset % 8 == 0 and c.weights_offset % 128 == 0 and c.bn_offset % 128 == 0
        assert c.act_offset % 256 == 0
        assert c.registers.raw == spec_l.registers  # the relocated address fields were zero already
        assert data[c.weights_offset : c.weights_offset + c.weights_size] == spec_l.weights
        assert data[c.bn_offset : c.bn_offset + c.bn_size] == spec_l.bn
        act = data[c.act_offset : c.act_offset + 144]
        assert act[128:] == spec_l.act[128:]
        assert [w >> 60 for w in struct.unpack_from("<16Q", act)] == [0] * 16
        assert [w & ((1 << 60) - 1) for w in struct.unpack_from("<16Q", act)] == [
            w & ((1 << 60) - 1) for w in struct.unpack_from("<16Q", spec_l.act)
        ]
        assert (c.flags, c.main_mem_out_address) == ((1, 64) if spec_l.main_mem_out is not None else (0, 0))
    deq = m.layers[3].fields
    assert (deq["in"], deq["out"], deq["count"], deq["scale"], deq["bias"]) == (64, 512, 450, 0.25, -3.5)
    assert m.layers[4].fields == {"flags": 0, "out": 4000, "input_count": 2}


def test_writer_zeroes_the_addresses_the_loader_fills_in_and_the_unused_act_bits():
    rng = np.random.default_rng(0)
    lay, _ = conv_layer(rng, (8, 8, 3), 4)
    regs = list(lay.registers)
    regs[4] |= 0xDEAD << 32
    regs[7] |= 0xBEEF << 32
    lay.registers = tuple(regs)
    lay.act = struct.pack("<16Q", *([0xF << 60] * 16)) + bytes(16)
    m = v3.parse(write(ModelSpec([lay], [(0, 4)], 64)))
    f = m.conv_layers[0].conv.registers.fields
    assert f["bwsx_base_addr"] == 0 and f["active_addr"] == 0 and f["para_start_addr"] == 0


# -- interpreter ---------------------------------------------------------------------------------


def test_small_model_runs_and_the_float_tail_is_kpu_c():
    data = small_model()
    it = Interpreter(data)
    assert it.input_shape == (3, 16, 16) and it.output_dtype == np.float32
    x = np.random.default_rng(1).integers(0, 256, (3, 16, 16), dtype=np.uint8)
    res = it.run(x, trace=True)
    head = res.trace[2][2]  # the 1x1 head's u8 map (10 x 8 x 8)
    deq = head.reshape(-1).astype(np.float32) * np.float32(0.05) + np.float32(-6.4)
    want = np.zeros(10, np.float32)
    for i in range(64):  # kpu.c: left-to-right float32 sum, then divide
        want = (want + deq.reshape(10, 64)[:, i]).astype(np.float32)
    want = want / np.float32(64)
    assert np.array_equal(np.frombuffer(res.outputs[0], "<f4"), want)
    # the stages chain through KPU SRAM: layer 1 read what layer 0 wrote at line 64
    l0 = res.trace[0][2]
    assert l0.shape == (8, 8, 8)
    assert np.array_equal(it.run(x).outputs[0], res.outputs[0])  # runs are independent


def test_layout_and_weight_loading_registers_must_fit_the_shapes():
    data = bytearray(small_model())
    m = v3.parse(bytes(data))
    off = m.conv_layers[1].conv.layer_offset + 7 * 8  # kernel_calc_type_cfg: channel_switch_addr
    good = struct.unpack_from("<Q", data, off)[0]
    struct.pack_into("<Q", data, off, good + 1)
    with pytest.raises(KmodelFormatError, match="channel_switch_addr is 9, but .* need 8"):
        Interpreter(bytes(data))
    struct.pack_into("<Q", data, off, good)
    off5 = m.conv_layers[0].conv.layer_offset + 5 * 8  # kernel_load_cfg: para_size
    struct.pack_into("<Q", data, off5, struct.unpack_from("<Q", data, off5)[0] & ~(((1 << 17) - 1) << 15))
    with pytest.raises(KmodelFormatError, match="does not cover"):
        Interpreter(bytes(data))


def test_wrong_input_is_refused():
    it = Interpreter(small_model())
    with pytest.raises(KmodelFormatError, match="3x16x16"):
        it.run(np.zeros((3, 8, 8), np.uint8))


@pytest.mark.skipif(not REF.is_dir(), reason="../shared reference data absent")
@pytest.mark.parametrize(
    "name,first,last,outputs",
    [
        ("face_detect", ((320, 240, 3), (160, 120, 16)), (30, 15, 20), 9000),
        ("kpu_yolo", ((320, 240, 3), (160, 120, 16)), (125, 7, 10), 8750),
        ("face_mask_detect_5", ((320, 256, 3), (160, 128, 8)), (35, 8, 10), 2800),
    ],
)
def test_kendryte_demo_models_run(name, first, last, outputs):
    data = (REF / f"{name}.v3.kmodel").read_bytes()
    it = Interpreter(data, path=name)
    c0 = it.model.conv_layers[0].conv.registers
    assert (c0.in_shape, c0.out_shape) == first
    x = np.random.default_rng(0).integers(0, 256, it.input_shape, dtype=np.uint8)
    res = it.run(x, trace=True)
    assert res.trace[-2][2].shape == last  # the last conv's map (channels, height, width)
    y = np.frombuffer(res.outputs[0], it.output_dtype)
    assert y.size == outputs and np.isfinite(y).all()
    # DEQUANTIZE of u8: every value is scale * q + bias for an integer q in 0..255
    deq = it.model.layers[-1].fields
    q = (y - np.float32(deq["bias"])) / np.float32(deq["scale"])
    assert np.abs(q - np.round(q)).max() < 1e-2 and q.min() > -0.5 and q.max() < 255.5
    # and a different image gives a different answer
    y2 = np.frombuffer(it.run(255 - x).outputs[0], it.output_dtype)
    assert not np.array_equal(y, y2)


# -- fuzzing -------------------------------------------------------------------------------------


def _fuzz(data: bytes, rounds: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    seen = {"ok": 0, "refused": 0}
    for i in range(rounds):
        b = bytearray(data)
        kind = i % 3
        if kind == 0:  # bit flips
            for _ in range(int(rng.integers(1, 4))):
                p = int(rng.integers(0, len(b)))
                b[p] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:  # flips in the header / table / conv arguments, where they bite
            for _ in range(int(rng.integers(1, 3))):
                p = int(rng.integers(0, min(len(b), 400)))
                b[p] ^= 1 << int(rng.integers(0, 8))
        else:  # truncation
            b = b[: int(rng.integers(0, len(b)))]
        try:
            it = Interpreter(bytes(b))
            x = rng.integers(0, 256, it.input_shape, dtype=np.uint8)
            it.run(x)
            seen["ok"] += 1
        except KmodelFormatError as e:
            assert e.offset >= 0 and e.reason
            seen["refused"] += 1
    return seen


def test_fuzzed_v3_files_never_crash_the_interpreter():
    seen = _fuzz(small_model(seed=5), 600, seed=11)
    assert seen["refused"] > 50 and seen["ok"] > 50, seen


@pytest.mark.skipif(not REF.is_dir(), reason="../shared reference data absent")
def test_fuzzed_kendryte_model_never_crashes_the_interpreter():
    data = (REF / "kpu_yolo.v3.kmodel").read_bytes()
    seen = _fuzz(data, 24, seed=3)
    assert seen["refused"] + seen["ok"] == 24


def test_bad_files_are_refused_with_offset_and_reason():
    data = small_model()
    with pytest.raises(KmodelFormatError, match="version 4"):
        v3.parse(struct.pack("<I", 4) + data[4:])
    with pytest.raises(KmodelFormatError, match="unknown type 77"):
        table = 28 + 8  # one output
        v3.parse(data[:table] + struct.pack("<I", 77) + data[table + 4 :])
    big = bytearray(data)
    struct.pack_into("<I", big, 20, 64 * 2**20)
    with pytest.raises(KmodelFormatError, match="6291456 B of general SRAM") as e:
        v3.parse(bytes(big))
    assert e.value.offset == 20
    with pytest.raises(KmodelFormatError, match="runs past the end|outside the file"):
        v3.parse(data[:200])


def test_cpu_layers_follow_kpu_c():
    """A chain through every CPU layer the interpreter runs, each output checked against kpu.c's
    definition written out in numpy here."""
    T = v3.LayerType
    rng = np.random.default_rng(9)
    conv, (w, h, c) = conv_layer(rng, (4, 4, 3), 4, kernel=1, src=0, dst=8, main_out=0)  # 64 u8 at 0
    fc_w = rng.normal(0, 0.5, (3, 8)).astype(np.float32)
    fc_b = rng.normal(0, 0.5, 3).astype(np.float32)
    table = rng.integers(0, 256, 256, dtype=np.uint8)
    F, G = 100, 2000  # float areas
    layers = [
        conv,
        CpuLayerSpec(T.DEQUANTIZE, {"flags": 0, "in": 0, "out": F, "count": 64, "scale": 0.1, "bias": -6.0}),
        CpuLayerSpec(T.SOFTMAX, {"flags": 0, "in": F, "out": G, "channels": 8}),
        CpuLayerSpec(T.LOGISTIC, {"flags": 0, "in": F, "out": G + 100, "channels": 8}),
        CpuLayerSpec(T.L2_NORMALIZATION, {"flags": 0, "in": F, "out": G + 200, "channels": 8}),
        CpuLayerSpec(
            T.FULLY_CONNECTED,
            {"flags": 0, "in": F, "out": G + 300, "in_channels": 8, "out_channels": 3, "act": 2},
            fc_w.tobytes() + fc_b.tobytes(),
        ),
        CpuLayerSpec(T.ADD, {"flags": 0, "in_a": F, "in_b": G + 200, "out": G + 400, "count": 8}),
        CpuLayerSpec(T.QUANTIZE, {"flags": 0, "in": F, "out": G + 500, "count": 8, "scale": 0.05, "bias": -1.0}),
        CpuLayerSpec(T.REQUANTIZE, {"flags": 0, "in": 0, "out": G + 600, "count": 64}, table.tobytes()),
        CpuLayerSpec(T.K210_REMOVE_PADDING, {"flags": 0, "in": 0, "out": G + 700, "channels": 4}),
        CpuLayerSpec(
            T.TENSORFLOW_FLATTEN, {"flags": 0, "in": F, "out": G + 800, "width": 4, "height": 2, "channels": 2}
        ),
        CpuLayerSpec(T.K210_UPLOAD, {"flags": 0, "in": 0, "kpu_out": 100, "width": 4, "height": 4, "channels": 4}),
    ]
    data = write(ModelSpec(layers, [(G, 32)], 4096))
    it = Interpreter(data)
    res = it.run(rng.integers(0, 256, (3, 4, 4), dtype=np.uint8), trace=True)
    out = {name: y for _, name, y in res.trace}
    q = out["K210_CONV"].reshape(-1)
    x = (q[:8].astype(np.float32) * np.float32(0.1) + np.float32(-6.0)).astype(np.float32)
    assert np.array_equal(out["DEQUANTIZE"][:8], x)
    e = np.exp(x - max(np.float32(np.finfo(np.float32).tiny), x.max()))
    np.testing.assert_allclose(out["SOFTMAX"], e / e.sum(), rtol=1e-6)
    np.testing.assert_allclose(out["LOGISTIC"], 1 / (1 + np.exp(-x)), rtol=1e-6)
    np.testing.assert_allclose(out["L2_NORMALIZATION"], x / np.sqrt((x * x).sum()), rtol=1e-6)
    np.testing.assert_allclose(out["FULLY_CONNECTED"], np.clip(fc_w @ x + fc_b, 0, 6), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["ADD"], x + out["L2_NORMALIZATION"], rtol=1e-6)
    want_q = np.clip(np.floor((x + 1.0) / 0.05 + 0.5), 0, 255)  # values here are never exact halves
    assert out["QUANTIZE"].tolist() == want_q.astype(np.uint8).tolist()
    assert out["REQUANTIZE"].tolist() == table[q].tolist()
    assert out["K210_REMOVE_PADDING"].tolist() == q[::16][:4].tolist()
    assert out["TENSORFLOW_FLATTEN"].shape == (2, 2, 4)
    got = np.frombuffer(bytes(res.outputs[0]), "<f4")
    assert np.array_equal(got, out["SOFTMAX"])
    gmp = write(
        ModelSpec(
            [
                conv,
                CpuLayerSpec(T.GLOBAL_MAX_POOL2D, {"flags": 0, "in": 0, "out": 64, "kernel_size": 16, "channels": 4}),
            ],
            [(64, 16)],
            128,
        )
    )
    with pytest.raises(KmodelFormatError, match="kpu.c .* has no handler"):  # neither the SDK nor MaixPy runs it
        Interpreter(gmp).run(np.zeros((3, 4, 4), np.uint8))
    assert np.array_equal(out["K210_UPLOAD"], q.reshape(4, 4, 4))


@pytest.mark.skipif(not REF.is_dir(), reason="../shared reference data absent")
@pytest.mark.parametrize("name", ["face_detect", "kpu_yolo", "face_mask_detect_5"])
def test_writer_rewrites_kendrytes_files_byte_for_byte(name):
    """Given the layers of a v3 file nncase 0.1 wrote, our writer lays them out to the same bytes:
    the same alignments, padding, body sizes and header fields (max_start_address included)."""
    from pokedex_host.kmodel.write_v3 import ConvLayerSpec

    data = (REF / f"{name}.v3.kmodel").read_bytes()
    m = v3.parse(data)
    layers = []
    for lay in m.layers:
        if lay.conv is not None:
            c = lay.conv
            layers.append(
                ConvLayerSpec(
                    c.registers.raw,
                    data[c.weights_offset : c.weights_offset + c.weights_size],
                    data[c.bn_offset : c.bn_offset + c.bn_size],
                    data[c.act_offset : c.act_offset + c.ACT_SIZE],
                    c.main_mem_out_address if c.flags & 1 else None,
                )
            )
        else:
            fixed = struct.calcsize(v3._CPU_BODIES[lay.type][0])
            layers.append(
                CpuLayerSpec(
                    v3.LayerType(lay.type), lay.fields, data[lay.body_offset + fixed : lay.body_offset + lay.body_size]
                )
            )
    assert write(ModelSpec(layers, list(m.outputs), m.main_mem_usage, m.flags)) == data


def test_fmaf_rounds_once():
    from fractions import Fraction

    from pokedex_host.kmodel.interp import fmaf

    rng = np.random.default_rng(4)
    q = np.arange(256, dtype=np.uint8)
    for _ in range(40):
        scale = np.float32(rng.uniform(-1, 1) * 2.0 ** rng.integers(-12, 4))
        bias = np.float32(rng.uniform(-1, 1) * 2.0 ** rng.integers(-12, 10))
        got = fmaf(q, scale, bias)
        for v in (0, 1, 7, 128, 255, int(rng.integers(0, 256))):
            exact = Fraction(v) * Fraction(float(scale)) + Fraction(float(bias))
            # the float32 nearest to the exact value (ties to even)
            lo = np.float32(float(exact))
            cands = [lo, np.nextafter(lo, np.float32(np.inf)), np.nextafter(lo, np.float32(-np.inf))]
            best = min(cands, key=lambda c: (abs(Fraction(float(c)) - exact), int(np.float32(c).view(np.uint32)) & 1))
            assert got[v] == best, (v, scale, bias)
    # a tie that double rounding gets wrong: p + c lands halfway between two float32s in float64
    a, b = np.uint8(3), np.float32(1 + 2.0**-22)
    c = np.float32(2.0**-23 * 3 * 0.5 + 2.0**-50)  # hand-picked tiny term below float64's rounding of the sum
    r = fmaf(np.array([a]), b, c)[0]
    exact = Fraction(3) * Fraction(float(b)) + Fraction(float(c))
    assert abs(Fraction(float(r)) - exact) <= abs(Fraction(float(np.nextafter(r, np.float32(np.inf)))) - exact)
    assert abs(Fraction(float(r)) - exact) <= abs(Fraction(float(np.nextafter(r, np.float32(-np.inf)))) - exact)


def test_maixpy_runtime_differs_where_maixpy_does():
    T = v3.LayerType
    rng = np.random.default_rng(2)
    conv, _ = conv_layer(rng, (7, 7, 3), 8, kernel=1, src=0, dst=8, main_out=0)  # 7x7x8 u8 at 0
    layers = [
        conv,
        CpuLayerSpec(T.DEQUANTIZE, {"flags": 0, "in": 0, "out": 400, "count": 392, "scale": 0.1037, "bias": -13.37}),
        CpuLayerSpec(T.GLOBAL_AVERAGE_POOL2D, {"flags": 0, "in": 400, "out": 2000, "kernel_size": 49, "channels": 8}),
    ]
    data = write(ModelSpec(layers, [(2000, 32)], 4096))
    x = rng.integers(0, 256, (64, 3, 7, 7), dtype=np.uint8)
    sdk = Interpreter(data).run_many(x)
    mx = Interpreter(data, runtime="maixpy").run_many(x)
    assert not np.array_equal(sdk, mx)  # 1/49 is not exact: the two runtimes differ in the last bits
    np.testing.assert_allclose(sdk, mx, rtol=1e-5)
    q = Interpreter(data).run(x[0], trace=True).trace[0][2].reshape(-1).astype(np.float32)
    pooled = (q * np.float32(0.1037) + np.float32(-13.37)).reshape(8, 49)
    acc = np.zeros(8, np.float32)
    for i in range(49):
        acc = (acc + pooled[:, i]).astype(np.float32)
    assert np.array_equal(sdk[0], acc / np.float32(49))
    with pytest.raises(ValueError):
        Interpreter(data, runtime="canmv")
    big = data + bytes(6 * 2**20)
    with pytest.raises(KmodelFormatError, match="6,291,456"):
        Interpreter(big, runtime="maixpy")


def test_maixpy_runtime_refuses_a_main_memory_conv_that_raises_the_interrupt():
    from dataclasses import replace as _replace

    rng = np.random.default_rng(3)
    conv, _ = conv_layer(rng, (4, 4, 3), 4, kernel=1, src=0, dst=8, main_out=0)
    regs = list(conv.registers)
    regs[0] |= 1  # int_en
    data = write(ModelSpec([_replace(conv, registers=tuple(regs))], [(0, 64)], 64))
    Interpreter(data)  # the SDK's runtime runs it
    with pytest.raises(KmodelFormatError, match="int_en"):
        Interpreter(data, runtime="maixpy")


def test_a_conv_output_dma_rounded_to_8_bytes_must_stay_in_main_memory():
    rng = np.random.default_rng(8)
    conv, _ = conv_layer(rng, (3, 3, 3), 3, kernel=1, src=0, dst=8, main_out=0)  # a 27-byte map
    Interpreter(write(ModelSpec([conv], [(0, 27)], 32)))  # kpu.c's DMA writes 32 bytes: fits
    with pytest.raises(KmodelFormatError, match=r"\[0, 32\)"):
        Interpreter(write(ModelSpec([conv], [(0, 27)], 27)))


def test_quantize_rounds_exact_halves_away_from_zero_as_kpu_c_does():
    """kpu.c's roundf; nncase rounds halves to even, which the build's v3 check can ask for to tell
    the two apart. The constant comes the way the v3 re-emitter makes pad values: 0 * byte + bias."""
    T = v3.LayerType
    rng = np.random.default_rng(3)
    conv, _ = conv_layer(rng, (4, 4, 3), 4, kernel=1, src=0, dst=8, main_out=0)
    layers = [
        conv,
        CpuLayerSpec(T.DEQUANTIZE, {"flags": 0, "in": 0, "out": 64, "count": 4, "scale": 0.0, "bias": 2.5}),
        CpuLayerSpec(T.QUANTIZE, {"flags": 0, "in": 64, "out": 96, "count": 4, "scale": 1.0, "bias": 0.0}),
    ]
    data = write(ModelSpec(layers, [(96, 4)], 128))
    x = rng.integers(0, 256, (1, 3, 4, 4), dtype=np.uint8)
    assert Interpreter(data).run_many(x).tolist() == [[3, 3, 3, 3]]
    assert Interpreter(data, quantize_ties="even").run_many(x).tolist() == [[2, 2, 2, 2]]
    with pytest.raises(ValueError, match="quantize_ties"):
        Interpreter(data, quantize_ties="up")


def _carry_shift_c(v: int, shift: int) -> int:
    """kpu.c's kpu_carry_shift, line by line (Python's >> floors like GCC's on int64)."""
    if shift > 0:
        v >>= shift - 1
        if v & 1:
            v = (v >> 1) - 1 if v < 0 else (v >> 1) + 1
        else:
            v >>= 1
    return v


def test_the_other_cpu_layers_kpu_c_runs():
    """QUANTIZED_ADD, QUANTIZED_MAX_POOL2D, AVERAGE_POOL2D, the two nearest-neighbour resizes and
    CHANNELWISE_DEQUANTIZE against kpu.c's loops written out here element by element."""
    T = v3.LayerType
    rng = np.random.default_rng(11)
    conv, _ = conv_layer(rng, (4, 4, 3), 4, kernel=1, src=0, dst=8, main_out=0)  # 4 x 4 x 4 u8 at 0
    qp = rng.uniform(-1, 1, (4, 2)).astype(np.float32)
    pool = {
        "in_w": 4,
        "in_h": 4,
        "in_c": 4,
        "out_w": 2,
        "out_h": 2,
        "out_c": 4,
        "kernel_w": 3,
        "kernel_h": 3,
        "stride_w": 2,
        "stride_h": 2,
        "pad_w": 1,
        "pad_h": 1,
    }
    qadd = {
        "in_a_offset": -7,
        "in_a_mul": 1234,
        "in_a_shift": 3,
        "in_b_offset": 5,
        "in_b_mul": -321,
        "in_b_shift": 3,
        "out_offset": 60,
        "out_mul": 77,
        "out_shift": 9,
    }
    layers = [
        conv,
        CpuLayerSpec(T.QUANTIZED_ADD, {"flags": 0, "in_a": 0, "in_b": 8, "out": 200, "count": 13, **qadd}),
        CpuLayerSpec(
            T.QUANTIZED_ADD, {"flags": 0, "in_a": 0, "in_b": 8, "out": 232, "count": 13, **qadd, "in_b_shift": 1}
        ),
        CpuLayerSpec(T.QUANTIZED_MAX_POOL2D, {"flags": 0, "in": 0, "out": 300, **pool}),
        CpuLayerSpec(T.DEQUANTIZE, {"flags": 0, "in": 0, "out": 400, "count": 64, "scale": 0.1, "bias": -3.0}),
        CpuLayerSpec(T.AVERAGE_POOL2D, {"flags": 0, "in": 400, "out": 700, **pool, "act": 1}),
        CpuLayerSpec(
            T.RESIZE_NEAREST_NEIGHBOR,
            {
                "flags": 0,
                "in": 400,
                "out": 800,
                "in_w": 4,
                "in_h": 4,
                "in_c": 4,
                "out_w": 6,
                "out_h": 3,
                "align_corners": 0,
            },
        ),
        CpuLayerSpec(
            T.QUANTIZED_RESIZE_NEAREST_NEIGHBOR,
            {
                "flags": 0,
                "in": 0,
                "out": 1200,
                "in_w": 4,
                "in_h": 4,
                "in_c": 4,
                "out_w": 3,
                "out_h": 5,
                "align_corners": 0,
            },
        ),
        CpuLayerSpec(
            T.CHANNELWISE_DEQUANTIZE,
            {"flags": 0, "in": 0, "out": 1300, "channels": 4, "channel_size": 16},
            qp.tobytes(),
        ),
    ]
    data = write(ModelSpec(layers, [(700, 64)], 1600))
    res = Interpreter(data).run(rng.integers(0, 256, (3, 4, 4), dtype=np.uint8), trace=True)
    out = [y for _, _, y in res.trace]
    q = out[0].reshape(-1).astype(np.int64)
    m = q.reshape(4, 4, 4)
    f = (q.astype(np.float32) * np.float32(0.1) + np.float32(-3.0)).astype(np.float32).reshape(4, 4, 4)
    for got, sh_b in ((out[1], 3), (out[2], 1)):
        want = []
        for i in range(16):
            a, b = (q[i] + qadd["in_a_offset"]) * qadd["in_a_mul"], (q[8 + i] + qadd["in_b_offset"]) * qadd["in_b_mul"]
            v = (a + b) >> 3 if sh_b == 3 else (a >> 3) + (b >> sh_b)
            v = _carry_shift_c(v * qadd["out_mul"], qadd["out_shift"]) + qadd["out_offset"]
            want.append(min(255, max(0, v)))
        assert got.reshape(-1).tolist() == want[:13]
    mx, av = np.zeros((4, 2, 2), np.uint8), np.zeros((4, 2, 2), np.float32)
    for c in range(4):
        for oy in range(2):
            for ox in range(2):
                s, n, best = np.float32(0), 0, 0
                for y in range(oy * 2 - 1, oy * 2 + 2):
                    for x in range(ox * 2 - 1, ox * 2 + 2):
                        if 0 <= y < 4 and 0 <= x < 4:
                            best = max(best, int(m[c, y, x]))
                            s = np.float32(s + f[c, y, x])
                            n += 1
                mx[c, oy, ox], av[c, oy, ox] = best, s / np.float32(n)
    assert out[3].reshape(-1).tolist() == mx.reshape(-1).tolist()
    assert np.array_equal(out[5].reshape(-1).view(np.uint32), av.reshape(-1).view(np.uint32))  # act not applied
    rz = [
        [
            [
                f[
                    c,
                    min(int(np.floor(np.float32(oy) * (np.float32(4) / np.float32(3)))), 3),
                    min(int(np.floor(np.float32(ox) * (np.float32(4) / np.float32(6)))), 3),
                ]
                for ox in range(6)
            ]
            for oy in range(3)
        ]
        for c in range(4)
    ]
    assert np.array_equal(out[6].reshape(-1), np.array(rz, np.float32).reshape(-1))
    qz = [
        [
            [
                m[
                    c,
                    min(int(np.floor(np.float32(oy) * (np.float32(4) / np.float32(5)))), 3),
                    min(int(np.floor(np.float32(ox) * (np.float32(4) / np.float32(3)))), 3),
                ]
                for ox in range(3)
            ]
            for oy in range(5)
        ]
        for c in range(4)
    ]
    assert out[7].reshape(-1).tolist() == np.array(qz).reshape(-1).tolist()
    cd = (q.reshape(4, 16).astype(np.float32) * qp[:, :1] + qp[:, 1:]).astype(np.float32)
    assert np.array_equal(out[8].reshape(-1), cd.reshape(-1))
    assert _carry_shift_c(-5, 1) == -4 and _carry_shift_c(5, 1) == 3 and _carry_shift_c(-4, 1) == -2
