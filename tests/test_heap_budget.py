"""Run-time memory as the board spends it: the build's budget is the free system heap after boot,
which the model and the app's camera buffers share (sensor.c mallocs them from the same heap as
kpu.load); each profile names where its figure comes from; the emulated board allocates both in
the app's order and fails in MaixPy's words when they do not fit."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import onnx
import pytest
from click.testing import CliRunner
from conftest import ROOT

from pokedex_host.boards import (
    FRAMESIZES,
    available_boards,
    camera_buffer_bytes,
    get_board,
    load_board_file,
)
from pokedex_host.cli import main
from pokedex_host.compile.budget import Budget, estimate, judge, resolve_budget
from pokedex_host.compile.export import export_model
from pokedex_host.compile.lint import LintReport, lint_model
from pokedex_host.compile.memory import MemoryReport
from pokedex_host.emulator.host import emulate
from pokedex_host.errors import PokedexError
from pokedex_host.paths import firmware_dir, releases

NEWEST = releases()[-1]  # the newest release
QVGA = 320 * 240 * 2 + 320 * 240 * 3  # 153,600 + 230,400
FRAME = ROOT / "docs" / "img" / "synthetic_frame.png"


def newest_memory() -> MemoryReport:
    m = json.loads((NEWEST / "manifest.json").read_text())["memory"]
    return MemoryReport(
        kmodel_bytes=m["kmodel_bytes"],
        input_bytes=m["input_bytes"],
        output_bytes=m["output_bytes"],
        data_bytes=m["data_bytes"],
        kpu_peak=m["kpu_sram_peak"],
    )


def profile(tmp_path: Path, base: str, name: str, **values) -> Path:
    """boards/<base>.toml as ``name`` with ``key = value`` lines replaced (None: the line removed)."""
    text = get_board(base).path.read_text().replace(f'name = "{base}"', f'name = "{name}"')
    for key, value in values.items():
        (line,) = [x for x in text.splitlines() if x.startswith(f"{key} =")]
        text = text.replace(line + "\n", "" if value is None else f'{key} = "{value}"\n')
    p = tmp_path / f"{name}.toml"
    p.write_text(text)
    return p


# -- the camera's buffers ------------------------------------------------------------------------
def test_camera_buffers_are_sensor_c_s_mallocs():
    assert camera_buffer_bytes(320, 240) == 384_000 == QVGA  # 153,600 RGB565 + 230,400 RGB888
    assert camera_buffer_bytes(320, 240, dual_buff=True) == 768_000
    assert camera_buffer_bytes(640, 480) == 1_536_000
    # the RGB565 frame rounds up to 128 B, the RGB888 copy to 64 B: 40 x 30 = 2,400 -> 2,432 and 3,600 -> 3,648
    assert camera_buffer_bytes(*FRAMESIZES["QQQQVGA"]) == 2_432 + 3_648
    assert get_board("maix-bit").camera.buffer_bytes == 384_000


def test_every_profile_counts_the_camera_the_app_sets_up_and_names_its_source():
    """firmware/main.py's setup_camera: sensor.reset() without dual_buff, then one set_framesize;
    every profile's framesize is that one, so the build counts what the app allocates."""
    tree = ast.parse((firmware_dir() / "main.py").read_text())
    (setup,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "setup_camera"]
    calls = [
        n
        for n in ast.walk(setup)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and isinstance(n.func.value, ast.Name)
        and n.func.value.id == "sensor"
    ]
    (reset,) = [c for c in calls if c.func.attr == "reset"]
    assert not [k for k in reset.keywords if k.arg == "dual_buff"]
    (size,) = [c.args[0].attr for c in calls if c.func.attr == "set_framesize"]
    for name in available_boards():
        b = get_board(name)
        assert b.camera.framesize == size, name
        assert b.model_room == b.firmware.model_ram - QVGA
        assert len(b.firmware.model_ram_source) > 20, name


def test_a_profile_must_say_where_its_figure_comes_from(tmp_path):
    p = profile(tmp_path, "maix-bit", "nosource", model_ram_source=None)
    with pytest.raises(PokedexError) as e:
        load_board_file(p)
    assert "nosource.toml" in e.value.message and "model_ram_source" in e.value.message
    assert "probe" in e.value.hint and "docs/boards.md" in e.value.hint
    p = profile(tmp_path, "maix-bit", "odd", framesize="QVGA2")
    with pytest.raises(PokedexError) as e:
        load_board_file(p)
    assert "odd.toml" in e.value.message and "'QVGA2'" in e.value.message and "QVGA" in e.value.hint


