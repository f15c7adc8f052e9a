"""flash: .kfpkg layout as kflash 1.1.6 parses it, the flash plan's checks, port pick, baud fallback."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SHARED
from v3_fixtures import small_model

from pokedex_host.boards import get_board
from pokedex_host.cli import main
from pokedex_host.device.flash_plan import make_plan
from pokedex_host.device.flasher import flash_with_fallback
from pokedex_host.device.kfpkg import FlashEntry, build_kfpkg, flash_list_json, parse_like_kflash, read_kfpkg
from pokedex_host.device.ports import Port, pick_port
from pokedex_host.errors import PokedexError

V5 = b"LDMK\x05\x00\x00\x00" + bytes(range(256)) * 40
V3 = small_model()


def kflash_regex() -> str:
    """The regular expression kflash 1.1.6 applies to flash-list.json, read from its source."""
    import kflash

    src = Path(kflash.__file__).read_text()
    m = re.search(r"re\.sub\(r'(.+?)', r'(.+?)', fFlashList\.read\(\)\)", src)
    assert m, "kflash no longer rewrites flash-list.json the way this package expects"
    assert m.group(2) == r'"address": "\1",'
    return m.group(1)


def test_flash_list_parses_the_way_kflash_parses_it(tmp_path):
    entries = [FlashEntry(0, "maixpy.bin", b"fw" * 100, True), FlashEntry(0x300000, "model.kmodel", V5, False)]
    text = flash_list_json(entries)
    assert '"address": 0,' in text and '"address": 3145728,' in text
    assert parse_like_kflash(text, kflash_regex()) == [(0, "maixpy.bin", True), (3145728, "model.kmodel", False)]
    # the forms kflash cannot read are exactly what plain json.dumps would give
    with pytest.raises(PokedexError):
        parse_like_kflash(json.dumps(json.loads(text)), kflash_regex())  # compact: "address":0 is not rewritten
    bad = text.replace('"address": 3145728,', '"address": "0x300000",')
    with pytest.raises(PokedexError):
        parse_like_kflash(bad, kflash_regex())


def test_kfpkg_layout_is_deterministic(tmp_path):
    entries = [FlashEntry(0, "fw.bin", b"x" * 1000, True), FlashEntry(0x300000, "m.kmodel", V5, False)]
    a = build_kfpkg(entries, tmp_path / "a.kfpkg")
    b = build_kfpkg(entries, tmp_path / "b.kfpkg")
    assert a.read_bytes() == b.read_bytes()
    with zipfile.ZipFile(a) as z:
        assert z.namelist() == ["flash-list.json", "fw.bin", "m.kmodel"]
    assert read_kfpkg(a) == [(0, "fw.bin", True, b"x" * 1000), (0x300000, "m.kmodel", False, V5)]


@pytest.mark.skipif(not (SHARED / "data" / "k210_reference").is_dir(), reason="../shared reference data absent")
def test_kendryte_flash_lists_read_the_same_way():
    for name in ("face_detect", "kpu_yolo"):
        text = (SHARED / "data" / "k210_reference" / f"{name}.flash-list.json").read_text()
        parsed = parse_like_kflash(text, kflash_regex())
        assert parsed[0][0] == 0 and parsed[0][2] is True and parsed[1][2] is False
        assert parsed[1][0] in (0xA00000, 0xC00000)


def test_plan_checks_regions(tmp_path):
    b = get_board("maix-bit")
    fw, km = tmp_path / "fw.bin", tmp_path / "m.kmodel"
    fw.write_bytes(b"f" * 2_000_000)
    km.write_bytes(V3)
    plan = make_plan(b, fw, km)
    assert [(e.address, e.sha256_prefix) for e in plan.entries] == [(0, True), (0x300000, False)]
    assert plan.kmodel_version == 3 and not plan.warnings
    km.write_bytes(V5)
    assert "ERR_KMODEL_VERSION" in make_plan(b, None, km).warnings[0]
    fw.write_bytes(b"f" * 0x300000)
    with pytest.raises(PokedexError) as e:
        make_plan(b, fw, None)
    assert "into the model region" in e.value.message
    km.write_bytes(V5[:8] + b"\0" * (0xD00000 - 0x300000))
    with pytest.raises(PokedexError) as e:
        make_plan(b, None, km)
    assert "SPIFFS" in e.value.message and "SD card" in e.value.hint
    km.write_bytes(V3[:12] + (100000).to_bytes(4, "little") + V3[16:])  # layers_length past the file
    with pytest.raises(PokedexError) as e:
        make_plan(b, None, km)
    assert "broken kmodel v3" in e.value.message and "byte 12" in e.value.message
    km.write_bytes(b"not a model at all")
    with pytest.raises(PokedexError) as e:
        make_plan(b, None, km)
    assert "not a kmodel" in e.value.message


def test_port_autodetection():
    maix = [Port("/dev/ttyUSB0", "Sipeed-Debug", 0x0403, 0x6010), Port("/dev/ttyUSB1", "Sipeed-Debug", 0x0403, 0x6010)]
    assert pick_port(None, maix) == "/dev/ttyUSB0"
    assert pick_port("/dev/ttyACM7", maix) == "/dev/ttyACM7"
    with pytest.raises(PokedexError) as e:
        pick_port(None, [Port("/dev/ttyS0", "serial", None, None)])
    assert "no Maix board" in e.value.message and "/dev/ttyS0" in e.value.message
    with pytest.raises(PokedexError) as e:
        pick_port(None, [Port("/dev/ttyUSB0", "a", 0x1A86, 0x7523), Port("/dev/ttyUSB3", "b", 0x10C4, 0xEA60)])
    assert "several" in e.value.message and "--port" in e.value.hint


def test_baud_fallback_and_messages(tmp_path):
    calls = []

    def flaky(port, baud, board, file):
        calls.append(baud)
        if baud > 115200:
            raise Exception("[ERROR] Failed to Connect to K210's Stub")

    logs = []
    att = flash_with_fallback(
        "/dev/ttyUSB0", (1500000, 115200), "bit", tmp_path / "p.kfpkg", runner=flaky, log=logs.append
    )
    assert calls == [1500000, 115200] and att[-1].ok
    assert any("retrying at 115200" in m for m in logs)

    def no_board(port, baud, board, file):
        raise Exception("Greeting fail, check serial port")

    with pytest.raises(PokedexError) as e:
        flash_with_fallback(
            "/dev/ttyUSB0", (1500000, 115200), "bit", tmp_path / "p.kfpkg", runner=no_board, log=lambda m: None
        )
    assert "did not answer" in e.value.message and "--port" in e.value.hint

    def wrong_port(port, baud, board, file):
        raise Exception("recv unknown op 0x42")

    with pytest.raises(PokedexError) as e:
        flash_with_fallback(
            "/dev/ttyUSB1", (115200,), "bit", tmp_path / "p.kfpkg", runner=wrong_port, log=lambda m: None
        )
    assert "not the K210's port" in e.value.hint


def test_dry_run_shows_the_package_and_the_kflash_call(tmp_path):
    fw, km = tmp_path / "maixpy.bin", tmp_path / "model.kmodel"
    fw.write_bytes(b"f" * 1000)
    km.write_bytes(V5)
    out = tmp_path / "p.kfpkg"
    r = CliRunner().invoke(
        main,
        [
            "flash",
            "--board",
            "maix-bit-canmv",
            "--firmware",
            str(fw),
            "--kmodel",
            str(km),
            "--port",
            "/dev/ttyUSB9",
            "--out",
            str(out),
            "--dry-run",
        ],
    )
    assert r.exit_code == 0, r.output
    assert f"kflash -p /dev/ttyUSB9 -b 1500000 -B bit {out}" in r.output
    assert f"kflash -p /dev/ttyUSB9 -b 115200 -B bit {out}" in r.output
    assert '"address": 3145728,' in r.output and "0x300000" in r.output
    assert [x[:3] for x in read_kfpkg(out)] == [(0, "maixpy.bin", True), (0x300000, "model.kmodel", False)]
    r = CliRunner().invoke(
        main, ["flash", "--board", "maix-bit", "--kmodel", str(km), "--port", "X", "--out", str(out), "--dry-run"]
    )
    assert r.exit_code == 0 and "ERR_KMODEL_VERSION" in r.output
