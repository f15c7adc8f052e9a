"""Firmware builds as data (boards/firmware/*.toml): what each lacks, the emulator refusing it as
MicroPython does, the app doing without it, the system heap the app checks before kpu.load, and
install's warnings. The app runs on release models (v3, the project's interpreter: no compiler)."""

from __future__ import annotations

import ast
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pokedex_host.boards import get_board, load_board_file
from pokedex_host.emulator.host import emulate
from pokedex_host.errors import PokedexError
from pokedex_host.families import APP_IMAGE_CALLS
from pokedex_host.paths import firmware_dir, releases, repo_root

FRAME = repo_root() / "docs" / "img" / "synthetic_frame.png"  # a card on a desk, QVGA (tools/demo_frame.py)
CAMERA = 320 * 240 * 2 + 320 * 240 * 3


def _profile(tmp_path: Path, base: str, name: str, **values) -> Path:
    """A copy of boards/<base>.toml named ``name`` with ``key = "value"`` lines replaced."""
    text = get_board(base).path.read_text()
    text = text.replace(f'name = "{base}"', f'name = "{name}"')
    for key, value in values.items():
        lines = [line for line in text.splitlines() if line.startswith(f"{key} =")]
        assert len(lines) == 1, key
        text = text.replace(lines[0], f'{key} = "{value}"')
    p = tmp_path / f"{name}.toml"
    p.write_text(text)
    return p


def _script(tmp_path: Path, board, code: str, kmodel: Path | None = None):
    fw = tmp_path / "fw"
    fw.mkdir(parents=True, exist_ok=True)
    (fw / "main.py").write_text(code)
    return emulate(board, kmodel, None, tmp_path / "emu", firmware=fw, log=lambda m: None)


def _frames(tmp_path: Path) -> Path:
    d = tmp_path / "frames"
    d.mkdir(parents=True)
    shutil.copyfile(FRAME, d / "f000.png")
    return d


def test_the_minimum_build_lacks_what_its_source_leaves_out():
    full, minimum = get_board("maix-bit").firmware.build, get_board("maix-bit-minimum").firmware.build
    assert full.path == minimum.path and full.path.name == "maixpy.toml"
    assert full.image_lacks == ()
    assert {"find_rects", "find_blobs", "rotation_corr", "get_statistics", "binary", "gaussian", "replace"} <= set(
        minimum.image_lacks
    )
    assert not {"copy", "resize", "pix_to_ai", "draw_string", "set_pixel"} & set(minimum.image_lacks)
    assert "OMV_MINIMUM" in minimum.config
    assert full.banner == "MicroPython v0.6.3-2-gd8901fd22 on 2024-06-17; Sipeed_M1 with kendryte-k210"
    assert get_board("maix-bit-canmv").firmware.build.platform == "CanMV"
    assert get_board("maix-bit-baremetal").firmware.build is None  # no MicroPython


def test_a_flavour_the_table_does_not_know_names_the_table(tmp_path):
    p = _profile(tmp_path, "maix-bit", "odd", flavour="tiny")
    with pytest.raises(PokedexError) as e:
        load_board_file(p)
    assert "tiny" in e.value.message and "maixpy.toml" in e.value.message and "odd.toml" in e.value.message
    assert "minimum" in e.value.hint


def test_the_firmware_s_lists_of_image_calls_are_the_host_s():
    """firmware/pk_app.py asks hasattr for the same names install and probe judge by, and the
    app calls none of what the minimum build lacks outside the optional lists."""
    tree = ast.parse((firmware_dir() / "pk_app.py").read_text())
    lists = {
        t.id: ast.literal_eval(n.value)
        for n in tree.body
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Name) and t.id.endswith("_CALLS")
    }
    assert lists == {
        "APP_CALLS": APP_IMAGE_CALLS["camera app"],
        "LOCATOR_CALLS": APP_IMAGE_CALLS["card locator"],
        "MIRROR_CALLS": APP_IMAGE_CALLS["mirror image"],
    }
    optional = set(lists["LOCATOR_CALLS"]) | set(lists["MIRROR_CALLS"])
    lacks = set(get_board("maix-bit-minimum").firmware.build.image_lacks)
    for f in ("main.py", "pk_card.py"):
        called = {
            n.func.attr
            for n in ast.walk(ast.parse((firmware_dir() / f).read_text()))
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
        }
        assert called & lacks <= optional, (f, called & lacks - optional)


