"""Small kmodel v3 files generated for tests: shapes and tables chosen at random, but every
register consistent with the layer it describes."""

from __future__ import annotations

import dataclasses

import numpy as np

from pokedex_host.kmodel import kpu as K
from pokedex_host.kmodel.v3 import LayerType, decode_registers, encode_registers
from pokedex_host.kmodel.write_v3 import ConvLayerSpec, CpuLayerSpec, ModelSpec, write


def random_bn(rng: np.random.Generator, channels: int) -> bytes:
    return K.encode_bn(
        K.BatchNorm(
            rng.integers(-(2**20), 2**20, channels),
            rng.integers(8, 16, channels),
            rng.integers(-(2**18), 2**18, channels),
        )
    )


def random_act(rng: np.random.Generator) -> bytes:
    starts = np.sort(rng.integers(-(2**20), 2**22, 15))
    return K.encode_act(
        K.Activation(
            np.concatenate([[-(2**35)], starts]),
            rng.integers(-(2**14), 2**14, 16),
            rng.integers(0, 24, 16),
            rng.integers(0, 256, 16),
        )
    )


def nw_of(c: int, out_c: int, kernel: int, depthwise: bool) -> int:
    return out_c * kernel * kernel * (1 if depthwise else c)


def layout_fields(w: int, h: int, ow: int, oh: int) -> dict:
    li, lo = K.row_layout(w), K.row_layout(ow)
    return {
        "channel_switch_addr": li.row_len * h,
        "row_switch_addr": li.row_len,
        "coef_group": li.groups,
        "wb_channel_switch_addr": lo.row_len * oh,
        "wb_row_switch_addr": lo.row_len,
        "wb_group": lo.groups,
    }


def conv_layer(
    rng, in_whc, out_c, *, kernel=3, depthwise=False, pool=0, src=0, dst=0, main_out=None, pad_value=None
) -> tuple[ConvLayerSpec, tuple[int, int, int]]:
    w, h, c = in_whc
    ow, oh = K.pooled_size(w, pool), K.pooled_size(h, pool)
    regs = encode_registers(
        {
            "depth_wise_layer": int(depthwise),
            "image_src_addr": src,
            "image_dst_addr": dst,
            "i_ch_num": c - 1,
            "o_ch_num": out_c - 1,
            "o_ch_num_coef": out_c - 1,
            "i_row_wid": w - 1,
            "i_col_high": h - 1,
            "o_row_wid": ow - 1,
            "o_col_high": oh - 1,
            "kernel_type": {1: 0, 3: 1}[kernel],
            "pool_type": pool,
            "load_para": 1,
            "pad_value": int(rng.integers(0, 256)) if pad_value is None else pad_value,
            "arg_x": int(rng.integers(-(2**10), 2**10)),
            "shr_x": int(rng.integers(0, 8)),
            "arg_w": int(rng.integers(-(2**10), 2**10)),
            "shr_w": int(rng.integers(0, 8)),
            "arg_add": int(rng.integers(-(2**20), 2**20)),
            "channel_byte_num": ow * oh - 1,
            "dma_total_byte": ow * oh * out_c - 1,
            **layout_fields(w, h, ow, oh),
            "para_size": nw_of(c, out_c, kernel, depthwise),
        }
    )
    nw = nw_of(c, out_c, kernel, depthwise)
    weights = rng.integers(0, 256, nw, dtype=np.uint8).tobytes()
    return ConvLayerSpec(regs, weights, random_bn(rng, out_c), random_act(rng), main_out), (ow, oh, out_c)


def spread(spec: ConvLayerSpec, x: np.ndarray) -> tuple[ConvLayerSpec, np.ndarray]:
    """``spec`` with batch norm and activation tables chosen so that its outputs on ``x`` (N, C,
    H, W u8) spread over 0..230 (random tables clamp nearly every output to one value): per
    channel, batch norm moves the sums' 2nd percentile to 0; segment 1 scales the widest
    channel's range to 0..255 and segment 2 saturates the top 10 % at 230, like ReLU6. Returns
    the layer and its outputs on ``x``."""
    f = decode_registers(spec.registers)
    args = K.ConvArgs.from_fields(f)
    oc = f["o_ch_num"] + 1
    acc = K.conv(x, np.frombuffer(spec.weights, np.uint8), args, oc)
    lo, hi = np.percentile(acc, 2, axis=(0, 2, 3)), np.percentile(acc, 98, axis=(0, 2, 3))
    bn = K.BatchNorm(np.ones(oc, np.int64), np.zeros(oc, np.int64), -lo.astype(np.int64))
    bits = int(np.ceil(np.log2(max(hi - lo) + 2)))
    top = int(0.9 * max(hi - lo))
    act = K.Activation(
        np.array([-(2**35), 0, top] + [2**34 + i for i in range(13)]),
        np.array([0, 255] + [0] * 14),
        np.array([0, bits] + [0] * 14),
        np.array([0, 0] + [230] * 14),
    )
    out = dataclasses.replace(spec, bn=K.encode_bn(bn), act=K.encode_act(act))
    pt = args.pool_type
    return out, K.pool(K.bn_act(acc, bn, act), pt)


def small_model(seed: int = 0, size: int = 16, classes: int = 10) -> bytes:
    """conv 3x3 (stride 2 by left-top pool) -> depthwise 3x3 -> 1x1 head to main memory ->
    DEQUANTIZE -> GLOBAL_AVERAGE_POOL2D: the shape of the students this project builds."""
    rng = np.random.default_rng(seed)
    l0, s0 = conv_layer(rng, (size, size, 3), 8, pool=5, src=0, dst=64)
    l1, s1 = conv_layer(rng, s0, 8, depthwise=True, src=64, dst=0)
    head = s1[0] * s1[1] * classes
    l2, s2 = conv_layer(rng, s1, classes, kernel=1, src=0, dst=64, main_out=0)
    f_at = -(-head // 8) * 8
    deq = CpuLayerSpec(
        LayerType.DEQUANTIZE, {"flags": 0, "in": 0, "out": f_at, "count": head, "scale": 0.05, "bias": -6.4}
    )
    out_at = f_at + 4 * head
    gap = CpuLayerSpec(
        LayerType.GLOBAL_AVERAGE_POOL2D,
        {"flags": 0, "in": f_at, "out": out_at, "kernel_size": s2[0] * s2[1], "channels": classes},
    )
    end = out_at + 4 * classes
    return write(ModelSpec([l0, l1, l2, deq, gap], [(out_at, 4 * classes)], -(-end // 8) * 8))
