"""Run a kmodel v3 on the host: KPU layers with the KPU's integer arithmetic (``kpu.py``), CPU
layers as the K210 SDK's ``kpu.c`` defines them, over a model's own main memory and a 2 MiB KPU
SRAM image.

Like the SDK: the input is the u8 image, channel-planar (``img.pix_ai`` in MaixPy), written into
KPU SRAM where the first layer reads it; every layer then reads and writes main memory or KPU
SRAM at the addresses the file gives; the outputs are the ``(address, size)`` ranges of the
header. Float CPU layers compute in float32 in the SDK's order (sums accumulate left to right),
so the float tail matches a C build of ``kpu.c`` without fused multiply-add.

Anything the file asks for that cannot be done -- an address out of range, a shape that does not
follow from the registers, a layer this interpreter does not implement -- raises
:class:`KmodelFormatError` with the offset of the layer body at fault, never anything else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from . import KmodelFormatError
from . import kpu as K
from .v3 import KmodelV3, Layer, LayerType, parse

# Layers whose output is u8; the others write float32 (what MaixPy's fmap typecode follows).
U8_OUTPUT = {
    LayerType.K210_CONV,
    LayerType.QUANTIZE,
    LayerType.REQUANTIZE,
    LayerType.K210_REMOVE_PADDING,
    LayerType.QUANTIZED_CONCAT,
    LayerType.QUANTIZED_ADD,
    LayerType.QUANTIZED_MAX_POOL2D,
    LayerType.QUANTIZED_GLOBAL_AVERAGE_POOL2D,
    LayerType.QUANTIZED_GLOBAL_MAX_POOL2D,
    LayerType.QUANTIZED_TENSORFLOW_FLATTEN,
    LayerType.QUANTIZED_RESIZE_NEAREST_NEIGHBOR,
}


@dataclass
class _Conv:
    layer: Layer
    args: K.ConvArgs
    weights: np.ndarray
    bn: K.BatchNorm
    act: K.Activation
    in_shape: tuple[int, int, int]  # (w, h, c)
    out_shape: tuple[int, int, int]
    src: int
    dst: int
    main_out: int | None
    main_bytes: int
    kernel: K.ConvKernel


@dataclass
class RunResult:
    outputs: list[bytes]
    trace: list[tuple[int, str, np.ndarray]] = field(default_factory=list)  # (layer, name, output)


RUNTIMES = ("sdk", "maixpy")
MAIXPY_MAX_FILE = 6 * 2**20  # kpu.load refuses larger files


def fmaf(a: np.ndarray, b: float, c: float) -> np.ndarray:
    """float32 fused multiply-add, a * b + c rounded once (C's fmaf), for u8 ``a``.

    a * b is exact in float64 (8 x 24 significant bits); the sum's rounding error comes from
    TwoSum, so the one case where rounding to float64 then to float32 differs from rounding once
    (the float64 sum sits exactly halfway between two float32s) is resolved by the error's sign."""
    p = np.asarray(a, np.float64) * np.float64(np.float32(b))
    cc = np.float64(np.float32(c))
    s = p + cc
    bb = s - p
    err = (p - (s - bb)) + (cc - bb)
    r = s.astype(np.float32)
    rd = r.astype(np.float64)
    other = np.where(rd < s, np.nextafter(r, np.float32(np.inf)), np.nextafter(r, np.float32(-np.inf))).astype(
        np.float64
    )
    tie = (rd != s) & (np.abs(s - rd) == np.abs(other - s)) & (err != 0)
    up = np.maximum(rd, other)
    down = np.minimum(rd, other)
    return np.where(tie, np.where(err > 0, up, down), rd).astype(np.float32)


class Interpreter:
    """A parsed, checked kmodel v3 ready to run; decode once, run many times.

    ``runtime`` picks whose CPU layers: ``"sdk"`` is kpu.c of the K210 SDK (what nncase's
    simulator matches), ``"maixpy"`` MaixPy-v1's KPU library: DEQUANTIZE with a fused
    multiply-add, GLOBAL_AVERAGE_POOL2D as sum x (1 / k), files up to 6 MiB, and a convolution
    that writes to main memory must not raise the KPU interrupt (int_en = 0)."""

    def __init__(
        self,
        data: bytes,
        model: KmodelV3 | None = None,
        path: str | None = None,
        runtime: str = "sdk",
        quantize_ties: str = "away",
    ):
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime {runtime!r} is not one of {RUNTIMES}")
        if quantize_ties not in ("away", "even"):
            raise ValueError(f"quantize_ties {quantize_ties!r} is not 'away' (kpu.c's roundf) or 'even' (nncase)")
        self.runtime = runtime
        # QUANTIZE rounds exact halves away from zero (kpu.c's roundf; every board); "even" is how
        # nncase's own runtime rounds them, used only to tell that difference apart in build checks
        self.quantize_ties = quantize_ties
        self.data = bytes(data)
        self.path = path
        self.model = model or parse(self.data, path)
        m = self.model
        if runtime == "maixpy" and len(self.data) > MAIXPY_MAX_FILE:
            raise KmodelFormatError(
                0,
                f"the file is {len(self.data):,} B; MaixPy's kpu.load refuses files over {MAIXPY_MAX_FILE:,} B",
                self.path,
            )
        if m.layers[0].type != LayerType.K210_CONV and m.layers[0].type != LayerType.FULLY_CONNECTED:
            self._fail(
                m.layers[0],
                "the first layer must be K210_CONV (image input) or FULLY_CONNECTED (float "
                "input): the SDK's kpu_run_kmodel refuses anything else",
            )
        self._convs: dict[int, _Conv] = {}
        for lay in m.layers:
            if lay.type == LayerType.K210_CONV:
                self._convs[lay.index] = cv = self._decode_conv(lay)
                if runtime == "maixpy" and cv.main_out is not None and lay.conv.registers.fields["int_en"]:
                    self._fail(
                        lay,
                        "it writes to main memory with int_en = 1; MaixPy's runtime needs int_en = 0 "
                        "there (the interrupt would fire before the DMA of its output)",
                    )

    # -- helpers ------------------------------------------------------------------------------
    def _fail(self, lay: Layer, why: str):
        raise KmodelFormatError(lay.body_offset, f"layer {lay.index} ({lay.name}): {why}", self.path)

    def _decode_conv(self, lay: Layer) -> _Conv:
        c = lay.conv
        r = c.registers
        f = r.fields
        args = K.ConvArgs.from_fields(f)
        iw, ih, ic = r.in_shape
        ow, oh, oc = r.out_shape
        if K.pooled_size(iw, args.pool_type) != ow or K.pooled_size(ih, args.pool_type) != oh:
            self._fail(lay, f"a {iw}x{ih} input through pool type {args.pool_type} cannot give {ow}x{oh}")
        if args.depthwise and ic != oc:
            self._fail(lay, f"depthwise with {ic} -> {oc} channels")
        # the registers that tell the KPU how its maps sit in SRAM must follow the map shapes (they do
        # in every file we know, nncase 0.1's and 1.9's alike); else the hardware would read another layout
        li, lo = K.row_layout(iw), K.row_layout(ow)
        want = {
            "channel_switch_addr": li.row_len * ih,
            "row_switch_addr": li.row_len,
            "coef_group": li.groups,
            "wb_channel_switch_addr": lo.row_len * oh,
            "wb_row_switch_addr": lo.row_len,
            "wb_group": lo.groups,
        }
        for name, v in want.items():
            if f[name] != v:
                self._fail(lay, f"{name} is {f[name]}, but a {iw}x{ih} -> {ow}x{oh} layer's maps need {v}")
        ws, ps, lt = c.weights_size, f["para_size"], f["load_time"]
        if not (ps * (lt + 1) >= ws > ps * lt):
            self._fail(lay, f"weights are loaded in {lt + 1} part(s) of {ps} B, which does not cover {ws} B exactly")
        main_out = c.main_mem_out_address if c.flags & 1 else None
        if main_out is not None and f["dma_total_byte"] + 1 != ow * oh * oc:
            self._fail(
                lay,
                f"its main-memory output is {f['dma_total_byte'] + 1} B by the DMA registers but the "
                f"map is {ow}x{oh}x{oc} = {ow * oh * oc} B",
            )
        if main_out is not None:
            dma = (f["dma_total_byte"] + 8) // 8 * 8  # kpu.c's DMA moves whole 8-byte words
            if main_out + dma > self.model.main_mem_usage:
                self._fail(
                    lay,
                    f"its output DMA writes [{main_out}, {main_out + dma}) (the map rounded up to 8 B), "
                    f"past main memory ({self.model.main_mem_usage} B)",
                )
        weights = np.frombuffer(self.data, np.uint8, c.weights_size, c.weights_offset)
        bn = K.decode_bn(self.data[c.bn_offset : c.bn_offset + c.bn_size], oc)
        act = K.decode_act(self.data[c.act_offset : c.act_offset + c.ACT_SIZE], c.act_offset)
        return _Conv(
            lay,
            args,
            weights,
            bn,
            act,
            (iw, ih, ic),
            (ow, oh, oc),
            f["image_src_addr"],
            f["image_dst_addr"],
            main_out,
            ow * oh * oc,
            K.ConvKernel(weights, args, ic, oc, bn, act),
        )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the u8 image the first layer reads."""
        return self.model.input_shape or (self.model.layers[0].fields["in_channels"], 1, 1)

    @property
    def output_dtype(self) -> np.dtype:
        last = self.model.layers[-1].type
        return np.dtype(np.uint8) if last in U8_OUTPUT else np.dtype("<f4")

    # -- running ------------------------------------------------------------------------------
    def run(self, image: np.ndarray, *, trace: bool = False) -> RunResult:
        """One image (C, H, W) u8 -- or the float input of a FULLY_CONNECTED-first model."""
        outs, tr = self._run(np.asarray(image)[None], trace)
        return RunResult([o[0].tobytes() for o in outs], [(i, name, y[0]) for i, name, y in tr])

    def run_many(self, images: np.ndarray, index: int = 0) -> np.ndarray:
        """Output ``index`` of every image of a batch (N x C x H x W u8), as an (N, size) array of
        the last layer's type. Each layer runs once for the whole batch (the same code as
        :meth:`run`: every address and SRAM access is checked as for one image)."""
        outs, _ = self._run(np.asarray(images), False)
        return np.ascontiguousarray(outs[index]).view(self.output_dtype)

    def run_output(self, image: np.ndarray, index: int = 0) -> np.ndarray:
        """One output as an array of the last layer's type (what MaixPy's ``fmap[:]`` gives)."""
        return np.frombuffer(self.run(image).outputs[index], self.output_dtype).copy()

    def _run(self, images: np.ndarray, trace: bool) -> tuple[list[np.ndarray], list]:
        m = self.model
        n = len(images)
        main = np.zeros((n, m.main_mem_usage + 8), np.uint8)  # + the DMA's rounding up to 8 bytes
        ram = _Sram(n)
        out_trace: list = []
        first = m.layers[0]
        if first.type == LayerType.K210_CONV:
            cv = self._convs[0]
            w, h, c = cv.in_shape
            if images.shape[1:] != (c, h, w) or images.dtype != np.uint8:
                raise KmodelFormatError(
                    first.body_offset,
                    f"the model takes a u8 {c}x{h}x{w} (channels, height, "
                    f"width) image, got {images.dtype} {images.shape[1:]}",
                    self.path,
                )
            try:
                ram.write(cv.src, images, "input")
            except K.KPURangeError as e:
                self._fail(first, str(e))
        else:
            x = np.ascontiguousarray(images.reshape(n, -1), dtype="<f4")
            self._write(first, main, first.fields["in"], x.view(np.uint8))
        for lay in m.layers:
            handler = _HANDLERS.get(lay.type)
            if handler is None:
                if lay.type in _NOT_IN_KPU_C:
                    self._fail(
                        lay,
                        "kpu.c (the K210 SDK's v3 runtime, and MaixPy's) has no handler for this layer type: "
                        "the board refuses the file",
                    )
                self._fail(lay, "this layer type is not implemented by the interpreter")
            try:
                res = handler(self, lay, lay.fields, main, ram)
            except K.KPURangeError as e:
                self._fail(lay, str(e))
            if trace and res is not None:
                out_trace.append((lay.index, lay.name, res))
        return [main[:, a : a + s] for a, s in m.outputs], out_trace

    # main memory: (N, bytes), one row per image; every range is checked against the file's size
    def _range(self, lay: Layer, addr: int, size: int, what: str) -> slice:
        if addr < 0 or size < 0 or addr + size > self.model.main_mem_usage:
            self._fail(lay, f"{what} [{addr}, {addr + size}) is outside main memory ({self.model.main_mem_usage} B)")
        return slice(addr, addr + size)

    def _read(self, lay, main, addr, size, what="input") -> np.ndarray:
        return main[:, self._range(lay, addr, size, what)]

    def _read_f32(self, lay, main, addr, count, what="input") -> np.ndarray:
        return np.ascontiguousarray(self._read(lay, main, addr, 4 * count, what)).view("<f4")

    def _write(self, lay, main, addr, raw: np.ndarray, what="output") -> None:
        raw = raw.reshape(len(main), -1)
        main[:, self._range(lay, addr, raw.shape[1], what)] = raw

    def _write_f32(self, lay, main, addr, x: np.ndarray, what="output") -> None:
        x = np.ascontiguousarray(x, dtype="<f4").reshape(len(main), -1)
        self._write(lay, main, addr, x.view(np.uint8), what)

    def _body_extra(self, lay: Layer, start: int, size: int, what: str) -> bytes:
        if start + size > lay.body_size:
            self._fail(lay, f"{what} needs {start + size} B of body, the body is {lay.body_size} B")
        o = lay.body_offset + start
        return self.data[o : o + size]

    # -- layers: one handler per v3 layer type (_HANDLERS below), each (self, layer, fields, main,
    # ram: the run's _Sram)
    def _k210_conv(self, lay, f, main, ram):
        cv = self._convs[lay.index]
        x = ram.read_hwc(cv.src, cv.in_shape, f"layer {lay.index} input")
        y_hwc = K.conv_layer_nhwc(cv.kernel, x)
        ram.write_hwc(cv.dst, y_hwc, f"layer {lay.index} output")
        y = y_hwc.transpose(0, 3, 1, 2)
        if cv.main_out is not None:
            self._write(lay, main, cv.main_out, y, "main-memory output")
        return y

    def _dequantize(self, lay, f, main, ram):
        q = self._read(lay, main, f["in"], f["count"])
        if self.runtime == "maixpy":
            y = fmaf(q, f["scale"], f["bias"])  # MaixPy's library computes it as one fused multiply-add
        else:
            y = q.astype(np.float32) * np.float32(f["scale"]) + np.float32(f["bias"])
        self._write_f32(lay, main, f["out"], y)
        return y

    def _quantize(self, lay, f, main, ram):
        x = self._read_f32(lay, main, f["in"], f["count"])
        with np.errstate(all="ignore"):
            inv = np.float32(1) / np.float32(f["scale"])
            v = (x - np.float32(f["bias"])) * inv
            v = np.where(np.isfinite(v), v, 0).astype(np.float32)
            if self.quantize_ties == "even":
                r = np.rint(v)
            else:
                r = np.trunc(v)
                r = r + np.where(np.abs(v - r) >= 0.5, np.sign(v), 0)  # C roundf: halves away from zero
            v = np.clip(r, 0, 255)
        y = v.astype(np.uint8)
        self._write(lay, main, f["out"], y)
        return y

    def _global_average_pool(self, lay, f, main, ram):
        k, ch = f["kernel_size"], f["channels"]
        if k == 0:
            self._fail(lay, "kernel_size 0")
        x = self._read_f32(lay, main, f["in"], k * ch).reshape(-1, ch, k)
        acc = np.zeros(x.shape[:2], np.float32)
        with np.errstate(all="ignore"):
            for i in range(k):  # left to right, in float32, as kpu.c sums
                acc = (acc + x[:, :, i]).astype(np.float32)
            if self.runtime == "maixpy":  # sum x (1.0f / k): not the SDK's division unless k is a power of 2
                y = (acc * (np.float32(1) / np.float32(k))).astype(np.float32)
            else:
                y = (acc / np.float32(k)).astype(np.float32)
        self._write_f32(lay, main, f["out"], y)
        return y

    def _concat(self, lay, f, main, ram):
        n = f["input_count"]
        raw = self._body_extra(lay, 12, 8 * n, f"{n} input ranges")
        dest = f["out"]
        parts = []
        for i in range(n):
            start, size = struct.unpack_from("<2I", raw, 8 * i)
            parts.append(self._read(lay, main, start, size, f"input {i}").copy())
        for p in parts:
            self._write(lay, main, dest, p)
            dest += p.shape[1]
        return np.concatenate(parts, axis=1) if parts else np.zeros((len(main), 0), np.uint8)

    def _add(self, lay, f, main, ram):
        a = self._read_f32(lay, main, f["in_a"], f["count"])
        b = self._read_f32(lay, main, f["in_b"], f["count"])
        with np.errstate(all="ignore"):
            y = (a + b).astype(np.float32)
        self._write_f32(lay, main, f["out"], y)
        return y

    def _softmax(self, lay, f, main, ram):
        x = self._read_f32(lay, main, f["in"], f["channels"])
        with np.errstate(all="ignore"):
            tiny = np.float32(np.finfo(np.float32).tiny)  # kpu.c starts the max at FLT_MIN
            mx = np.maximum(tiny, x.max(1, keepdims=True) if x.shape[1] else np.zeros((len(x), 1), np.float32))
            e = np.exp(x - mx).astype(np.float32)
            s = np.zeros((len(x), 1), np.float32)
            for i in range(e.shape[1]):  # left to right, in float32
                s = (s + e[:, i : i + 1]).astype(np.float32)
            y = (e / s).astype(np.float32)
        self._write_f32(lay, main, f["out"], y)
        return y

    def _logistic(self, lay, f, main, ram):
        x = self._read_f32(lay, main, f["in"], f["channels"])
        with np.errstate(all="ignore"):
            y = (np.float32(1) / (np.float32(1) + np.exp(-x))).astype(np.float32)
        self._write_f32(lay, main, f["out"], y)
        return y

    def _l2_normalization(self, lay, f, main, ram):
        x = self._read_f32(lay, main, f["in"], f["channels"])
        with np.errstate(all="ignore"):
            s = np.zeros((len(x), 1), np.float32)
            for i in range(x.shape[1]):
                s = (s + x[:, i : i + 1] * x[:, i : i + 1]).astype(np.float32)
            s = np.float32(1) / np.sqrt(np.maximum(s, np.float32(1e-10)))
            y = (x * s).astype(np.float32)
        self._write_f32(lay, main, f["out"], y)
        return y

    def _requantize(self, lay, f, main, ram):
        table = np.frombuffer(self._body_extra(lay, 16, 256, "the 256-byte table"), np.uint8)
        y = table[self._read(lay, main, f["in"], f["count"])]
        self._write(lay, main, f["out"], y)
        return y

    def _flatten(self, lay, f, main, ram):
        w, h, c = f["width"], f["height"], f["channels"]
        x = self._read_f32(lay, main, f["in"], w * h * c).reshape(-1, c, h, w)
        self._write_f32(lay, main, f["out"], x.transpose(0, 2, 3, 1))
        return x

    def _fully_connected(self, lay, f, main, ram):
        ic, oc = f["in_channels"], f["out_channels"]
        raw = self._body_extra(lay, 24, 4 * (ic * oc + oc), "weights and bias")
        wb = np.frombuffer(raw, "<f4")
        wt, bias = wb[: ic * oc].reshape(oc, ic), wb[ic * oc :]
        x = self._read_f32(lay, main, f["in"], ic)
        acc = np.zeros((len(x), oc), np.float32)
        with np.errstate(all="ignore"):
            for i in range(ic):  # left to right, in float32, as kpu.c sums
                acc = (acc + x[:, i : i + 1] * wt[:, i]).astype(np.float32)
            y = (acc + bias).astype(np.float32)
        if f["act"] == 1:
            y = np.maximum(y, 0)
        elif f["act"] == 2:
            y = np.minimum(np.maximum(y, 0), 6)
        elif f["act"] != 0:
            self._fail(lay, f"activation {f['act']} is not linear (0), relu (1) or relu6 (2)")
        self._write_f32(lay, main, f["out"], y)
        return y

    def _add_padding(self, lay, f, main, ram):
        ch = f["channels"]
        if not ch:
            self._fail(lay, "0 channels")
        x = self._read(lay, main, f["in"], ch)
        fm = ram.read(f["kpu_out"], (4, 4, ch), f"layer {lay.index} output")
        fm[:, :, 0, 0] = x  # only pixel (0, 0) of each 4x4 map is written, as kpu.c does
        ram.write(f["kpu_out"], fm, f"layer {lay.index} output")
        return fm

    # -- the layers kpu.c runs that nncase 1.9's glue does not use (Kendryte's own v3 files may)
    def _quantized_add(self, lay, f, main, ram):
        """kpu_quantized_add: int64 (x + offset) * mul per input; one shift after the sum when the
        two shifts are equal, else one per input; * out_mul, kpu_carry_shift, + out_offset, clamped.
        kpu.c runs ``count`` rounded up to 8 (reads and writes up to 7 bytes more)."""
        n8 = -(-f["count"] // 8) * 8
        for k in ("in_a_shift", "in_b_shift", "out_shift"):
            if not 0 <= f[k] < 64:
                self._fail(lay, f"{k} {f[k]} is not a shift of 0..63")
        a = self._read(lay, main, f["in_a"], n8, "input a (count rounded up to 8)").astype(np.int64)
        b = self._read(lay, main, f["in_b"], n8, "input b (count rounded up to 8)").astype(np.int64)
        a = (a + f["in_a_offset"]) * f["in_a_mul"]
        b = (b + f["in_b_offset"]) * f["in_b_mul"]
        if f["in_a_shift"] == f["in_b_shift"]:
            v = (a + b) >> f["in_a_shift"]
        else:
            v = (a >> f["in_a_shift"]) + (b >> f["in_b_shift"])
        v = _carry_shift(v * f["out_mul"], f["out_shift"]) + f["out_offset"]
        y = np.clip(v, 0, 255).astype(np.uint8)
        self._write(lay, main, f["out"], y, "output (count rounded up to 8)")
        return y[:, : f["count"]]

    def _pool_windows(self, lay, f):
        """(out_y, out_x, [(in_y, in_x), ...]) of each output: the window clipped to the map, in
        kpu.c's order (rows, then columns)."""
        iw, ih, c, ow, oh = f["in_w"], f["in_h"], f["in_c"], f["out_w"], f["out_h"]
        if f["out_c"] != c:
            self._fail(lay, f"{c} input channels but {f['out_c']} output channels")
        for oy in range(oh):
            for ox in range(ow):
                x0, y0 = ox * f["stride_w"] - f["pad_w"], oy * f["stride_h"] - f["pad_h"]
                cells = [
                    (y0 + ky, x0 + kx)
                    for ky in range(max(0, -y0), min(f["kernel_h"], ih - y0))
                    for kx in range(max(0, -x0), min(f["kernel_w"], iw - x0))
                ]
                yield oy, ox, cells

    def _quantized_max_pool(self, lay, f, main, ram):
        """kpu_quantized_max_pool2d: the window clipped to the map, the max starting from 0."""
        iw, ih, c = f["in_w"], f["in_h"], f["in_c"]
        x = self._read(lay, main, f["in"], iw * ih * c).reshape(-1, c, ih, iw)
        y = np.zeros((len(x), c, f["out_h"], f["out_w"]), np.uint8)
        for oy, ox, cells in self._pool_windows(lay, f):
            for cy, cx in cells:
                y[:, :, oy, ox] = np.maximum(y[:, :, oy, ox], x[:, :, cy, cx])
        self._write(lay, main, f["out"], y)
        return y

    def _average_pool(self, lay, f, main, ram):
        """kpu_average_pool2d: the in-map cells summed in float from 0 in row order, divided by
        their count (padding not counted); the body's ``act`` is not applied by kpu.c."""
        iw, ih, c = f["in_w"], f["in_h"], f["in_c"]
        x = self._read_f32(lay, main, f["in"], iw * ih * c).reshape(-1, c, ih, iw)
        y = np.zeros((len(x), c, f["out_h"], f["out_w"]), np.float32)
        with np.errstate(all="ignore"):
            for oy, ox, cells in self._pool_windows(lay, f):
                acc = np.zeros((len(x), c), np.float32)
                for cy, cx in cells:
                    acc = (acc + x[:, :, cy, cx]).astype(np.float32)
                y[:, :, oy, ox] = acc / np.float32(len(cells))
        self._write_f32(lay, main, f["out"], y)
        return y

    def _resize_nearest(self, lay, f, main, ram):
        """kpu_resize_nearest_neighbor (floats) and kpu_quant_resize_nearest_neighbor (bytes):
        source index min(floorf(o * (in / out)), in - 1) in single precision; align_corners unused."""
        iw, ih, c, ow, oh = f["in_w"], f["in_h"], f["in_c"], f["out_w"], f["out_h"]
        if not (ow and oh):
            self._fail(lay, f"output size {ow}x{oh}")
        quant = lay.type == LayerType.QUANTIZED_RESIZE_NEAREST_NEIGHBOR
        size = 1 if quant else 4
        raw = self._read(lay, main, f["in"], iw * ih * c * size)
        x = (raw if quant else np.ascontiguousarray(raw).view("<f4")).reshape(-1, c, ih, iw)
        ys = np.minimum(np.floor(np.arange(oh, dtype=np.float32) * (np.float32(ih) / np.float32(oh))), ih - 1)
        xs = np.minimum(np.floor(np.arange(ow, dtype=np.float32) * (np.float32(iw) / np.float32(ow))), iw - 1)
        y = x[:, :, ys.astype(np.int64)][:, :, :, xs.astype(np.int64)]
        if quant:
            self._write(lay, main, f["out"], np.ascontiguousarray(y))
        else:
            self._write_f32(lay, main, f["out"], y)
        return y

    def _channelwise_dequantize(self, lay, f, main, ram):
        """kpu_kmodel_channelwise_dequantize: channel c's bytes * scale_c + bias_c."""
        ch, size = f["channels"], f["channel_size"]
        qp = np.frombuffer(self._body_extra(lay, 20, 8 * ch, f"{ch} (scale, bias) pairs"), "<f4").reshape(ch, 2)
        q = self._read(lay, main, f["in"], ch * size).reshape(-1, ch, size)
        if self.runtime == "maixpy":
            y = fmaf(q, qp[:, 0][None, :, None], qp[:, 1][None, :, None])
        else:
            y = (q.astype(np.float32) * qp[:, 0][None, :, None] + qp[:, 1][None, :, None]).astype(np.float32)
        self._write_f32(lay, main, f["out"], y)
        return y

    def _remove_padding(self, lay, f, main, ram):
        ch = f["channels"]
        x = self._read(lay, main, f["in"], 16 * ch if ch else 0)
        y = x[:, ::16][:, :ch].copy()
        self._write(lay, main, f["out"], y)
        return y

    def _upload(self, lay, f, main, ram):
        w, h, c = f["width"], f["height"], f["channels"]
        if not (w and h and c):
            self._fail(lay, f"empty {w}x{h}x{c} map")
        x = self._read(lay, main, f["in"], w * h * c).reshape(-1, c, h, w)
        ram.write(f["kpu_out"], x, f"layer {lay.index} output")
        return x


