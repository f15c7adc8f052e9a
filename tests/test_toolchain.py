import subprocess
import sys

import pytest

from pokedex_host.errors import PokedexError
from pokedex_host.toolchain import Worker, env
from pokedex_host.toolchain.client import ToolchainError


def test_missing_python310_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("POKEDEX_PYTHON310", "/bin/false")
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(env, "python310_candidates", lambda: ["/bin/false", str(tmp_path / "python3.10")])
    with pytest.raises(PokedexError) as e:
        env.find_python310()
    assert "no Python 3.10" in e.value.message and "pyenv install 3.10" in e.value.hint


def test_missing_venv_is_reported_not_crashed(monkeypatch, tmp_path):
    monkeypatch.setenv("POKEDEX_TOOLCHAIN_DIR", str(tmp_path))
    st = env.check(env.DEFAULT_NNCASE, probe_worker=False)
    assert not st.ok and "toolchain install" in st.problems[-1]
    with pytest.raises(PokedexError) as e:
        Worker().start()
    assert "toolchain install" in e.value.hint


def test_unknown_compiler_release():
    with pytest.raises(PokedexError) as e:
        env.requirements_file("2.11.0")
    assert "1.9.0.20230322" in e.value.hint


def test_requirements_pin_the_k210_release():
    text = env.requirements_file(env.DEFAULT_NNCASE).read_text()
    assert "nncase==1.9.0.20230322" in text


@pytest.mark.toolchain
def test_worker_round_trip_and_errors(toolchain_ready, tmp_path):
    with Worker(toolchain_ready) as w:
        hello = w.hello()
        assert hello["versions"]["nncase"] == "1.9.0.20230322" and hello["python"].startswith("3.10")
        with pytest.raises(ToolchainError) as e:
            w.request("no_such_op")
        assert "unknown op" in e.value.message
        with pytest.raises(ToolchainError) as e:
            w.request("simulate", kmodel=str(tmp_path / "missing.kmodel"), inputs="x", outputs="y")
        assert "missing.kmodel" in e.value.message
        assert w.hello()["pid"] == hello["pid"]  # same process: it survives errors


@pytest.mark.toolchain
def test_worker_death_is_a_clean_error(toolchain_ready):
    w = Worker(toolchain_ready).start()
    w.proc.kill()
    w.proc.wait()
    with pytest.raises(ToolchainError) as e:
        w.hello()
    assert "died" in e.value.message
    w.close()


@pytest.mark.toolchain
def test_nncase_never_enters_the_host_interpreter(toolchain_ready):
    code = (
        "import pokedex_host.compile, pokedex_host.toolchain, pokedex_host.cli, sys; "
        "print('nncase' in sys.modules or '_nncase' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