# -- the verdict ----------------------------------------------------------------------------------
def test_the_newest_release_with_the_camera_fits_the_default_profile():
    """The newest release (v15, 160 px): 2,880,604 B of model + 384,000 B of camera buffers = 3,264,604 B of maix-bit's
    3,500,000 B of free heap; the GC heap is not counted again (it is out of the figure)."""
    b = get_board("maix-bit")
    v = judge(newest_memory(), LintReport(), b, resolve_budget(b, None))
    assert v.fits and v.model_bytes == 2_880_604 and v.app_bytes == QVGA
    d = v.as_dict()
    assert d["ram_used"] == 3_264_604 and d["ram_budget"] == 3_500_000 and d["ram_headroom"] == 235_396
    assert d["model_room"] == 3_116_000
    assert [a["bytes"] for a in d["app"]] == [QVGA] and "QVGA 320x240" in d["app"][0]["what"]
    assert "maix-bit.toml" in d["budget_from"] and "4,374,528 B" in d["budget_from"]  # the profile's source
    assert "free system heap after boot" in d["budget_means"] and "GC heap is already out" in d["budget_means"]
    assert "524,288 B: not counted" in d["gc_heap"]
    # the boundary: the model and the camera to the byte
    assert judge(newest_memory(), LintReport(), b, Budget(3_264_604, "--budget")).fits
    assert not judge(newest_memory(), LintReport(), b, Budget(3_264_603, "--budget")).fits


def test_over_the_free_heap_with_the_camera_names_sizes_source_and_fixes(tmp_path):
    """3,000,000 B of free heap holds the newest release's model alone (2,880,604 B) but not the camera beside it."""
    b = get_board("maix-bit")
    v = judge(newest_memory(), LintReport(), b, resolve_budget(b, 3_000_000))
    assert not v.fits
    (p,) = v.problems
    assert "the model 2,880,604" in p and "camera buffers" in p and "384,000" in p and "over by 264,604 B" in p
    assert "3,264,604 B" in p and "--budget" in p
    text = "\n".join(v.options)
    assert "--board maix-bit-minimum" in text and "find_rects" in text and "centre 224 x 224 window" in text
    assert "utils.gc_heap_size(262144)" in text and "262,144 B more" in text
    assert "pokedex-host probe" in text
    # a profile's own figure: the problem and the --budget fix name the file and where the figure came from
    small = load_board_file(profile(tmp_path, "maix-bit", "heap3m", model_ram="3MB"))
    v = judge(newest_memory(), LintReport(), small, resolve_budget(small, None))
    assert not v.fits and "heap3m.toml" in v.problems[0] and "MaixPy-v1#180" in v.problems[0]
    (fix,) = [o for o in v.options if o.startswith("--budget SIZE")]
    assert "the free system heap your board reports" in fix and "pokedex-host probe" in fix and "#180" in fix


def test_the_build_refuses_the_newest_release_where_only_the_camera_puts_it_over(tmp_path, monkeypatch):
    """Before compiling (no compiler here): the newest release's weights fit a budget 100,000 B over them, but not
    with the camera's 384,000 B beside them -> exit 3, sized, nothing written; 384,000 B more and
    the same model passes the pre-check (and stops at the missing compiler)."""
    monkeypatch.setenv("POKEDEX_TOOLCHAIN_DIR", str(tmp_path / "no-toolchain"))
    (tmp_path / "x").mkdir()
    ex = export_model(NEWEST / "model.pt", tmp_path / "x", log=lambda m: None)
    weights = estimate(lint_model(onnx.load(str(ex.onnx_path))), ex.input_size, len(ex.classes)).weights
    out = tmp_path / "out"
    r = CliRunner().invoke(
        main,
        ["build-kmodel", str(NEWEST / "model.pt"), "--budget", str(weights + 100_000), "--out", str(out)],
        catch_exceptions=False,
    )
    assert r.exit_code == 3, r.output
    text = " ".join(r.output.split())
    assert "refused before compiling" in text and "camera buffers, QVGA 320x240" in text and "384,000" in text
    assert f"leaves {weights + 100_000 - QVGA:,} B for the model: over by {QVGA - 100_000:,} B" in text
    assert "maix-bit-minimum" in text and "gc_heap_size(262144)" in text
    assert not out.exists()
    r = CliRunner().invoke(
        main,
        ["build-kmodel", str(NEWEST / "model.pt"), "--budget", str(weights + 100_000 + QVGA), "--out", str(out)],
        catch_exceptions=False,
    )
    assert r.exit_code == 1 and "toolchain install" in r.output and "does not fit" not in r.output
    assert "budget: " in r.output and "free system heap after boot" in r.output