class _Sram:
    """The 2 MiB KPU SRAM of a batch of N images for one run, written lazily.

    A convolution's output is kept channels last (``write_hwc``) and stored into the SRAM image
    only when something reads SRAM other than a convolution reading exactly that map
    (``read_hwc``: same KPU line and shape, not overwritten since) -- in a chain of convolutions,
    never. Every write is bounds-checked when it happens, and reads see every earlier write."""

    def __init__(self, n: int):
        self.ram = np.zeros((n, K.KPU_RAM_BYTES), np.uint8)
        self.kept: dict = {}  # {(KPU line, (w, h, c)): (N, h, w, c) map} still intact in SRAM
        self.pending: list = []  # (line, (N, c, h, w) map, what) not stored yet, in write order

    def _drop(self, line: int, whc: tuple[int, int, int]) -> None:
        """Forget the kept maps that a write of a (w, h, c) map at KPU ``line`` overlaps."""
        lo, hi = line * K.LINE, line * K.LINE + K.map_bytes(*whc)
        for key in [k for k in self.kept if k[0] * K.LINE < hi and lo < k[0] * K.LINE + K.map_bytes(*k[1])]:
            del self.kept[key]

    def _stored(self) -> np.ndarray:
        for line, y, what in self.pending:
            K.upload(self.ram, line, y, what)
        self.pending.clear()
        return self.ram

    def read(self, line: int, whc: tuple[int, int, int], what: str) -> np.ndarray:
        """The (N, c, h, w) u8 map stored at ``line``."""
        return K.download(self._stored(), line, *whc, what)

    def read_hwc(self, line: int, whc: tuple[int, int, int], what: str) -> np.ndarray:
        """The same map channels last, (N, h, w, c)."""
        x = self.kept.get((line, whc))
        return x if x is not None else K.to_nhwc(self.read(line, whc, what))

    def write(self, line: int, fmap: np.ndarray, what: str) -> None:
        """Store (N, c, h, w) u8 maps at ``line`` now."""
        n, c, h, w = fmap.shape
        self._drop(line, (w, h, c))
        K.upload(self._stored(), line, fmap, what)

    def write_hwc(self, line: int, y: np.ndarray, what: str) -> None:
        """Write (N, h, w, c) u8 maps at ``line``, stored when first needed."""
        n, h, w, c = y.shape
        K.check_map(line, w, h, c, what)
        self._drop(line, (w, h, c))
        self.pending.append((line, y.transpose(0, 3, 1, 2), what))
        self.kept[(line, (w, h, c))] = y


