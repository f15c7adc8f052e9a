"""`pokedex-host emulate --out DIR` replaces an earlier emulator output and refuses anything else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pokedex_host.boards import get_board
from pokedex_host.cli import main
from pokedex_host.emulator.host import emulate
from pokedex_host.emulator.output import OUTPUT_MARKER
from pokedex_host.errors import PokedexError


def _firmware(tmp_path: Path) -> Path:
    fw = tmp_path / "fw"
    fw.mkdir(exist_ok=True)
    (fw / "main.py").write_text("print('hello from the board')\n")
    return fw


def _run(tmp_path: Path, out: Path):
    return emulate(get_board("maix-bit"), None, None, out, firmware=_firmware(tmp_path), log=lambda m: None)


def test_a_folder_the_emulator_did_not_write_is_refused_and_kept(tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"not the emulator's")
    r = CliRunner().invoke(main, ["emulate", "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 1, r.output
    assert str(out) in r.output and "did not write" in r.output
    assert "new or empty folder" in r.output  # the fix
    assert (out / "holiday.jpg").read_bytes() == b"not the emulator's"
    assert sorted(p.name for p in out.iterdir()) == ["holiday.jpg"]


def test_a_file_as_out_is_refused(tmp_path):
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    with pytest.raises(PokedexError, match="is a file, not a folder") as e:
        _run(tmp_path, out)
    assert str(out) in e.value.message and out.read_text() == "mine"


def test_an_earlier_emulator_output_is_replaced_whole(tmp_path):
    out = tmp_path / "emu"
    first = _run(tmp_path, out)
    assert first.exit_code == 0 and "hello from the board" in first.console
    assert (out / OUTPUT_MARKER).is_file() and (out / "emulator.json").is_file()
    (out / "stale.png").write_bytes(b"from the first run")
    second = _run(tmp_path, out)
    assert second.exit_code == 0 and "hello from the board" in second.console
    assert not (out / "stale.png").exists() and (out / OUTPUT_MARKER).is_file()


def test_an_output_from_before_the_marker_and_an_empty_folder_are_accepted(tmp_path):
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "emulator.json").write_text(json.dumps({"out": str(legacy)}))
    (legacy / "lcd_0000.png").write_bytes(b"old frame")
    assert _run(tmp_path, legacy).exit_code == 0
    assert not (legacy / "lcd_0000.png").exists() and (legacy / OUTPUT_MARKER).is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _run(tmp_path, empty).exit_code == 0 and (empty / OUTPUT_MARKER).is_file()
