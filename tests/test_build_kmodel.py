"""build-kmodel end to end through the CLI, on a tiny 1025-class student and generated images."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pokedex_host.cli import main

pytestmark = pytest.mark.toolchain


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def build(recipe, data, out, *extra):
    return run(
        "build-kmodel",
        recipe,
        "--calibration",
        data,
        "--calibration-count",
        8,
        "--verify-count",
        6,
        "--out",
        out,
        *extra,
    )


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_tiny_model_builds_fits_and_verifies(toolchain_ready, tiny_recipe, dataset, tmp_path):
    out = tmp_path / "out"
    r = build(tiny_recipe, dataset, out, "--board", "maix-bit-canmv")
    assert r.exit_code == 0, r.output
    names = {p.name for p in out.iterdir()}
    assert {"model.kmodel", "classes.txt", "manifest.json", "report.md", "budget.png", "model.onnx"} <= names
    assert (out / "model.kmodel").read_bytes()[:8] == b"LDMK\x05\x00\x00\x00"
    assert (out / "budget.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = (out / "classes.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1025 and lines[0] == "0001\tBulbasaur\tBulbasaur" and lines[28] == "0029\tNidoran♀\tNidoran-F"
    m = json.loads((out / "manifest.json").read_text())
    for f, info in m["files"].items():
        assert sha(out / f) == info["sha256"] and (out / f).stat().st_size == info["bytes"]
    assert m["kmodel"]["version"] == 5 and m["kmodel"]["compiler"] == "nncase 1.9.0.20230322"
    camera = 320 * 240 * 2 + 320 * 240 * 3  # maix-bit-canmv's QVGA camera buffers, counted beside the model
    assert m["budget"]["fits"] is True and m["budget"]["model_bytes"] == m["memory"]["runtime_total"]
    assert m["budget"]["ram_used"] == m["memory"]["runtime_total"] + camera
    mem = m["memory"]
    assert mem["runtime_total"] == mem["kmodel_bytes"] + mem["data_bytes"] + mem["input_bytes"] + mem["output_bytes"]
    assert mem["input_bytes"] == 3 * 128 * 128 and mem["output_bytes"] >= 1025 * 4
    assert 0 < mem["kpu_sram_peak"] <= 2 * 2**20
    assert mem["crosscheck"] == []
    assert m["lint"]["disagreements_with_compiler"] == []
    assert m["input"]["shape"] == [1, 3, 128, 128] and m["input"]["dtype"] == "uint8"
    assert len(m["calibration"]["files"]) == 8 and m["calibration"]["seed"] == 0
    v = m["verification"]
    assert v["images"] == 6 and v["labelled"] == 6 and v["cosine_mean"] > 0.98
    assert m["source"]["sha256"] == sha(tiny_recipe)
    report = (out / "report.md").read_text()
    assert "fits" in report and "top-1" in report and "budget.png" in report
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no staging left


def test_same_inputs_give_a_byte_identical_kmodel(toolchain_ready, tiny_recipe, dataset, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert build(tiny_recipe, dataset, a, "--verify-count", 0).exit_code == 0
    assert build(tiny_recipe, dataset, b, "--verify-count", 0).exit_code == 0
    assert (a / "model.kmodel").read_bytes()[:4] == b"\x03\x00\x00\x00"  # maix-bit: v3
    assert sha(a / "model.kmodel") == sha(b / "model.kmodel")
    assert sha(a / "model.v5.kmodel") == sha(b / "model.v5.kmodel")
    assert (a / "classes.txt").read_bytes() == (b / "classes.txt").read_bytes()


def test_v5_for_stock_maixpy_warns_loudly(toolchain_ready, tiny_recipe, dataset, tmp_path):
    out = tmp_path / "out"
    r = build(tiny_recipe, dataset, out, "--board", "maix-bit", "--format", "v5", "--verify-count", 0)
    assert r.exit_code == 0, r.output
    assert "ERR_KMODEL_VERSION" in r.output and "--format v3" in r.output
    m = json.loads((out / "manifest.json").read_text())
    assert any("ERR_KMODEL_VERSION" in w for w in m["warnings"])
    assert m["kmodel"]["loads_on_board_firmware"] is False
    assert "ERR_KMODEL_VERSION" in (out / "report.md").read_text()


def test_over_budget_exits_3_with_a_breakdown_and_writes_nothing(toolchain_ready, tiny_recipe, dataset, tmp_path):
    """A budget the weights fit (so the pre-check lets it compile) but the compiled model does not."""
    import onnx

    from pokedex_host.compile.budget import estimate
    from pokedex_host.compile.export import export_model
    from pokedex_host.compile.lint import lint_model

    (tmp_path / "x").mkdir()
    ex = export_model(tiny_recipe, tmp_path / "x", log=lambda m: None)
    weights = estimate(lint_model(onnx.load(str(ex.onnx_path))), ex.input_size, len(ex.classes)).weights
    out = tmp_path / "out"
    r = build(tiny_recipe, dataset, out, "--budget", weights + 384_000 + 1)  # the weights fit beside the camera
    assert r.exit_code == 3, r.output
    assert "compiled in" in r.output and "tiny.toml: the model does not fit" in r.output and "largest items" in r.output
    assert "weights of" in r.output and "options" in r.output and "width multiplier" in r.output
    assert not out.exists()


def test_budget_above_what_the_firmware_leaves_warns(toolchain_ready, tiny_recipe, dataset, tmp_path):
    r = build(tiny_recipe, dataset, tmp_path / "o", "--budget", "6MB", "--verify-count", 0)
    assert r.exit_code == 0
    assert "above what maixpy full firmware leaves" in r.output and "3.50 MB" in r.output


def test_max_loss_makes_a_flagged_model_fatal(toolchain_ready, tiny_recipe, dataset, tmp_path):
    out = tmp_path / "out"
    # a negative allowance cannot be met, so this exercises the fatal path deterministically
    r = build(tiny_recipe, dataset, out, "--threshold", "-1", "--max-loss", "-1")
    assert r.exit_code == 4, r.output
    assert "--max-loss" in r.output and not out.exists()


def test_kpu_sram_overflow_is_refused_before_compiling(toolchain_ready, tmp_path, dataset):
    recipe = tmp_path / "wide.toml"
    recipe.write_text('family = "kpu_mobilenet_v1"\n[config]\nwidth = 1.0\ninput = 256\nclasses = 1025\n')
    r = build(recipe, dataset, tmp_path / "o", "--verify-count", 0)
    assert r.exit_code == 3, r.output
    assert "KPU SRAM" in r.output and "/features/" in r.output


@pytest.mark.parametrize(
    "args,code,words",
    [
        (["--budget", "lots"], 2, "is not a size"),
        (["--board", "maix-nano"], 1, "unknown board"),
        (["--format", "v4"], 2, "'v4' is not one of"),
    ],
)
def test_bad_options(toolchain_ready, tiny_recipe, dataset, tmp_path, args, code, words):
    r = build(tiny_recipe, dataset, tmp_path / "o", *args)
    assert r.exit_code == code and words in r.output
    assert not (tmp_path / "o").exists()


def test_bad_model_and_calibration_inputs(toolchain_ready, tiny_recipe, dataset, tmp_path):
    r = build(tmp_path / "nothing.pt", dataset, tmp_path / "o")
    assert r.exit_code == 1 and "nothing.pt" in r.output and "does not exist" in r.output
    (tmp_path / "empty").mkdir()
    r = build(tiny_recipe, tmp_path / "empty", tmp_path / "o")
    assert r.exit_code == 1 and "empty" in r.output and "no images" in r.output
    assert not (tmp_path / "o").exists()


def test_missing_toolchain_says_how_to_install(tiny_recipe, dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("POKEDEX_TOOLCHAIN_DIR", str(tmp_path / "none"))
    r = build(tiny_recipe, dataset, tmp_path / "o")
    assert r.exit_code == 1 and "toolchain install" in r.output


def test_default_model_fits_stock_maixpy(toolchain_ready, tmp_path):
    """The README's main job: MobileNetV1 a0.75 @224, 1025 classes, within maix-bit's 3.5 MB of free heap
    beside the camera's buffers (a few images here)."""
    from pokedex_host import paths

    out = tmp_path / "default"
    r = run(
        "build-kmodel",
        paths.models_dir() / "kpu_mobilenet_v1-075-224.toml",
        "--board",
        "maix-bit",
        "--verify-count",
        4,
        "--out",
        out,
    )
    assert r.exit_code == 0, r.output
    m = json.loads((out / "manifest.json").read_text())
    assert m["classes"] == 1025
    assert m["memory"]["runtime_total"] + 384_000 <= 3_500_000 and m["budget"]["fits"]
    assert m["memory"]["kpu_sram_peak"] <= 2 * 2**20
    assert m["lint"]["cpu_fallbacks"] == [] and m["lint"]["disagreements_with_compiler"] == []
    assert m["verification"]["cosine_mean"] > 0.99