# v3 layer types the reader knows but kpu.c's ai_step does not run (docs/kpu-c-reading.md)
_NOT_IN_KPU_C = {
    LayerType.GLOBAL_MAX_POOL2D,
    LayerType.QUANTIZED_GLOBAL_MAX_POOL2D,
    LayerType.QUANTIZED_GLOBAL_AVERAGE_POOL2D,
    LayerType.QUANTIZED_TENSORFLOW_FLATTEN,
}

_HANDLERS = {
    LayerType.K210_CONV: Interpreter._k210_conv,
    LayerType.DEQUANTIZE: Interpreter._dequantize,
    LayerType.QUANTIZE: Interpreter._quantize,
    LayerType.GLOBAL_AVERAGE_POOL2D: Interpreter._global_average_pool,
    LayerType.CONCAT: Interpreter._concat,
    LayerType.QUANTIZED_CONCAT: Interpreter._concat,
    LayerType.ADD: Interpreter._add,
    LayerType.SOFTMAX: Interpreter._softmax,
    LayerType.LOGISTIC: Interpreter._logistic,
    LayerType.L2_NORMALIZATION: Interpreter._l2_normalization,
    LayerType.REQUANTIZE: Interpreter._requantize,
    LayerType.TENSORFLOW_FLATTEN: Interpreter._flatten,
    LayerType.FULLY_CONNECTED: Interpreter._fully_connected,
    LayerType.K210_ADD_PADDING: Interpreter._add_padding,
    LayerType.K210_REMOVE_PADDING: Interpreter._remove_padding,
    LayerType.K210_UPLOAD: Interpreter._upload,
    LayerType.QUANTIZED_ADD: Interpreter._quantized_add,
    LayerType.QUANTIZED_MAX_POOL2D: Interpreter._quantized_max_pool,
    LayerType.AVERAGE_POOL2D: Interpreter._average_pool,
    LayerType.RESIZE_NEAREST_NEIGHBOR: Interpreter._resize_nearest,
    LayerType.QUANTIZED_RESIZE_NEAREST_NEIGHBOR: Interpreter._resize_nearest,
    LayerType.CHANNELWISE_DEQUANTIZE: Interpreter._channelwise_dequantize,
}


