"""The app's threshold, mirror and smoothing travel with a release (its app.json) into the
pokedex.json the board and the emulator read."""

import ast
import copy
import json
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

from pokedex_host.boardconfig import (
    APP_MIRROR,
    APP_SMOOTHING,
    APP_THRESHOLD,
    CARD_LOCATOR,
    app_settings,
    make_config,
    release_app_file,
)
from pokedex_host.errors import PokedexError

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
SPEC = ROOT / "docs" / "specs" / "board-config.md"


def _firmware_tuples(name: str) -> dict[str, tuple]:
    """The module-level tuples of firmware/NAME.py (MicroPython source, read without importing)."""
    tree = ast.parse((FIRMWARE / name).read_text())
    return {
        n.targets[0].id: ast.literal_eval(n.value)
        for n in tree.body
        if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name) and isinstance(n.value, ast.Tuple)
    }


def test_defaults_and_a_releases_own_settings(tmp_path):
    k = tmp_path / "model.kmodel"
    defaults = {"threshold": APP_THRESHOLD, "mirror": APP_MIRROR, "smoothing": APP_SMOOTHING, "locator": CARD_LOCATOR}
    assert app_settings(k) == defaults
    assert app_settings(None) == defaults
    (tmp_path / "app.json").write_text(
        json.dumps({"threshold": 0.4, "chosen_on": "validation", "locator": {"strip": 9}})
    )
    got = app_settings(k)
    assert got["threshold"] == 0.4 and got["mirror"] == APP_MIRROR and got["smoothing"] == APP_SMOOTHING
    assert got["locator"] == {**CARD_LOCATOR, "strip": 9}
    assert CARD_LOCATOR["strip"] != 9  # the default is not changed by a release's file
    (tmp_path / "app.json").write_text(json.dumps({"locator": {"stripe": 9}}))
    with pytest.raises(PokedexError, match="app.json: unknown locator setting.*stripe"):
        app_settings(k)
    (tmp_path / "app.json").write_text("{not json")
    with pytest.raises(PokedexError, match="app.json"):
        app_settings(k)


def test_a_release_writes_every_setting_and_reads_it_back(tmp_path):
    f = release_app_file(0.35, "validation")
    assert set(f) == {"threshold", "mirror", "smoothing", "locator", "chosen_on"} and f["threshold"] == 0.35
    (tmp_path / "app.json").write_text(json.dumps(f))
    got = app_settings(tmp_path / "model.kmodel")
    assert got == {k: f[k] for k in ("threshold", "mirror", "smoothing", "locator")}


def test_the_newest_release_carries_its_app_settings():
    from pokedex_host.paths import releases

    f = releases()[-1] / "app.json"
    got = json.loads(f.read_text())
    assert {"threshold", "mirror", "smoothing", "locator"} <= set(got), f
    assert set(got["locator"]) == set(CARD_LOCATOR), f


def _config() -> dict:
    """The pokedex.json the host writes for the maix-bit card app."""
    from pokedex_host.boards import get_board

    return make_config(
        get_board("maix-bit"),
        input_size=128,
        outputs=1025,
        model="/sd/model.kmodel",
        model_runtime=1,
        locator=CARD_LOCATOR,
    )


def test_the_firmware_requires_exactly_the_keys_the_host_writes():
    t = _firmware_tuples("pk_app.py")
    cfg = _config()
    assert set(cfg) == set(t["APP_KEYS"])
    assert set(cfg["camera"]) == set(t["CAMERA_KEYS"])
    assert set(cfg["uart"]) == set(t["UART_KEYS"])
    assert set(cfg["card"]) == set(t["CARD_KEYS"])


def _subscripts(src: str, names: set[str]) -> dict[str, set[str]]:
    """For each of ``names``: the string keys ``name["key"]`` reads in ``src``."""
    out: dict[str, set[str]] = {n: set() for n in names}
    for node in ast.walk(ast.parse(src)):
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id in names
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
        ):
            out[node.value.id].add(node.slice.value)
    return out


def test_the_firmware_reads_only_declared_keys_and_has_no_defaults_of_its_own():
    t = _firmware_tuples("pk_app.py")
    declared = {"cfg": set(t["APP_KEYS"]), "cam": set(t["CAMERA_KEYS"]), "u": set(t["UART_KEYS"])}
    card = _subscripts((FIRMWARE / "pk_card.py").read_text(), {"cfg"})["cfg"]
    for name in ("main.py", "pk_app.py", "bench.py"):
        src = (FIRMWARE / name).read_text()
        read = _subscripts(src, {"cfg", "cam", "u", "card_cfg"})
        for var, keys in declared.items():
            assert read[var] <= keys, (name, var, read[var] - keys)
        card |= read["card_cfg"]
    assert card == set(t["CARD_KEYS"]), card ^ set(t["CARD_KEYS"])  # every card setting sent is read, no other
    for f in sorted(FIRMWARE.glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in {"cfg", "cam", "u", "card_cfg", "c", "loose"}
            ):
                assert len(node.args) < 2, f"{f.name}:{node.lineno}: a default of the firmware's own"


def test_a_config_without_a_key_stops_the_app_naming_it(monkeypatch):
    monkeypatch.syspath_prepend(str(FIRMWARE))
    sys.modules.pop("pk_app", None)
    import pk_app

    cfg = _config()
    pk_app.check_keys(cfg, "/sd/pokedex.json")
    pk_app.check_keys({**cfg, "card": None}, "/sd/pokedex.json")  # the camera-window app
    for drop, where in (("smoothing", cfg), ("texture", cfg["card"]), ("hmirror", cfg["camera"])):
        bad = copy.deepcopy(cfg)
        d = bad if where is cfg else bad["card"] if where is cfg["card"] else bad["camera"]
        d.pop(drop)
        with pytest.raises(
            pk_app.AppError, match=rf"/sd/pokedex.json: missing (card\.|camera\.)?{drop} .*install again"
        ):
            pk_app.check_keys(bad, "/sd/pokedex.json")
    sys.modules.pop("pk_app", None)


def test_the_spec_documents_every_key():
    t = _firmware_tuples("pk_app.py")
    doc = SPEC.read_text()
    names = list(t["APP_KEYS"]) + [f"camera.{k}" for k in t["CAMERA_KEYS"]] + [f"card.{k}" for k in t["CARD_KEYS"]]
    missing = [n for n in names if f"`{n}`" not in doc]
    assert not missing, f"{SPEC} does not document {missing}"


def test_the_emulated_board_reads_the_releases_threshold(tiny_v3_build, tmp_path):
    from pokedex_host.boards import get_board
    from pokedex_host.emulator.host import emulate

    rel = tmp_path / "release"
    shutil.copytree(tiny_v3_build, rel)
    (rel / "app.json").write_text(json.dumps({"threshold": 0.45, "smoothing": 0.0}))
    frames = tmp_path / "frames"
    frames.mkdir()
    Image.new("RGB", (320, 240), (90, 120, 60)).save(frames / "0.png")
    emulate(get_board("maix-bit"), rel / "model.kmodel", frames, tmp_path / "out", max_frames=1, log=lambda m: None)
    cfg = json.loads((tmp_path / "out" / "sd" / "pokedex.json").read_text())
    assert cfg["threshold"] == 0.45 and cfg["smoothing"] == 0.0
    # an explicit value still wins
    emulate(
        get_board("maix-bit"),
        rel / "model.kmodel",
        frames,
        tmp_path / "out2",
        max_frames=1,
        threshold=0.1,
        log=lambda m: None,
    )
    assert json.loads((tmp_path / "out2" / "sd" / "pokedex.json").read_text())["threshold"] == 0.1
