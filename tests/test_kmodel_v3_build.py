"""build-kmodel --format v3 against nncase 1.9: the re-emitted v3 file, run by our interpreter,
gives the simulator's outputs on the v5 file bit for bit; the emulated MaixPy board runs it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SHARED, TINY_RECIPE, make_dataset
from PIL import Image

from pokedex_host.cli import main
from pokedex_host.kmodel import v3
from pokedex_host.kmodel.interp import Interpreter, run_batch
from pokedex_host.pixels import G628, RB528

pytestmark = pytest.mark.toolchain
ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "models" / "releases" / "kpu_mobilenet_v1-075-128-v0"
POKEMON = SHARED / "data" / "pokemon"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_v3_build_is_the_default_for_maixpy_and_matches_the_simulator(tiny_v3_build):
    out = tiny_v3_build
    data = (out / "model.kmodel").read_bytes()
    assert data[:4] == b"\x03\x00\x00\x00" and (out / "model.v5.kmodel").read_bytes()[:4] == b"LDMK"
    m = v3.parse(data)
    assert [lay.name for lay in m.layers] == ["K210_CONV"] * 29 + ["DEQUANTIZE", "DEQUANTIZE", "GLOBAL_AVERAGE_POOL2D"]
    assert m.outputs[0][1] == 1025 * 4
    man = json.loads((out / "manifest.json").read_text())
    assert man["kmodel"]["version"] == 3 and man["kmodel"]["loads_on_board_firmware"] is True
    assert man["kmodel"]["re_emitted_from"] == "model.v5.kmodel" and len(man["kmodel"]["dequantize"]) == 2
    mem = man["memory"]
    assert mem["kmodel_bytes"] == len(data) and mem["data_bytes"] == m.main_mem_usage and mem["output_bytes"] == 0
    assert mem["runtime_total"] == len(data) + m.main_mem_usage + 3 * 128 * 128
    ver = man["verification"]
    board_rt = ver["v3_vs_v5"].pop("board_runtime")
    assert ver["v3_vs_v5"] == {"images": 4, "identical": 4, "max_abs_diff": 0.0, "quantize_ties": 0}
    # MaixPy's own library (the maix-bit runtime): a fused multiply-add in DEQUANTIZE moves the last bits
    assert board_rt["runtime"] == "maixpy" and board_rt["images"] == 4
    assert board_rt["max_abs_diff"] < 1e-4 and board_rt["top1_agreement"] == 100.0
    assert "model.v5.kmodel" in man["files"] and not man["warnings"]
    assert "bit for bit" in (out / "report.md").read_text()


@pytest.mark.skipif(not POKEMON.is_dir(), reason="../shared Pokémon images absent")
def test_v3_of_the_released_model_on_real_images(toolchain_ready, tmp_path):
    """CI's handful: the trained 1025-class student, 8 real images, v3 (interpreted) == v5 (simulated)."""
    from pokedex_host.compile.calibration import pick_images
    from pokedex_host.toolchain import simulate_parallel

    out = tmp_path / "rel"
    r = run(
        "build-kmodel",
        RELEASE / "model.pt",
        "--format",
        "v3",
        "--calibration",
        POKEMON,
        "--calibration-count",
        8,
        "--verify-count",
        8,
        "--out",
        out,
    )
    assert r.exit_code == 0, r.output
    man = json.loads((out / "manifest.json").read_text())
    assert man["verification"]["v3_vs_v5"]["identical"] == 8
    assert man["budget"]["fits"] and man["memory"]["runtime_total"] <= 3_500_000
    # and on 8 more images picked afresh, through the public functions
    imgs = pick_images(POKEMON, 8, 128, seed=99, log=lambda m: None)
    a = run_batch((out / "model.kmodel").read_bytes(), imgs.x)
    b = simulate_parallel(out / "model.v5.kmodel", imgs.x, workers=2).reshape(a.shape)
    assert np.array_equal(a.view(np.uint32), b.astype(np.float32).view(np.uint32))
    assert (a.argmax(1) == b.argmax(1)).all()


@pytest.mark.slow
@pytest.mark.skipif(not POKEMON.is_dir(), reason="../shared Pokémon images absent")
def test_v3_equals_v5_on_300_held_out_images(toolchain_ready, tmp_path):
    """The large check: 300 images of the data pipeline's held-out test split when this checkout has
    processed data, else 300 images from ../shared (the bit-for-bit claim does not depend on which)."""
    from pokedex_host.compile.calibration import pick_images
    from pokedex_host.toolchain import simulate_parallel

    test_split = ROOT / "data" / "processed" / "classify" / "test"
    src = test_split if test_split.is_dir() else POKEMON
    out = tmp_path / "rel"
    r = run(
        "build-kmodel",
        RELEASE / "model.pt",
        "--format",
        "v3",
        "--calibration",
        POKEMON,
        "--verify-count",
        0,
        "--out",
        out,
    )
    assert r.exit_code == 0, r.output
    imgs = pick_images(src, 300, 128, seed=7, log=lambda m: None)
    a = run_batch((out / "model.kmodel").read_bytes(), imgs.x, workers=2)
    b = simulate_parallel(out / "model.v5.kmodel", imgs.x, workers=2).reshape(a.shape)
    same = [np.array_equal(x.view(np.uint32), y.astype(np.float32).view(np.uint32)) for x, y in zip(a, b)]
    assert sum(same) == 300
    assert (a.argmax(1) == b.argmax(1)).all()