def run(data: bytes, image: np.ndarray) -> list[bytes]:
    return Interpreter(data).run(image).outputs


def run_batch(
    data: bytes,
    x: np.ndarray,
    *,
    workers: int = 1,
    index: int = 0,
    batch: int = 32,
    progress=None,
    runtime: str = "sdk",
    quantize_ties: str = "away",
) -> np.ndarray:
    """Output ``index`` for every image of ``x`` (N x C x H x W u8), as an N x outputs array,
    ``batch`` images per pass (torch and the compiled activation use every core; ``workers`` is
    kept for callers of the per-image version and ignored)."""
    it = Interpreter(data, runtime=runtime, quantize_ties=quantize_ties)
    n = len(x)
    if n == 0:
        return np.zeros((0, 0), it.output_dtype)
    parts = []
    for i in range(0, n, batch):
        parts.append(it.run_many(x[i : i + batch], index))
        if progress:
            progress(len(parts[-1]))
    return np.concatenate(parts)


def _carry_shift(v: np.ndarray, shift: int) -> np.ndarray:
    """kpu.c's kpu_carry_shift (QUANTIZED_ADD's output shift): shift by all but one bit; an odd
    remainder then steps one away from zero *after* the last halving: (v >> 1) + 1 for v >= 0,
    (v >> 1) - 1 below (-5 with shift 1 gives -4)."""
    if shift <= 0:
        return v
    v = v >> (shift - 1)
    half = v >> 1
    return np.where((v & 1) != 0, np.where(v < 0, half - 1, half + 1), half)