def test_the_emulated_minimum_build_refuses_what_it_lacks_in_micropython_s_words(tmp_path):
    code = (
        "import image\n"
        "img = image.Image(size=(8, 8))\n"
        "print('HAS', hasattr(img, 'find_rects'), hasattr(img, 'replace'), hasattr(img, 'resize'))\n"
        "img.find_rects()\n"
    )
    res = _script(tmp_path / "min", get_board("maix-bit-minimum"), code)
    assert "HAS False False True" in res.console
    assert res.exit_code == 3 and "AttributeError: 'Image' object has no attribute 'find_rects'" in res.console
    res = _script(tmp_path / "full", get_board("maix-bit"), code)
    assert "HAS True True True" in res.console and res.exit_code == 0, res.console


def test_each_family_imports_only_its_own_modules(tmp_path):
    code = "try:\n    import {}\nexcept ImportError as e:\n    print('REFUSED', e)\n"
    res = _script(tmp_path / "a", get_board("maix-bit"), code.format("maix"))
    assert "REFUSED no module named 'maix'" in res.console
    res = _script(tmp_path / "b", get_board("maix-bit-canmv"), code.format("KPU"))
    assert "REFUSED no module named 'KPU'" in res.console
    res = _script(tmp_path / "c", get_board("maix-bit"), code.format("KPU"))
    assert "REFUSED" not in res.console and res.exit_code == 0, res.console


def test_the_system_heap_is_the_profile_s_less_camera_and_model(tmp_path):
    """Maix.utils.heap_free(): the profile's model_ram at boot (the free heap after boot); the
    camera takes its buffers at set_framesize (reset frees them), kpu.load takes the file and its
    main memory, deinit gives it back."""
    from pokedex_host.kmodel import v3

    kmodel = releases()[0] / "model.kmodel"
    data = kmodel.read_bytes()
    model = len(data) + v3.parse(data, str(kmodel)).main_mem_usage
    board = get_board("maix-bit")
    res = _script(
        tmp_path,
        board,
        (
            "from Maix import utils\n"
            "import sensor, KPU as kpu\n"
            "print('BOOT', utils.heap_free(), utils.gc_heap_size())\n"
            "sensor.reset()\n"
            "sensor.set_framesize(sensor.QVGA)\n"
            "sensor.set_framesize(sensor.QVGA)\n"  # the same size: nothing reallocated
            "print('CAMERA', utils.heap_free())\n"
            "t = kpu.load('/sd/model.kmodel')\n"
            "print('MODEL', utils.heap_free())\n"
            "kpu.deinit(t)\n"
            "sensor.reset()\n"
            "print('BACK', utils.heap_free())\n"
        ),
        kmodel,
    )
    assert res.exit_code == 0, res.console
    ram = board.firmware.model_ram
    assert f"BOOT {ram} {board.firmware.gc_heap_size}" in res.console
    assert f"CAMERA {ram - CAMERA}" in res.console and f"MODEL {ram - CAMERA - model}" in res.console
    assert f"BACK {ram}" in res.console


def test_a_model_first_can_leave_the_camera_no_room(tmp_path):
    from pokedex_host.kmodel import v3

    kmodel = releases()[0] / "model.kmodel"
    data = kmodel.read_bytes()
    model = len(data) + v3.parse(data, str(kmodel)).main_mem_usage
    board = load_board_file(_profile(tmp_path, "maix-bit", "tight", model_ram=str(model + 100_000)))
    res = _script(
        tmp_path,
        board,
        (
            "import sensor, KPU as kpu\n"
            "t = kpu.load('/sd/model.kmodel')\n"
            "sensor.reset()\n"
            "try:\n"
            "    sensor.set_framesize(sensor.QVGA)\n"
            "except OSError as e:\n"
            "    print('CAMERA', e)\n"
        ),
        kmodel,
    )
    assert "CAMERA [Errno 12] ENOMEM" in res.console, res.console