def test_the_report_shows_the_camera_and_the_budget_s_source(tmp_path):
    from pokedex_host.compile.record import BuildRecord
    from pokedex_host.compile.report import budget_png, report_markdown
    from pokedex_host.preprocess import InputSpec

    b = get_board("maix-bit")
    mem = newest_memory()
    v = judge(mem, LintReport(), b, resolve_budget(b, None))
    images = SimpleNamespace(x=SimpleNamespace(shape=(4,)), source="x")
    record = BuildRecord(
        source=NEWEST / "model.pt",
        board=b,
        lint=LintReport(),
        lint_disagreements=[],
        input=InputSpec(160),
        export=SimpleNamespace(source_kind="checkpoint", simplifier="-", scale_folded=True, notes=[]),
        calibration=images,
        calibration_seed=0,
        calibrate_method="l2",
        holdout=images,
        kmodel_version=3,
        nncase=b.nncase,
        reproducible=True,
        memory=mem,
        budget_source="profile",
        verdict=v,
    )
    md = report_markdown(record)
    assert "3,264,604 B" in md and "of 3,500,000 B" in md and "free system heap" in md
    assert "| **model run-time total** | **2,880,604** |" in md
    assert "| camera buffers, QVGA 320x240 (RGB565 frame + RGB888 copy for the KPU) | 384,000 |" in md
    assert "| headroom | 235,396 |" in md
    assert "MaixPy-v1#180" in md  # the profile's model_ram_source
    assert "GC heap 524,288 B: not counted" in md
    budget_png(tmp_path / "budget.png", mem, v, b.name)
    assert (tmp_path / "budget.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_boards_command_lists_heap_and_room():
    r = CliRunner().invoke(main, ["boards"])
    assert r.exit_code == 0
    (line,) = [x for x in r.output.splitlines() if x.startswith("maix-bit ")]
    assert "free heap   3.50 MB" in line and "model   3.12 MB" in line


# -- the emulated board ---------------------------------------------------------------------------
def _frames(tmp_path: Path) -> Path:
    d = tmp_path / "frames"
    d.mkdir(parents=True)
    shutil.copyfile(FRAME, d / "f000.png")
    return d


def test_dual_buffers_take_two_pairs_on_the_emulated_board(tmp_path):
    fw = tmp_path / "fw"
    fw.mkdir()
    (fw / "main.py").write_text(
        "from Maix import utils\nimport sensor\n"
        "a = utils.heap_free()\n"
        "sensor.reset(dual_buff=True)\nsensor.set_framesize(sensor.QVGA)\n"
        "b = utils.heap_free()\n"
        "sensor.reset()\nsensor.set_framesize(sensor.QVGA)\n"
        "print('TAKEN', a - b, a - utils.heap_free())\n"
    )
    res = emulate(get_board("maix-bit"), None, None, tmp_path / "emu", firmware=fw, log=lambda m: None)
    assert res.exit_code == 0, res.console
    assert f"TAKEN {2 * QVGA} {QVGA}" in res.console


def test_the_app_in_its_order_on_a_heap_too_small_for_model_and_camera(tmp_path):
    """A free heap that holds the newest release (2,880,604 B) but not the camera's 384,000 B beside it.
    The app sets the camera up first (firmware/main.py), so its check before kpu.load sees the heap
    the camera left and refuses; without that check kpu.load itself fails with MaixPy's
    ValueError (2006, ERR_NO_MEM); loaded first, the model leaves set_framesize ENOMEM."""
    need = 2_880_604
    board = load_board_file(profile(tmp_path, "maix-bit", "tight", model_ram=str(need + 100_000)))
    frames = _frames(tmp_path)
    res = emulate(board, NEWEST / "model.kmodel", frames, tmp_path / "app", log=lambda m: None)
    text = " ".join(res.console.split())
    assert res.exit_code == 0 and not res.uart_lines
    assert f"needs {need} B" in text and f"{need + 100_000 - QVGA} B free" in text and "camera's 384000 B" in text
    events = [json.loads(e) for e in (tmp_path / "app" / "events.jsonl").read_text().splitlines()]
    allocs = [(e["what"], e["bytes"]) for e in events if e["event"] == "system_alloc"]
    assert allocs[0] == ("camera buffers", QVGA) and not [e for e in events if e["event"] == "kpu_load"]
    # no model_runtime in pokedex.json: kpu.load is asked, and refuses as MaixPy does
    res = emulate(
        board,
        NEWEST / "model.kmodel",
        frames,
        tmp_path / "load",
        config_overrides={"model_runtime": None},
        log=lambda m: None,
    )
    assert "[MAIXPY]kpu: load error:2006, ERR_NO_MEM: memory not enough" in res.console, res.console
    events = [json.loads(e) for e in (tmp_path / "load" / "events.jsonl").read_text().splitlines()]
    (refused,) = [e for e in events if e["event"] == "kpu_load_refused"]
    from pokedex_host.kmodel import v3

    data = (NEWEST / "model.kmodel").read_bytes()  # kpu.load keeps the file and its main memory (the input is
    held = len(data) + v3.parse(data, "v8").main_mem_usage  # pix_to_ai's, on the GC heap)
    assert refused["needs"] == held == need - 160 * 160 * 3 and refused["has"] == need + 100_000 - QVGA
    # the same heap with room for both: the model loads beside the camera
    roomy = load_board_file(profile(tmp_path, "maix-bit", "roomy", model_ram=str(need + QVGA)))
    res = emulate(roomy, NEWEST / "model.kmodel", frames, tmp_path / "ok", log=lambda m: None)
    assert "model loaded" in res.console and len(res.uart_lines) == 1, res.console
