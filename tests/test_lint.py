"""KPU lint rules, and the lint held to what nncase 1.9 actually does with the same graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from kpu_zoo import zoo, zoo_extra, zoo_kpu_overflow

from pokedex_host.compile.export import simplify, torch_to_onnx
from pokedex_host.compile.lint import compare_with_compiler, kpu_map_bytes, lint_model


def _graph(name: str, tmp_path: Path) -> onnx.ModelProto:
    model, size = {**zoo(), **zoo_extra(), **zoo_kpu_overflow()}[name]
    p = tmp_path / f"{name}.onnx"
    torch_to_onnx(model.eval(), size, p)
    m, _ = simplify(onnx.load(str(p)), p)
    onnx.save(m, str(p))
    return m


def _by_op(rep, op):
    return [e for e in rep.entries if e.op == op]


# What lint must say for each zoo graph: placement of each Conv/Gemm in order, and words of the reason.
EXPECTED = {
    "good_3x3_1x1_dw": (["kpu", "kpu", "kpu", "kpu+cpu", "kpu"], None),
    "good_maxpool2x2": (["kpu", "kpu"], None),
    "good_relu_leaky": (["kpu", "kpu"], None),
    "good_split_head": (["kpu", "kpu", "kpu", "kpu"], None),
    "bad_5x5": (["kpu", "cpu"], "kernel 5x5"),
    "bad_7x7_stem": (["cpu", "kpu"], "kernel 7x7"),
    "bad_stride3": (["kpu", "kpu+cpu"], "stride (3, 3)"),
    "bad_dilation": (["kpu", "kpu+cpu"], "dilation"),
    "bad_asym_pad": (["kpu", "kpu+cpu"], "padding"),
    "bad_maxpool3x3": (["kpu", "kpu"], None),
    "bad_1025_head": (["kpu", "kpu", "cpu"], "1025 channels"),
    "bad_tiny_map": (["kpu", "kpu", "kpu", "kpu+cpu"], "smaller than 4x4"),
    "bad_silu": (["kpu", "kpu"], None),
    "bad_grouped": (["kpu", "cpu"], "groups=4"),
    "bad_gemm_head": (["kpu", "kpu", "kpu+cpu"], "fully connected"),
    "bad_width_640": (["cpu"], "width 640"),
    "good_width_256": (["kpu", "kpu"], None),
    "bad_width_264": (["cpu", "cpu"], "width 264"),
    "bad_1100_channels": (["kpu", "cpu", "cpu"], "1100"),
    "good_silu_fused": (["kpu", "kpu"], None),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_lint_rules(name, tmp_path):
    rep = lint_model(_graph(name, tmp_path))
    placements, words = EXPECTED[name]
    got = [e.placement for e in rep.entries if e.op in ("Conv", "Gemm")]
    assert got == placements
    if words:
        assert any(words in e.reason for e in rep.entries), [e.reason for e in rep.entries]
        assert all(e.fix for e in rep.entries if e.placement == "cpu" and e.op == "Conv")


def test_lint_fuses_activations_and_pools_and_flags_cpu_pools(tmp_path):
    rep = lint_model(_graph("good_maxpool2x2", tmp_path))
    assert _by_op(rep, "MaxPool")[0].placement == "fused"
    rep = lint_model(_graph("bad_maxpool3x3", tmp_path))
    pool = _by_op(rep, "MaxPool")[0]
    assert pool.placement == "cpu" and "does not fuse" in pool.reason
    rep = lint_model(_graph("bad_silu", tmp_path))
    assert {e.placement for e in rep.entries if e.op in ("Sigmoid", "Mul")} == {"fused"}


def test_kpu_map_bytes_matches_the_compiler_schedule():
    # figures read from nncase 1.9's k210 schedule for MobileNetV1 a0.75 @224
    assert kpu_map_bytes(3, 224, 224) == 172032
    assert kpu_map_bytes(24, 112, 112) == 344064
    assert kpu_map_bytes(192, 28, 28) == 172032
    assert kpu_map_bytes(384, 14, 14) == 86016


@pytest.mark.parametrize(
    "name,node", [("bad_kpu_sram", "/body/body.3/Conv"), ("bad_kpu_sram_dw_s2", "/body/body.6/Conv")]
)
def test_lint_predicts_a_kpu_sram_overflow(tmp_path, name, node):
    rep = lint_model(_graph(name, tmp_path))
    assert [e.node for e in rep.kpu_over] == [node]
    assert rep.kpu_over[0].kpu_bytes >= 2 * 2**20


@pytest.mark.toolchain
def test_lint_agrees_with_nncase_on_the_zoo(toolchain_ready, tmp_path):
    """Compile every zoo graph with nncase 1.9 and compare placements. Fails on any disagreement."""
    from pokedex_host.toolchain import CompileRequest, Worker

    disagreements = {}
    with Worker(toolchain_ready) as w:
        for name in sorted({**zoo(), **zoo_extra()}):
            m = _graph(name, tmp_path)
            size = m.graph.input[0].type.tensor_type.shape.dim[2].dim_value
            d = tmp_path / name
            d.mkdir()
            np.save(d / "c.npy", np.random.default_rng(0).integers(0, 256, (2, 3, size, size), dtype=np.uint8))
            w.compile(
                CompileRequest(
                    tmp_path / f"{name}.onnx",
                    d / "m.kmodel",
                    d / "c.npy",
                    d / "dump",
                    (1, 3, size, size),
                    (0.0, 1.0),
                    log=d / "log",
                )
            )
            dis = compare_with_compiler(lint_model(m), d / "dump")
            if dis:
                disagreements[name] = dis
    assert disagreements == {}


@pytest.mark.toolchain
@pytest.mark.parametrize("name", ["bad_kpu_sram", "bad_kpu_sram_dw_s2"])
def test_nncase_refuses_what_lint_calls_a_kpu_sram_overflow(toolchain_ready, tmp_path, name):
    from pokedex_host.toolchain import CompileRequest, ToolchainError, Worker

    m = _graph(name, tmp_path)
    size = m.graph.input[0].type.tensor_type.shape.dim[2].dim_value
    np.save(tmp_path / "c.npy", np.zeros((1, 3, size, size), np.uint8))
    with Worker(toolchain_ready) as w, pytest.raises(ToolchainError) as e:
        w.compile(
            CompileRequest(
                tmp_path / f"{name}.onnx",
                tmp_path / "m.kmodel",
                tmp_path / "c.npy",
                tmp_path / "dump",
                (1, 3, size, size),
                (0.0, 1.0),
                log=tmp_path / "log",
            )
        )
    assert "ran out of memory" in str(e.value)
