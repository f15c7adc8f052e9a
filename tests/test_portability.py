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
        "import pokedex_host.bench.command\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "ok" in out.stdout, out.stdout + out.stderr
