"""The nncase compiler's own Python 3.10 venv: find an interpreter, create, check.

nncase 1.9 (the last release with a K210 target) ships wheels only for CPython <= 3.10, so it
cannot live in the host's 3.11 interpreter. Each compiler release gets its own venv under the
cache folder, installed from the pinned requirements file beside this module.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .. import paths
from ..errors import PokedexError

DEFAULT_NNCASE = "1.9.0.20230322"
PYTHON_NEEDED = (3, 10)
STAMP = "pokedex-toolchain.json"
INSTALL_HINT_PY310 = (
    "install CPython 3.10 (e.g. `pyenv install 3.10.13`, or your OS package python3.10) "
    "or point POKEDEX_PYTHON310 at its interpreter"
)


def requirements_file(nncase_version: str) -> Path:
    p = Path(__file__).with_name(f"nncase-{nncase_version}.txt")
    if not p.is_file():
        known = sorted(x.stem.removeprefix("nncase-") for x in Path(__file__).parent.glob("nncase-*.txt"))
        raise PokedexError(
            f"no pinned requirements for nncase {nncase_version}",
            "releases this toolkit knows: " + ", ".join(known),
        )
    return p


def toolchain_dir(nncase_version: str = DEFAULT_NNCASE) -> Path:
    if os.environ.get("POKEDEX_TOOLCHAIN_DIR"):
        return Path(os.environ["POKEDEX_TOOLCHAIN_DIR"]) / f"nncase-{nncase_version}"
    return paths.cache_dir() / "toolchains" / f"nncase-{nncase_version}"


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _probe(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys, venv; print('%d %d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    try:
        major, minor = (int(x) for x in out.stdout.split())
    except ValueError:
        return None
    return major, minor


def python310_candidates() -> list[str]:
    cands: list[str] = []
    if os.environ.get("POKEDEX_PYTHON310"):
        cands.append(os.environ["POKEDEX_PYTHON310"])
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    cands += sorted(glob.glob(os.path.join(pyenv_root, "versions", "3.10*", "bin", "python3.10")), reverse=True)
    for name in ("python3.10",):
        w = shutil.which(name)
        if w:
            cands.append(w)
    cands += ["/usr/bin/python3.10", "/usr/local/bin/python3.10"]
    seen, out = set(), []
    for c in cands:
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


def find_python310() -> str:
    tried = []
    for cand in python310_candidates():
        if _probe(cand) == PYTHON_NEEDED:
            return cand
        tried.append(cand)
    raise PokedexError(
        "no Python 3.10 interpreter found (nncase 1.9 has wheels only for CPython <= 3.10); tried: "
        + (", ".join(tried) or "nothing"),
        INSTALL_HINT_PY310,
    )


def _req_digest(req: Path) -> str:
    return hashlib.sha256(req.read_bytes()).hexdigest()[:16]


@dataclass
class ToolchainStatus:
    nncase_version: str
    venv: Path
    python: str | None = None
    installed: bool = False
    versions: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.installed and not self.problems


def read_stamp(venv: Path) -> dict | None:
    try:
        return json.loads((venv / STAMP).read_text())
    except (OSError, ValueError):
        return None


def check(nncase_version: str = DEFAULT_NNCASE, *, probe_worker: bool = True) -> ToolchainStatus:
    """What is there and what is missing, without changing anything."""
    venv = toolchain_dir(nncase_version)
    st = ToolchainStatus(nncase_version, venv)
    try:
        st.python = find_python310()
    except PokedexError as e:
        st.problems.append(str(e))
    py = venv_python(venv)
    if not py.exists():
        st.problems.append(f"compiler venv {venv} does not exist: run `pokedex-host toolchain install`")
        return st
    stamp = read_stamp(venv)
    req = requirements_file(nncase_version)
    if not stamp or stamp.get("requirements") != _req_digest(req):
        st.problems.append(
            f"compiler venv {venv} was not installed from the current {req.name}: run `pokedex-host toolchain install`"
        )
        return st
    st.installed = True
    if probe_worker:
        from .client import Worker

        try:
            with Worker(nncase_version) as w:
                hello = w.hello()
            st.versions = hello["versions"]
            if st.versions.get("nncase") != nncase_version:
                st.problems.append(
                    f"compiler venv has nncase {st.versions.get('nncase')}, profile needs {nncase_version}: "
                    "run `pokedex-host toolchain install --force`"
                )
        except PokedexError as e:
            st.problems.append(str(e))
    return st


def install(nncase_version: str = DEFAULT_NNCASE, *, force: bool = False, log=print) -> ToolchainStatus:
    """Create the compiler venv (idempotent: a matching, working venv is left alone)."""
    venv = toolchain_dir(nncase_version)
    req = requirements_file(nncase_version)
    if not force:
        st = check(nncase_version)
        if st.ok:
            log(f"compiler venv {venv} is up to date (nncase {st.versions.get('nncase')})")
            return st
    python = find_python310()
    log(f"creating compiler venv {venv} with {python}")
    staging = venv.with_name(venv.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    # A venv records its own path, so build it in place at the staging name, then rename and
    # rewrite the activation scripts' path: no venv relocation is needed for `bin/python`, which
    # is all the worker uses.
    _run([python, "-m", "venv", str(staging)], "create the venv")
    pip = [str(venv_python(staging)), "-m", "pip", "install", "--disable-pip-version-check"]
    _run(pip + ["-r", str(req)], f"install {req.name}")
    (staging / STAMP).write_text(
        json.dumps({"nncase": nncase_version, "requirements": _req_digest(req), "python": python}, indent=2)
    )
    if venv.exists():
        shutil.rmtree(venv)
    os.replace(staging, venv)
    st = check(nncase_version)
    if not st.ok:
        raise PokedexError("compiler venv installed but does not work: " + "; ".join(st.problems))
    log(f"compiler venv ready: nncase {st.versions.get('nncase')} in {venv}")
    return st


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise PokedexError(
            f"could not {what} (exit {proc.returncode}):\n{tail}",
            "check that PyPI is reachable and that the interpreter is CPython 3.10 on x86_64 Linux, "
            "macOS or Windows (nncase 1.9 wheels)",
        )


def host_summary() -> dict:
    return {"python": sys.version.split()[0], "executable": sys.executable}
