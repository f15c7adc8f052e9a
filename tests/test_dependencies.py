"""Every third-party package the host imports is declared in pyproject.toml (dependencies or an
optional group), so that an install from it runs what the code imports."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib

from conftest import ROOT

PACKAGE = ROOT / "host" / "pokedex_host"
# The MicroPython modules the emulator stands in for import one another by bare name, as on the board.
MODS = PACKAGE / "emulator" / "mods"
NOT_HOST = {
    PACKAGE / "toolchain" / "worker.py": "runs in the nncase compiler's own Python 3.10 venv (nncase)",
}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def top_level_imports(source: str) -> set[str]:
    """The first component of every absolute import, module level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def third_party(path) -> set[str]:
    local = {"pokedex_host"} | ({p.stem for p in MODS.glob("*.py")} if MODS in path.parents else set())
    return {
        n
        for n in top_level_imports(path.read_text(encoding="utf-8"))
        if n not in sys.stdlib_module_names and n not in local
    }


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = list(project.get("dependencies", []))
    for group in project.get("optional-dependencies", {}).values():
        reqs += group
    return {_normalise(re.match(r"[A-Za-z0-9._-]+", r).group(0)) for r in reqs}


def undeclared(imports: dict[str, list[str]], names: set[str], dists: dict[str, list[str]]) -> dict[str, str]:
    """Import name -> why, for each import no declared distribution provides."""
    out = {}
    for mod, files in sorted(imports.items()):
        provided = {_normalise(d) for d in dists.get(mod, [])}
        if not provided:
            out[mod] = f"not installed here (imported by {', '.join(files)})"
        elif not provided & names:
            out[mod] = f"{' / '.join(sorted(provided))} is not in pyproject.toml (imported by {', '.join(files)})"
    return out


def test_every_third_party_import_is_declared_in_pyproject():
    imports: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in NOT_HOST:
            continue
        for name in third_party(path):
            imports.setdefault(name, []).append(str(path.relative_to(PACKAGE)))
    assert "numpy" in imports and "cv2" in imports  # the scan sees the package's imports
    assert undeclared(imports, declared(), importlib.metadata.packages_distributions()) == {}


def test_the_check_names_an_undeclared_import():
    dists = {"cv2": ["opencv-python"], "numpy": ["numpy"]}
    bad = undeclared({"cv2": ["x.py"], "numpy": ["y.py"], "nosuch": ["z.py"]}, {"numpy"}, dists)
    assert set(bad) == {"cv2", "nosuch"} and "opencv-python" in bad["cv2"] and "x.py" in bad["cv2"]
    assert top_level_imports("import a.b\nfrom c.d import e\nfrom . import f\ndef g():\n    import h\n") == {
        "a",
        "c",
        "h",
    }