@pytest.mark.slow
def test_default_model_verification_on_200_images(toolchain_ready, tmp_path):
    """The large check: 200 held-out images through onnxruntime and the simulator."""
    from pokedex_host import paths

    out = tmp_path / "default"
    r = run(
        "build-kmodel",
        paths.models_dir() / "kpu_mobilenet_v1-075-224.toml",
        "--board",
        "maix-bit-canmv",
        "--verify-count",
        200,
        "--out",
        out,
    )
    assert r.exit_code == 0, r.output
    v = json.loads((out / "manifest.json").read_text())["verification"]
    assert v["images"] == 200 and v["cosine_min"] > 0.98


def _onnx_with(op: str, path: Path) -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).normal(0, 0.1, (8, 3, 3, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("GlobalAveragePool", ["c"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node(op, ["f"], ["logits"], name="odd_op", equation="ij->ij"),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 8])],
        [w],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 12)])
    m.ir_version = 7
    onnx.save(m, str(path))
    return path


def test_an_op_nncase_cannot_import_is_named(toolchain_ready, dataset, tmp_path):
    src = _onnx_with("Einsum", tmp_path / "einsum.onnx")
    classes = tmp_path / "classes.txt"
    classes.write_text("".join(f"{i:04d} x\n" for i in range(1, 9)))
    r = build(src, dataset, tmp_path / "o", "--classes", classes, "--verify-count", 0)
    assert r.exit_code == 1
    assert "einsum.onnx" in r.output and "cannot import the ONNX op Einsum" in r.output and "odd_op" in r.output
    assert not (tmp_path / "o").exists()
