"""The budget judged before compiling: a model whose weights alone cannot fit is refused in seconds
(exit 3), named with its sizes, the budget and the fixes, before calibration and nncase, with
nothing written; a model over the budget whose v3 re-emission would fail too gets the sizes, not the
v3 error; the estimate matches a real kmodel."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from pokedex_host.cli import main
from pokedex_host.compile.budget import estimate
from pokedex_host.compile.export import export_model
from pokedex_host.compile.lint import lint_model
from pokedex_host.kmodel import v3
from pokedex_host.paths import releases

RELEASE = releases()[-1]  # the newest release
CAMERA = 320 * 240 * 2 + 320 * 240 * 3  # the app's QVGA camera buffers, in the same free heap
STEM_WEIGHTS = 1024 * 3 * 3 * 3  # KPU uint8: 1 B each
GEMM_WEIGHTS = 1025 * 1024  # wider than 1024: the CPU runs it in float, 4 B each


def big_gemm_onnx(path: Path) -> Path:
    """The issue's shape in small: a 3x3 stem to 1024 channels at 32 px, global average pool and a
    1024 -> 1025 Gemm, which nncase runs on the CPU in float (4.2 MB of weights, over maix-bit's
    3.5 MB). Random weights: cheap to make, as large as a real head."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array((rng.standard_normal((1024, 3, 3, 3)) * 0.1).astype(np.float32), "stem.w"),
        numpy_helper.from_array(np.zeros(1024, np.float32), "stem.b"),
        numpy_helper.from_array((rng.standard_normal((1025, 1024)) * 0.01).astype(np.float32), "fc.w"),
        numpy_helper.from_array(np.zeros(1025, np.float32), "fc.b"),
    ]
    nodes = [
        helper.make_node(
            "Conv",
            ["input", "stem.w", "stem.b"],
            ["stem"],
            name="stem",
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
            strides=[2, 2],
        ),
        helper.make_node("Relu", ["stem"], ["act"], name="act"),
        helper.make_node("GlobalAveragePool", ["act"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flat"),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "big_gemm",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1025])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 6
    onnx.save(model, str(path))
    return path


@pytest.fixture
def no_toolchain(tmp_path, monkeypatch):
    """No compiler at all: a model refused by the pre-check never gets as far as asking for one."""
    monkeypatch.setenv("POKEDEX_TOOLCHAIN_DIR", str(tmp_path / "no-toolchain"))


def build(*args):
    return CliRunner().invoke(main, ["build-kmodel", *map(str, args)], catch_exceptions=False)


def test_weights_over_the_profile_budget_are_refused_in_seconds_and_nothing_is_written(tmp_path, no_toolchain):
    model = big_gemm_onnx(tmp_path / "big-gemm.onnx")
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.kmodel").write_bytes(b"an earlier build")
    before = sorted(p.name for p in tmp_path.iterdir())
    t = time.monotonic()
    r = build(model, "--board", "maix-bit", "--out", out)
    seconds = time.monotonic() - t
    assert r.exit_code == 3, r.output
    assert seconds < 30, seconds
    assert "big-gemm.onnx" in r.output and "refused before compiling" in r.output
    assert f"{STEM_WEIGHTS + 4 * GEMM_WEIGHTS:,} B" in r.output  # the weights as the kmodel would hold them
    assert f"{4 * GEMM_WEIGHTS:,} B in float on the CPU" in r.output
    assert "3,500,000 B" in r.output  # maix-bit's budget
    assert "estimated kmodel" in r.output and "largest items" in r.output
    for fix in (
        "fc runs on the CPU in float",
        "width multiplier",
        "fewer classes",
        "--board maix-bit-minimum",
        "minimum firmware",
        "--budget SIZE",
    ):
        assert fix in r.output, fix
    assert "compiled in" not in r.output and "calibration:" not in r.output and "toolchain install" not in r.output
    # the output folder as it was, and no staging folder left beside it
    assert [p.name for p in out.iterdir()] == ["model.kmodel"]
    assert (out / "model.kmodel").read_bytes() == b"an earlier build"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_low_budget_refuses_a_recipe_before_calibration(tiny_recipe, tmp_path, no_toolchain):
    out = tmp_path / "out"
    r = build(tiny_recipe, "--budget", "600kB", "--calibration", tmp_path / "no-images", "--out", out)
    assert r.exit_code == 3, r.output
    assert "tiny.toml" in r.output and "weights alone" in r.output and "(from --budget) is 600,000 B" in r.output
    assert f"leaves {600_000 - CAMERA:,} B for the model" in r.output  # once the camera has its buffers
    assert "width multiplier 0.25 -> " in r.output
    assert "a larger --budget than 600.0 kB" in r.output and "--board maix-bit-minimum" in r.output
    assert not out.exists()


def test_a_model_whose_weights_fit_passes_the_precheck(tiny_recipe, tmp_path, no_toolchain):
    """The pre-check refuses only what the weights alone rule out: the tiny student (about 0.5 MB)
    goes on to the next step, which here is asking for the compiler."""
    r = build(tiny_recipe, "--out", tmp_path / "out")
    assert r.exit_code == 1 and "toolchain install" in r.output, r.output
    assert "budget pre-check: weights" in r.output and "does not fit" not in r.output


def test_the_estimate_matches_the_released_kmodel(tmp_path):
    """The newest release (α0.75, 1025 classes, at its own input): the estimate from the graph
    against the v3 file."""
    ex = export_model(RELEASE / "model.pt", tmp_path, log=lambda m: None)
    est = estimate(lint_model(onnx.load(str(ex.onnx_path))), ex.input_size, len(ex.classes))
    kmodel = v3.read(RELEASE / "model.kmodel")
    assert est.cpu_weights == 0
    assert est.kpu_weights == sum(lay.conv.weights_size for lay in kmodel.conv_layers)  # a byte a weight
    size = (RELEASE / "model.kmodel").stat().st_size
    assert abs(est.kmodel - size) < 0.002 * size, (est.kmodel, size)
    assert est.input_bytes == 3 * ex.input_size**2 and ex.input_size in (128, 160)


@pytest.mark.toolchain
def test_over_budget_after_compiling_names_the_sizes_before_the_v3_refusal(toolchain_ready, tmp_path, dataset):
    """A 5x5 conv runs on the CPU, which kmodel v3 cannot express. With a budget its weights fit but
    the compiled model does not, the stop is the budget (exit 3, the v5 build's sizes) with the v3
    failure noted, not the v3 layer error; with room, the v3 error stands."""
    import kpu_zoo
    import torch

    net, size = kpu_zoo.zoo()["bad_5x5"]
    model = tmp_path / "five.onnx"
    torch.manual_seed(0)
    torch.onnx.export(
        net.eval(),
        torch.zeros(1, 3, size, size),
        str(model),
        opset_version=11,
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
    )
    (tmp_path / "x").mkdir()
    ex = export_model(model, tmp_path / "x", log=lambda m: None)
    est = estimate(lint_model(onnx.load(str(ex.onnx_path))), ex.input_size, len(ex.classes))
    common = ["--calibration", dataset, "--calibration-count", 4, "--verify-count", 0, "--format", "v3"]
    out = tmp_path / "out"
    r = build(model, *common, "--budget", est.weights + CAMERA + 1, "--out", out)
    assert r.exit_code == 3, r.output
    assert "budget pre-check" in r.output and "compiled in" in r.output  # it got past the pre-check
    assert "five.onnx: the model does not fit maix-bit" in r.output and "of RAM at run time" in r.output
    assert f"budget is {est.weights + CAMERA + 1:,} B" in r.output
    assert "the v3 re-emission stopped too" in r.output and "CONV2D" in r.output
    assert not out.exists()
    r = build(model, *common, "--out", out)
    assert r.exit_code == 1 and "v3 has no layer for nncase's CONV2D" in r.output and "does not fit" not in r.output
    assert not out.exists()
