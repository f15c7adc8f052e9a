"""The app's threshold, mirror and smoothing travel with a release (its app.json) into the
pokedex.json the board and the emulator read."""

import json
import shutil

import pytest
from PIL import Image

from pokedex_host.boardconfig import APP_MIRROR, APP_SMOOTHING, APP_THRESHOLD, app_settings
from pokedex_host.errors import PokedexError


def test_defaults_and_a_releases_own_settings(tmp_path):
    k = tmp_path / "model.kmodel"
    assert app_settings(k) == {"threshold": APP_THRESHOLD, "mirror": APP_MIRROR, "smoothing": APP_SMOOTHING}
    assert app_settings(None)["threshold"] == APP_THRESHOLD
    (tmp_path / "app.json").write_text(json.dumps({"threshold": 0.4, "chosen_on": "validation"}))
    assert app_settings(k) == {"threshold": 0.4, "mirror": APP_MIRROR, "smoothing": APP_SMOOTHING}
    (tmp_path / "app.json").write_text("{not json")
    with pytest.raises(PokedexError, match="app.json"):
        app_settings(k)


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
    emulate(get_board("maix-bit"), rel / "model.kmodel", frames, tmp_path / "out2", max_frames=1, threshold=0.1,
            log=lambda m: None)
    assert json.loads((tmp_path / "out2" / "sd" / "pokedex.json").read_text())["threshold"] == 0.1
