"""The full convolutions' offset products (kmodel/matmul.py): the float32 path gives the int8
path's sums bit for bit -- on extreme operands, at the largest reduction a KPU layer has, on
generated models and on the newest release -- and the path is chosen by measurement or forced
by POKEDEX_KPU_MATMUL."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, SHARED
from v3_fixtures import conv_layer, small_model, spread

from pokedex_host.errors import PokedexError
from pokedex_host.kmodel import matmul
from pokedex_host.kmodel._kernels import offset_rows
from pokedex_host.kmodel.interp import Interpreter
from pokedex_host.kmodel.write_v3 import ModelSpec, write
from pokedex_host.paths import releases

REF = SHARED / "data" / "k210_reference"


def _exact(cols: np.ndarray, w: np.ndarray) -> np.ndarray:
    """sum((x - 128)(w - 128)) in int64, numpy's own integer loops (no BLAS)."""
    return (cols.astype(np.int64) - 128) @ (w.astype(np.int64) - 128)


def _operands(m: int, k: int, oc: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random u8 operands whose products reach every extreme: rows and columns all 0 (offset
    -128) and all 255 (offset 127), and a quarter of the rows and columns drawn from 224..255,
    whose sums grow past 2^24 with every low bit in play (random data alone sums near 0)."""
    rng = np.random.default_rng(seed)
    cols = rng.integers(0, 256, (m, k), dtype=np.uint8)
    w = rng.integers(0, 256, (k, oc), dtype=np.uint8)
    cols[m // 4 : m // 2] = rng.integers(224, 256, (m // 2 - m // 4, k), dtype=np.uint8)
    w[:, oc // 4 : oc // 2] = rng.integers(224, 256, (k, oc // 2 - oc // 4), dtype=np.uint8)
    cols[0], cols[1], w[:, 0], w[:, 1] = 0, 255, 0, 255
    return cols, w


def test_offset_rows_writes_x_minus_128_and_returns_the_row_sums():
    cols, _ = _operands(37, 29, 4, 0)
    for dtype in (np.int8, np.float32):
        out = np.empty(cols.shape, dtype)
        sums = offset_rows(cols, out)
        assert np.array_equal(out.astype(np.int64), cols.astype(np.int64) - 128)
        assert np.array_equal(sums, cols.sum(1, dtype=np.int64)) and sums.dtype == np.int64
    assert offset_rows(cols, np.empty(cols.shape, np.int8))[1] == 255 * 29


# K: a 3x3 on 3 channels, one block's bound exactly (1024 x 128^2 = 2^24), one past it (two
# blocks), the largest 1x1 (1024 channels), 3x3 on 1024 channels (the most a KPU layer takes)
@pytest.mark.parametrize("m,k,oc", [(64, 1, 8), (300, 27, 24), (40, 1024, 33), (40, 1025, 16), (24, matmul.MAX_K, 24)])
def test_both_paths_give_the_exact_sums(m, k, oc):
    cols, w = _operands(m, k, oc, k)
    want = _exact(cols, w)
    ow = matmul.OffsetWeights(w)
    for path in matmul.PATHS:
        prod, sums = ow.products(cols, path)
        assert prod.shape == (m, oc)
        assert np.array_equal(prod.astype(np.int64), want), path
        assert np.array_equal(sums, cols.sum(1, dtype=np.int64))
    # the extremes are there: 128^2 K (row 0, column 0) and -128 x 127 K (row 0, column 1)
    assert want[0, 0] == 16384 * k and want[0, 1] == -16256 * k and want[1, 1] == 16129 * k


def test_the_blocks_are_what_keeps_the_float_path_exact(monkeypatch):
    # the same operands through one float32 product of all 9216 terms lose low bits: sums past
    # 2^24 are not all representable (so the test above would catch a block over the bound)
    cols, w = _operands(24, matmul.MAX_K, 24, matmul.MAX_K)
    monkeypatch.setattr(matmul, "FLOAT_BLOCK", matmul.MAX_K)
    prod, _ = matmul.OffsetWeights(w).products(cols, "float")
    assert not np.array_equal(prod.astype(np.int64), _exact(cols, w))


def test_weights_must_be_a_matrix_and_the_path_known():
    with pytest.raises(ValueError, match=r"\(K, OC\)"):
        matmul.OffsetWeights(np.zeros(8, np.uint8))
    with pytest.raises(ValueError, match="not one of"):
        matmul.OffsetWeights(np.zeros((2, 2), np.uint8)).products(np.zeros((1, 2), np.uint8), "float64")


def _calls(monkeypatch) -> dict[str, int]:
    """Count the products each path computes from now on."""
    seen = {"int": 0, "float": 0}
    for path in matmul.PATHS:
        real = getattr(matmul.OffsetWeights, f"_{path}")

        def spy(self, cols, real=real, path=path):
            seen[path] += 1
            return real(self, cols)

        monkeypatch.setattr(matmul.OffsetWeights, f"_{path}", spy)
    return seen


def _model_outputs(data: bytes, images: np.ndarray, path: str, monkeypatch) -> tuple[np.ndarray, list]:
    """run_many's outputs and image 0's whole trace with ``path`` forced; checks that only that
    path ran."""
    monkeypatch.setenv(matmul.ENV, path)
    seen = _calls(monkeypatch)
    it = Interpreter(data)
    out = it.run_many(images)
    trace = it.run(images[0], trace=True).trace
    assert seen[path] > 0 and seen[{"int": "float", "float": "int"}[path]] == 0
    monkeypatch.undo()
    return out, trace


def _images(shape: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    """``n`` random u8 images, the first all 0 and the second all 255."""
    x = np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)
    x[0], x[1] = 0, 255
    return x


def _same_through_the_model(data: bytes, x: np.ndarray, monkeypatch) -> np.ndarray:
    a, ta = _model_outputs(data, x, "int", monkeypatch)
    b, tb = _model_outputs(data, x, "float", monkeypatch)
    assert np.array_equal(a, b)
    assert [(i, name) for i, name, _ in ta] == [(i, name) for i, name, _ in tb]
    for (i, name, ya), (_, _, yb) in zip(ta, tb):
        assert np.array_equal(ya, yb), f"layer {i} ({name})"
    return a


def _two_block_model(rng: np.random.Generator, x: np.ndarray) -> bytes:
    """3x3 conv 3 -> 120 channels (stride 2 by left-top pool) -> 3x3 conv 120 -> 16 (K = 1080:
    two float blocks) -> 1x1 16 -> 24 to main memory, each layer's tables spread over its outputs
    on ``x`` (N, 3, 12, 12)."""
    l0, y0 = spread(conv_layer(rng, (12, 12, 3), 120, pool=5, src=0, dst=100)[0], x)  # lines 100-279
    l1, y1 = spread(conv_layer(rng, (6, 6, 120), 16, src=100, dst=300)[0], y0)
    l2, _ = spread(conv_layer(rng, (6, 6, 16), 24, kernel=1, src=300, dst=400, main_out=0)[0], y1)
    assert len(np.unique(y0)) > 50 and len(np.unique(y1)) > 50  # not clamped to a few values
    return write(ModelSpec([l0, l1, l2], [(0, 6 * 6 * 24)], 6 * 6 * 24))


@pytest.mark.parametrize("seed", [0, 1])
def test_a_generated_model_runs_the_same_on_either_path(seed, monkeypatch):
    x = _images((3, 12, 12), 6, seed)
    out = _same_through_the_model(_two_block_model(np.random.default_rng(seed), x), x, monkeypatch)
    assert len(np.unique(out, axis=0)) == len(x) and len(np.unique(out)) > 50  # outputs spread


def test_the_students_shape_runs_the_same_on_either_path(monkeypatch):
    data = small_model(3)
    _same_through_the_model(data, _images(Interpreter(data).input_shape, 4, 3), monkeypatch)


def test_the_newest_release_runs_the_same_on_either_path(monkeypatch):
    rel = releases()[-1] / "model.kmodel"
    if not rel.is_file():
        pytest.skip(f"{rel} absent")
    data = rel.read_bytes()
    out = _same_through_the_model(data, _images(Interpreter(data).input_shape, 4, 0), monkeypatch)
    assert out.shape[0] == 4 and np.isfinite(out).all() and len(np.unique(out, axis=0)) == 4


@pytest.mark.skipif(not (REF / "kpu_yolo.v3.kmodel").is_file(), reason="../shared reference data absent")
def test_kendrytes_yolo_runs_the_same_on_either_path(monkeypatch):
    # 1x1 layers of 1024 input channels: one block at its bound
    data = (REF / "kpu_yolo.v3.kmodel").read_bytes()
    _same_through_the_model(data, _images(Interpreter(data).input_shape, 2, 0), monkeypatch)


def test_the_environment_forces_a_path_and_auto_uses_the_measurement(monkeypatch):
    pick = {"int": "float", "float": "int"}[matmul.measurement().chosen]
    for v in ("int", "float", " Float "):
        monkeypatch.setenv(matmul.ENV, v)
        assert matmul.chosen_path() == v.strip().lower()
    for v in ("auto", ""):
        monkeypatch.setenv(matmul.ENV, v)
        assert matmul.chosen_path() == matmul.measurement().chosen
    monkeypatch.setattr(matmul, "measurement", lambda: matmul.Measurement((1, 1, 1), {}, {}, pick))
    assert matmul.chosen_path() == pick
    monkeypatch.delenv(matmul.ENV)
    assert matmul.chosen_path() == pick
    monkeypatch.setenv(matmul.ENV, "vnni")
    with pytest.raises(PokedexError, match="POKEDEX_KPU_MATMUL='vnni'") as e:
        matmul.chosen_path()
    assert "int or float" in e.value.hint


def test_a_forced_path_that_is_not_exact_here_is_refused(monkeypatch):
    m = matmul.Measurement((512, 384, 384), {"int": 1.0, "float": 2.0}, {"int": False, "float": True}, "float")
    monkeypatch.setattr(matmul, "measurement", lambda: m)
    monkeypatch.setenv(matmul.ENV, "float")
    assert matmul.chosen_path() == "float"
    monkeypatch.setenv(matmul.ENV, "int")
    with pytest.raises(PokedexError, match="int path does not give exact sums on this machine") as e:
        matmul.chosen_path()
    assert "auto picks float" in e.value.hint


def test_the_measurement_is_taken_once_per_process():
    assert matmul.measurement() is matmul.measurement()
    m = matmul.measurement()
    assert m.shape == matmul.MEASURE_SHAPE and m.exact[m.chosen]
    assert set(m.seconds) == set(m.exact) == set(matmul.PATHS) and all(s > 0 for s in m.seconds.values())
    assert m.chosen == min((p for p in matmul.PATHS if m.exact[p]), key=m.seconds.get)


def _off_by_one(monkeypatch, path: str) -> None:
    """Make ``path`` give every sum + 1."""
    real = getattr(matmul.OffsetWeights, f"_{path}")

    def wrong(self, cols):
        prod, sums = real(self, cols)
        return prod + 1, sums

    monkeypatch.setattr(matmul.OffsetWeights, f"_{path}", wrong)


@pytest.mark.parametrize(
    "faster,wrong,want",
    [("float", None, "float"), ("int", None, "int"), ("float", "float", "int"), ("int", "int", "float")],
)
def test_the_faster_exact_path_is_chosen(faster, wrong, want, monkeypatch):
    monkeypatch.setattr(matmul, "_timed", lambda ow, cols, path: 0.001 if path == faster else 0.01)
    if wrong:
        _off_by_one(monkeypatch, wrong)
    m = matmul.measure((64, 40, 16), repeats=2)
    assert m.chosen == want and m.seconds[faster] == 0.001
    assert m.exact == {p: p != wrong for p in matmul.PATHS}


def test_a_machine_where_neither_path_is_exact_is_refused(monkeypatch):
    for path in matmul.PATHS:
        _off_by_one(monkeypatch, path)
    with pytest.raises(PokedexError, match="neither matrix product"):
        matmul.measure((64, 40, 16), repeats=1)


def test_the_reference_is_exact_at_the_largest_reduction():
    cols, w = _operands(8, matmul.MAX_K, 8, 5)
    assert np.array_equal(matmul.reference_products(cols, w), _exact(cols, w))


def test_with_onednn_capped_to_avx2_the_chosen_path_is_still_exact():
    # on a VNNI machine this cap makes torch's _int_mm give wrong sums (torch 2.14): auto must
    # then pick float; wherever the cap changes nothing, whatever it picks must be exact
    code = (
        "from pokedex_host.kmodel import matmul; m = matmul.measure(); "
        "print(m.chosen, m.exact['int'], m.exact['float'])"
    )
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "POKEDEX_KPU_MATMUL": "auto"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    chosen, int_ok, float_ok = r.stdout.split()
    assert float_ok == "True" and {"int": int_ok, "float": float_ok}[chosen] == "True"


def test_the_measurement_operands_hold_the_extremes():
    cols, w = matmul.measure_operands((8, 5, 3))
    p = _exact(cols, w)
    assert (p[0, 0], p[0, 1], p[1, 1]) == (16384 * 5, -16256 * 5, 16129 * 5)


def _bench_tool():
    spec = importlib.util.spec_from_file_location("bench_interp", ROOT / "tools" / "bench_interp.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_bench_reports_the_flags_the_measurement_and_each_path(tmp_path, monkeypatch):
    bench = _bench_tool()
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC 7B12\nflags\t\t: fpu sse2 avx2 fma\n\n"
        "processor\t: 1\nflags\t\t: fpu sse2 avx2 fma\n"
    )
    assert bench.cpu_flags(info) == {
        "avx2": True,
        "avx512f": False,
        "avx512_vnni": False,
        "avx_vnni": False,
        "amx_int8": False,
    }
    assert bench.cpu_name(info) == "AMD EPYC 7B12"
    assert not any(bench.cpu_flags(tmp_path / "absent").values())
    kmodel = tmp_path / "m" / "model.kmodel"
    kmodel.parent.mkdir()
    kmodel.write_bytes(small_model(0))
    monkeypatch.setenv(matmul.ENV, "int")
    lines = bench.report([kmodel], 16)
    assert "avx2 " in lines[0] and "avx512_vnni " in lines[0]
    chosen = matmul.measurement().chosen
    assert f"chosen: {chosen} (but {matmul.ENV}=int forces int)" in lines[1]
    assert [ln.split(",")[1].split()[0] for ln in lines[2:]] == list(matmul.PATHS)
    assert all("images/s at 16 px (m/model.kmodel, 16 images" in ln for ln in lines[2:])
    assert [ln.endswith("<- chosen") for ln in lines[2:]] == [p == chosen for p in matmul.PATHS]
    assert os.environ[matmul.ENV] == "int"  # each forced run put the variable back