def test_the_app_on_the_minimum_build_classifies_the_centre_and_says_so(tmp_path):
    kmodel = releases()[0] / "model.kmodel"
    frames = _frames(tmp_path)
    res = emulate(get_board("maix-bit-minimum"), kmodel, frames, tmp_path / "min", log=lambda m: None)
    assert res.exit_code == 0, res.console
    assert "no img.find_rects" in res.console and "no card locator" in res.console
    assert "no img.replace" in res.console and "one KPU run per frame" in res.console
    (line,) = res.uart_lines
    f = line.split("\t")
    assert f[7] == "off" and f[8] == "48,8,224,224" and f[9] == "-"  # the centre 224 x 224 of the QVGA frame
    runs = [json.loads(e) for e in (tmp_path / "min" / "events.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "kpu_run" for e in runs) == 1  # no mirror image
    lcd = np.asarray(Image.open(tmp_path / "min" / "lcd_0000.png")).astype(int)
    edge = lcd[60:180, 48]  # the yellow box around the crop
    assert ((edge[:, 0] > 200) & (edge[:, 1] > 180) & (edge[:, 2] < 80)).mean() > 0.9
    # the full build finds the card on the same frame
    res = emulate(get_board("maix-bit"), kmodel, frames, tmp_path / "full", log=lambda m: None)
    assert res.uart_lines[0].split("\t")[7] == "card" and "no card locator" not in res.console


def test_the_app_refuses_a_model_the_system_heap_cannot_hold(tmp_path):
    """A profile with 2.5 MB of free heap (2,116,000 B once the camera has its buffers) and release
    v0 (2,810,924 B at run time): the app says so on the LCD and the console before kpu.load, with
    the figures and the fixes."""
    from pokedex_host.artifact import BuildArtifact

    kmodel = releases()[0] / "model.kmodel"
    need = BuildArtifact.load(kmodel).runtime_bytes
    board = load_board_file(_profile(tmp_path, "maix-bit", "small", model_ram="2.5MB"))
    res = emulate(board, kmodel, _frames(tmp_path), tmp_path / "emu", log=lambda m: None)
    cfg = json.loads((tmp_path / "emu" / "sd" / "pokedex.json").read_text())
    assert cfg["model_runtime"] == need  # the host wrote the build's figure
    assert res.exit_code == 0 and not res.uart_lines
    text = " ".join(res.console.split())
    assert f"needs {need} B" in text and f"{2_500_000 - CAMERA} B free" in text
    assert "a smaller model" in text and "the minimum firmware" in text and "gc_heap_size(262144)" in text
    assert "model loaded" not in text
    assert not [e for e in (tmp_path / "emu" / "events.jsonl").read_text().splitlines() if '"kpu_load"' in e]
    lcd = np.asarray(Image.open(tmp_path / "emu" / "lcd_0000.png")).astype(int)
    assert ((lcd[4:20, 4:120, 0] > 200) & (lcd[4:20, 4:120, 1] < 100)).any()  # the red title
    # on the minimum build with its 256 KiB GC heap, the one fix left is a smaller model
    board = load_board_file(_profile(tmp_path, "maix-bit-minimum", "small-min", model_ram="2.5MB"))
    res = emulate(board, kmodel, _frames(tmp_path / "min"), tmp_path / "min" / "emu", log=lambda m: None)
    text = " ".join(res.console.split())
    assert f"needs {need} B" in text and "Fix: a smaller model" in text
    assert "minimum firmware" not in text and "gc_heap_size" not in text
    # with room for it (the profile's 3.5 MB), the same model loads
    res = emulate(get_board("maix-bit"), kmodel, _frames(tmp_path / "ok"), tmp_path / "ok" / "emu", log=lambda m: None)
    assert "model loaded" in res.console and len(res.uart_lines) == 1


def test_the_app_s_error_lines_break_at_spaces():
    import importlib.util

    spec = importlib.util.spec_from_file_location("pk_app_wrap", firmware_dir() / "pk_app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    text = "model /sd/model.kmodel needs 2806820 B, system heap has 2500000 B free averyveryverylongwordhere"
    lines = app.wrap(text, 16)
    assert all(len(x) <= 16 for x in lines)
    assert " ".join(lines).replace("averyveryverylon gwordhere", "averyveryverylongwordhere") == text
    assert lines[0] == "model"  # "model /sd/model.kmodel" does not fit 16


def test_install_warns_on_the_minimum_build_and_refuses_an_app_it_cannot_run():
    from pokedex_host.device.install import install

    kmodel = releases()[0] / "model.kmodel"
    said = []
    install(get_board("maix-bit-minimum"), kmodel, None, "/sd", False, True, echo=lambda m, nl=True: said.append(m))
    warnings = [m for m in said if m.startswith("WARNING")]
    assert any("card locator" in m and "img.find_rects" in m and "maixpy.toml" in m for m in warnings)
    assert any("mirror image" in m and "img.replace" in m for m in warnings)
    said.clear()
    install(get_board("maix-bit"), kmodel, None, "/sd", False, True, echo=lambda m, nl=True: said.append(m))
    assert not [m for m in said if m.startswith("WARNING")]
    said.clear()  # the bench server needs none of the locator's calls
    install(get_board("maix-bit-minimum"), kmodel, None, "/sd", True, True, echo=lambda m, nl=True: said.append(m))
    assert not [m for m in said if m.startswith("WARNING")]
    b = get_board("maix-bit-minimum")
    build = dataclasses.replace(b.firmware.build, image_lacks=b.firmware.build.image_lacks + ("resize",))
    crippled = dataclasses.replace(b, firmware=dataclasses.replace(b.firmware, build=build))
    with pytest.raises(PokedexError) as e:
        install(crippled, kmodel, None, "/sd", False, True, echo=lambda m, nl=True: None)
    assert "img.resize" in e.value.message and "maixpy.toml" in e.value.message and "maix-bit" in e.value.hint
