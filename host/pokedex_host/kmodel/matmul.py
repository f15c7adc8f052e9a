"""Exact offset products for the KPU's full convolutions, by an int8 or a float32 matrix product.

A full convolution needs, for every output pixel and channel, P = sum over k of (x_k - 128) *
(w_k - 128): (M, K) u8 input rows (a 1x1's map as it is, a 3x3's im2col) against the layer's
(K, OC) u8 weights. Both offset operands are integers in [-128, 127], so every product lies in
[-16256, 16384] and |P| <= 2^14 K. A KPU layer has at most 1024 input channels and a 3x3 kernel:
K <= 9216 and |P| < 2^28. Two paths give P exactly:

- ``int``: int8 x int8 -> int32 (torch ``_int_mm``); exact since |P| < 2^31. Fast where the CPU
  has 8-bit dot products (AVX512-VNNI, AVX-VNNI, AMX); on AVX2 alone it was measured 15x slower
  than a float32 product of the same shape.
- ``float``: float32 (torch ``mm``) over blocks of at most ``FLOAT_BLOCK`` = 1024 of the K terms,
  the blocks' sums added in int32. Every product is an integer of magnitude <= 2^14, exact in
  float32; every partial sum a matrix product can form inside a block, in any order, with or
  without fused multiply-add, is a sum of at most 1024 of them: an integer of magnitude <= 2^24,
  and float32 holds every integer up to 2^24, so each addition is exact. (The operands, 8-bit
  integers, stay exact even if a backend rounds them to bfloat16 or TF32.) Every 1x1 layer has
  K <= 1024: one block, whose float32 result goes on as it is.

Which path runs: the environment variable ``POKEDEX_KPU_MATMUL`` (``int``, ``float`` or ``auto``),
read at each product; ``auto`` (or unset) times both paths once per process on
``MEASURE_SHAPE`` (on one thread, counting its CPU time; well under a second) and keeps
the faster of those that gave the exact sums there (extremes included; a float64 product is
the reference). The int path is checked too: with oneDNN capped to AVX2 (ONEDNN_MAX_CPU_ISA)
on a VNNI machine, torch 2.14's ``_int_mm`` gives wrong sums on random operands, and the float
path is then the one chosen.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from dataclasses import dataclass

import numpy as np

from ..errors import PokedexError

ENV = "POKEDEX_KPU_MATMUL"
PATHS = ("int", "float")
FLOAT_BLOCK = 2**24 // 2**14  # 1024 terms of magnitude <= 128 x 128 keep a float32 sum exact
MAX_K = 1024 * 3 * 3  # 10-bit i_ch_num (1024 channels) x a 3x3 kernel
MEASURE_SHAPE = (512, 384, 384)  # (M, K, OC): a 1x1 layer on 8 images of 8x8 x 384 channels
MEASURE_REPEATS = 3


class OffsetWeights:
    """A layer's (K, OC) u8 weights, prepared for P = (x - 128) @ (w - 128) on either path: as
    int8 now, as float32 the first time the float path needs them."""

    def __init__(self, weights: np.ndarray):
        w = np.asarray(weights, np.uint8)
        if w.ndim != 2:
            raise ValueError(f"weights must be (K, OC), got shape {w.shape}")
        self.k, self.oc = w.shape
        self.w8 = np.ascontiguousarray((w ^ 0x80).view(np.int8))
        self._wf = None

    def products(self, cols: np.ndarray, path: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``cols`` (M, K) u8 -> ((M, OC) P, (M,) int64 sums of the rows of ``cols``). P is int32,
        or float32 holding the same integers (the float path with K <= FLOAT_BLOCK); ``path``
        defaults to :func:`chosen_path`."""
        path = path or chosen_path()
        if path == "int":
            return self._int(cols)
        if path == "float":
            return self._float(cols)
        raise ValueError(f"path {path!r} is not one of {PATHS}")

    def _int(self, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        from ._kernels import offset_rows

        x8 = np.empty(cols.shape, np.int8)
        sums = offset_rows(cols, x8)
        return torch._int_mm(torch.from_numpy(x8), torch.from_numpy(self.w8)).numpy(), sums

    def _float(self, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        from ._kernels import offset_rows

        xf = np.empty(cols.shape, np.float32)
        sums = offset_rows(cols, xf)
        x, w = torch.from_numpy(xf), self._float_weights()
        if self.k <= FLOAT_BLOCK:
            return torch.mm(x, w).numpy(), sums
        out = np.zeros((len(cols), self.oc), np.int32)
        for s in range(0, self.k, FLOAT_BLOCK):
            out += torch.mm(x[:, s : s + FLOAT_BLOCK], w[s : s + FLOAT_BLOCK]).numpy().astype(np.int32)
        return out, sums

    def _float_weights(self):
        import torch

        if self._wf is None:
            self._wf = torch.from_numpy(self.w8.astype(np.float32))
        return self._wf


@dataclass(frozen=True)
class Measurement:
    """Both paths timed on one shape (the best of the repeats, CPU seconds of one thread), whether
    each gave the exact sums there, and the pick: the faster of the exact ones."""

    shape: tuple[int, int, int]
    seconds: dict[str, float]
    exact: dict[str, bool]
    chosen: str


def chosen_path() -> str:
    """The path ``POKEDEX_KPU_MATMUL`` forces, else this process's measured pick. A forced path
    that does not give the exact sums on this machine is refused (oneDNN's AVX2 int8 GEMM, for
    one, saturates on full-range operands: ``_int_mm`` is then wrong, not only slow)."""
    v = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if v in PATHS:
        m = measurement()
        if not m.exact[v]:
            raise PokedexError(
                f"{ENV}={v}: the {v} path does not give exact sums on this machine (measured on {m.shape})",
                f"unset {ENV} (auto picks {m.chosen}, which does)",
            )
        return v
    if v != "auto":
        raise PokedexError(
            f"{ENV}={v!r} is not one of int, float, auto",
            f"unset {ENV} (the faster path is measured) or set it to int or float",
        )
    return measurement().chosen


@functools.cache
def measurement() -> Measurement:
    """:func:`measure` once per process."""
    return measure()


def measure(shape: tuple[int, int, int] = MEASURE_SHAPE, repeats: int = MEASURE_REPEATS) -> Measurement:
    """Time both paths on :func:`measure_operands` (best of ``repeats``, after a warm-up whose
    sums are checked against :func:`reference_products`) and pick the faster of those that were
    exact. The timing runs on one thread and counts that thread's CPU time: the ratio of the two
    is what the CPU's instructions decide, and other processes' load does not enter it. Raises
    :class:`PokedexError` when neither path is exact."""
    cols, w = measure_operands(shape)
    ow = OffsetWeights(w)
    want = reference_products(cols, w)
    exact = {path: bool(np.array_equal(ow.products(cols, path)[0], want)) for path in PATHS}
    with _one_thread():
        seconds = {path: min(_timed(ow, cols, path) for _ in range(repeats)) for path in PATHS}
    good = [path for path in PATHS if exact[path]]
    if not good:
        raise PokedexError(
            "neither matrix product of the v3 interpreter (torch._int_mm, float32 torch.mm) gave "
            "exact sums on this machine",
            "the interpreter cannot match the KPU here; check the torch install (its BLAS and oneDNN settings)",
        )
    return Measurement(shape, seconds, exact, min(good, key=lambda path: seconds[path]))


def reference_products(cols: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(M, OC) int64 P by a float64 product (numpy's BLAS, not torch's): exact, as every partial
    sum is an integer below 2^14 K <= 2^28, far inside float64's 2^53."""
    p = (cols.astype(np.float64) - 128) @ (w.astype(np.float64) - 128)
    return p.astype(np.int64)


def measure_operands(shape: tuple[int, int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(M, K) and (K, OC) u8 at random, rows 0, 1 of the first all 0, all 255 and columns 0, 1
    of the second the same: P reaches 128^2 K, -128 x 127 K and 127^2 K."""
    m, k, oc = shape
    rng = np.random.default_rng(seed)
    cols = rng.integers(0, 256, (m, k), dtype=np.uint8)
    w = rng.integers(0, 256, (k, oc), dtype=np.uint8)
    cols[0], cols[1], w[:, 0], w[:, 1] = 0, 255, 0, 255
    return cols, w


def _timed(ow: OffsetWeights, cols: np.ndarray, path: str) -> float:
    """CPU seconds of the calling thread for one product (all of it, with :func:`_one_thread`)."""
    t = time.thread_time()
    ow.products(cols, path)
    return time.thread_time() - t


@contextlib.contextmanager
def _one_thread():
    """torch and numba on the calling thread alone, as they were set after."""
    import numba
    import torch

    threads = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads[0])
        numba.set_num_threads(threads[1])
