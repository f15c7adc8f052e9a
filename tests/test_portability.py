"""install and bench work where termios/tty do not exist (Windows): only the emulator needs them."""

import subprocess
import sys

from conftest import ROOT

V0 = ROOT / "models" / "releases" / "kpu_mobilenet_v1-075-128-v0" / "model.kmodel"


def test_install_dry_run_and_bench_help_without_termios_or_tty():
    code = (
        "import sys\n"
        "sys.modules['termios'] = None; sys.modules['tty'] = None  # import of either raises ImportError\n"
        "from click.testing import CliRunner\n"
        "from pokedex_host.cli import main\n"
        f"r = CliRunner().invoke(main, ['install', '--kmodel', r'{V0}', '--dry-run'])\n"
        "assert r.exit_code == 0, r.output\n"
        "assert 'pk_card.py' in r.output and 'main.py' in r.output\n"
        "r = CliRunner().invoke(main, ['bench', '--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "import pokedex_host.device.bench\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "ok" in out.stdout, out.stdout + out.stderr


def _children(pid: int) -> list[int]:
    from pathlib import Path

    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(p.name))
    return out


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def test_sigterm_ends_emulate_and_its_board_process(tmp_path):
    """SIGTERM (timeout, CI, a service manager) ends the command and the emulated board it started."""
    import signal
    import time

    import numpy as np
    from PIL import Image

    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(400):
        Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(frames / f"f{i:04d}.png")
    cli = ROOT / ".venv" / "bin" / "pokedex-host"
    cmd = [
        str(cli) if cli.exists() else "pokedex-host",
        "emulate",
        "--kmodel",
        str(V0),
        "--frames",
        str(frames),
        "--out",
        str(tmp_path / "emu"),
    ]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    board = []
    deadline = time.time() + 60
    while time.time() < deadline and not board:
        board = _children(p.pid)
        time.sleep(0.2)
    assert board, "the emulated board process never started"
    while time.time() < deadline and not (tmp_path / "emu" / "lcd_0001.png").exists():
        time.sleep(0.2)  # it is running frames
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=60)
    time.sleep(0.5)
    assert p.returncode == 1 and "stopped" in out and "Traceback" not in out, out
    assert not any(_alive(b) for b in board), "the emulated board outlived the command"


def test_sigterm_ends_bench_emulate_and_its_board_process(tmp_path):
    """The same for ``bench --emulate``: the emulated board behind the pty must not outlive it."""
    import signal
    import time

    from conftest import make_dataset

    data = tmp_path / "test"
    make_dataset(data, species=20, per_species=10, seed=3)
    cli = ROOT / ".venv" / "bin" / "pokedex-host"
    cmd = [
        str(cli) if cli.exists() else "pokedex-host",
        "bench",
        "--emulate",
        "--board",
        "maix-bit",
        "--kmodel",
        str(V0),
        "--data",
        str(data),
        "--out",
        str(tmp_path / "b"),
    ]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    board = []
    deadline = time.time() + 90
    while time.time() < deadline and not board:
        board = _children(p.pid)
        time.sleep(0.2)
    assert board, "the emulated board process never started"
    results = tmp_path / "b" / "results.jsonl"
    while time.time() < deadline and not (results.exists() and results.read_text().count("\n") >= 2):
        time.sleep(0.2)  # it is measuring images
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=60)
    time.sleep(0.5)
    assert p.returncode == 1 and "--resume" in out and "Traceback" not in out, out
    assert not any(_alive(b) for b in board), "the emulated board outlived bench"