def test_a_model_nncase_splits_builds_as_v3(toolchain_ready, dataset, tmp_path):
    # 64 px: the last maps are 2x2, which nncase 1.9 slices and pads on the CPU between five KPU
    # functions; the v3 file gathers those maps with CONCAT and sends them back with K210_UPLOAD
    tiny64 = tmp_path / "tiny64.toml"
    tiny64.write_text(TINY_RECIPE)
    out = tmp_path / "o"
    r = run(
        "build-kmodel",
        tiny64,
        "--format",
        "v3",
        "--calibration",
        dataset,
        "--calibration-count",
        4,
        "--verify-count",
        6,
        "--simulate-count",
        6,
        "--out",
        out,
    )
    assert r.exit_code == 0, r.output
    assert "in 5 KPU function(s)" in r.output
    man = json.loads((out / "manifest.json").read_text())
    assert man["kmodel"]["v3_vs_v5"]["identical"] == man["kmodel"]["v3_vs_v5"]["images"] == 6
    names = [lay.name for lay in v3.read(out / "model.kmodel").layers]
    assert names.count("K210_UPLOAD") == 4 and names[0] == "K210_CONV" and names[-1] == "GLOBAL_AVERAGE_POOL2D"
    first_upload = names.index("K210_UPLOAD")
    assert "CONCAT" in names[:first_upload] and names[first_upload + 1] == "K210_CONV"


def test_maixpy_app_on_the_emulator_runs_the_v3_bytes(tiny_v3_build, tmp_path):
    from pokedex_host.boards import get_board
    from pokedex_host.emulator.host import emulate

    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(4)
    for i in range(3):  # colours exact in RGB565, so the sensor's conversion changes nothing
        q = rng.integers(0, 32, (30, 40, 3)).repeat(8, 0).repeat(8, 1)
        a = np.stack([RB528[q[..., 0]], G628[2 * q[..., 1]], RB528[q[..., 2]]], -1)  # MaixPy's 5/6 -> 8 bit tables
        Image.fromarray(a.astype(np.uint8)).save(frames / f"f{i}.png")
    exact = {
        "camera": {"framesize": "QVGA", "window": [128, 128], "resize": False, "hmirror": False, "vflip": False},
        "card": None,
        "smoothing": 0.0,
        "threshold": 0.0,
    }
    res = emulate(
        get_board("maix-bit"),
        tiny_v3_build / "model.kmodel",
        frames,
        tmp_path / "emu",
        config_overrides=exact,
        log=lambda m: None,
    )
    assert res.exit_code == 0, res.console
    assert "ERR_KMODEL_VERSION" not in res.console and len(res.uart_lines) == 3
    it = Interpreter((tiny_v3_build / "model.kmodel").read_bytes(), runtime="maixpy")  # MaixPy's KPU library
    want = []
    for f in sorted(frames.iterdir()):
        x = np.ascontiguousarray(np.asarray(Image.open(f))[0:128, 0:128].transpose(2, 0, 1))
        want.append(int(it.run_output(x).argmax()) + 1)
    assert [int(line.split("\t")[2]) for line in res.uart_lines] == want


def test_kmodel_run_cli(tiny_v3_build, tmp_path):
    d = make_dataset(tmp_path / "imgs", species=2, per_species=1, size=96)
    files = sorted(p for p in d.rglob("*.png"))
    r = run("kmodel", "run", tiny_v3_build / "model.kmodel", *files, "--labels", tiny_v3_build / "classes.txt")
    assert r.exit_code == 0, r.output
    assert r.output.count("#") >= 2 * 3


def test_a_corrupt_v3_is_refused_on_the_emulated_board(tiny_v3_build, tmp_path):
    from pokedex_host.boards import get_board
    from pokedex_host.emulator.host import emulate

    bad = tmp_path / "build"
    bad.mkdir()
    data = bytearray((tiny_v3_build / "model.kmodel").read_bytes())
    data[12:16] = (100000).to_bytes(4, "little")  # layers_length
    (bad / "model.kmodel").write_bytes(bytes(data))
    for f in ("classes.txt", "manifest.json"):
        (bad / f).write_bytes((tiny_v3_build / f).read_bytes())
    frames = make_dataset(tmp_path / "f", species=1, per_species=1, size=96) / "0001"
    res = emulate(get_board("maix-bit"), bad / "model.kmodel", frames, tmp_path / "emu", log=lambda m: None)
    assert "ERR_KMODEL_FORMAT" in res.console and "2003" in res.console and "layers_length" in res.console


def test_v3_is_checked_even_without_verification(toolchain_ready, tiny_recipe, dataset, tmp_path):
    out = tmp_path / "o"
    r = run(
        "build-kmodel",
        tiny_recipe,
        "--calibration",
        dataset,
        "--calibration-count",
        4,
        "--verify-count",
        0,
        "--out",
        out,
    )
    assert r.exit_code == 0, r.output
    man = json.loads((out / "manifest.json").read_text())
    assert man["verification"] is None
    assert man["kmodel"]["v3_vs_v5"] == {"images": 2, "identical": 2, "max_abs_diff": 0.0, "quantize_ties": 0}
    assert "v3 check" in (out / "report.md").read_text()
