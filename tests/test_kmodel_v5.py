"""The v5 container reader finds every KPU layer nncase 1.9 compiled, with the shapes its schedule lists."""

from __future__ import annotations

import pytest
from conftest import TINY_RECIPE

from pokedex_host.kmodel import KmodelFormatError, v5
from pokedex_host.kmodel.sched import parse_sched

pytestmark = pytest.mark.toolchain


def test_kpu_register_blocks_match_the_compiler_schedule(tmp_path, toolchain_ready):
    from pokedex_host.compile import BuildOptions, build_kmodel

    (tmp_path / "tiny.toml").write_text(TINY_RECIPE)
    out = tmp_path / "out"
    build_kmodel(
        BuildOptions(
            model=tmp_path / "tiny.toml", board="maix-bit-canmv", out=out, calibration_count=2, verify_count=0
        ),
        log=lambda m: None,
    )
    data = (out / "model.kmodel").read_bytes()
    model = v5.parse(data)
    assert [m.type for m in model.modules] == ["stackvm", "k210"]
    rdata = model.module("k210").section(".rdata")
    assert rdata.offset % model.alignment == 0 and rdata.size > 0
    layers = v5.kpu_layers(data, model)
    # the schedule's KPU conv outputs (buffers named after the ONNX Conv, in KPU SRAM), function by function
    # (a 64 px model splits into several K210 functions where maps shrink below 4x4)
    expected = []
    for f in sorted((out / "compiler").glob("k210_*.sched"), key=lambda p: int(p.stem.split("_")[1])):
        bufs, _ = parse_sched(f)
        expected += [
            tuple(b.shape[1:])
            for b in sorted(bufs, key=lambda b: b.id)
            if b.name.endswith("(Conv)") and b.segment in ("unknown", "kpu")
        ]
    got = [(r.out_shape[2], r.out_shape[1], r.out_shape[0]) for _, r in layers]
    assert len(layers) == 29 and got == expected
    # relocated addresses are zero in the file; KPU SRAM addresses are the schedule's, in 64-byte lines
    first = layers[0][1].fields
    assert first["para_start_addr"] == 0 and first["bwsx_base_addr"] == 0 and first["active_addr"] == 0


def test_bad_v5_files():
    with pytest.raises(KmodelFormatError):
        v5.parse(b"\x03\0\0\0" * 10)
    with pytest.raises(KmodelFormatError):
        v5.parse(
            b"LDMK\x05\0\0\0\x20\0\0\0\0\0\0\0\0\x01\0\0\x01\0\0\0" + b"\0" * 8 + b"k210" + b"\0" * 12 + b"\xff" * 32
        )
