"""Layers that point one way: a module of pokedex_host imports only from its own layer and the
layers below it (docs/architecture.md draws them). Read from the source with ``ast``, every
import counted, those inside functions too."""

from __future__ import annotations

import ast

from conftest import ROOT

PACKAGE = ROOT / "host" / "pokedex_host"

# Lowest first. A unit is a top-level module or subpackage of pokedex_host ("__init__" is the
# package itself: __version__).
LAYERS: list[tuple[str, set[str]]] = [
    (
        "base",
        {"__init__", "errors", "fsutil", "paths", "sizes", "species", "families", "preprocess", "pixels", "plotting"},
    ),
    ("formats", {"kmodel", "artifact", "models", "boards", "toolchain"}),
    ("data", {"dataset", "boardconfig"}),
    ("pipeline", {"compile"}),
    ("evaluation", {"evaluate"}),
    ("emulator", {"emulator"}),
    ("device", {"device"}),
    ("training", {"train"}),
    ("commands", {"cli", "__main__"}),
]
LEVEL = {unit: i for i, (_, units) in enumerate(LAYERS) for unit in units}


def unit_of(parts: list[str]) -> str:
    """The unit of a dotted name inside the package (``["kmodel", "v3"]`` -> ``kmodel``)."""
    return parts[0] if parts else "__init__"


def imported_units(module: list[str], is_package: bool, source: str) -> set[str]:
    """The units a module (its dotted path inside pokedex_host) imports."""
    here = module if is_package else module[:-1]
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "pokedex_host":
                    out.add(unit_of(parts[1:]))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "pokedex_host":
                target = node.module.split(".")[1:]
            else:
                continue
            if target:
                out.add(unit_of(target))
            else:  # from pokedex_host import x: a unit, or the package's own attribute
                out |= {a.name if a.name in LEVEL else "__init__" for a in node.names}
    return out


def upward_imports(module: list[str], is_package: bool, source: str) -> list[str]:
    own = unit_of(module)
    return sorted(
        f"{'.'.join(module)} imports {u} ({LAYERS[LEVEL[u]][0]}), above its layer ({LAYERS[LEVEL[own]][0]})"
        for u in imported_units(module, is_package, source)
        if u in LEVEL and LEVEL[u] > LEVEL[own]
    )


def _modules():
    for p in sorted(PACKAGE.rglob("*.py")):
        rel = p.relative_to(PACKAGE).with_suffix("")
        parts = list(rel.parts)
        is_package = parts[-1] == "__init__"
        yield (parts[:-1] if is_package else parts), is_package, p


def test_every_module_belongs_to_a_layer():
    units = {unit_of(m) for m, _, _ in _modules()}
    assert units - set(LEVEL) == set(), "add the new module to LAYERS (and to docs/architecture.md)"


def test_no_module_imports_from_a_layer_above_its_own():
    bad = []
    for module, is_package, path in _modules():
        bad += upward_imports(module, is_package, path.read_text(encoding="utf-8"))
    assert bad == []


def test_the_check_sees_an_upward_import():
    # the check itself can fail: a format reaching into the pipeline, relative and absolute
    assert upward_imports(["kmodel", "v3"], False, "from ..compile.memory import parse_sched\n")
    assert upward_imports(["kmodel"], True, "def f():\n    from pokedex_host.emulator import host\n")
    assert upward_imports(["pixels"], False, "import pokedex_host.device.bench\n")
    assert upward_imports(["species"], False, "from . import cli\n")
    assert not upward_imports(["compile", "pipeline"], False, "from ..kmodel import v3\nfrom . import lint\n")
    assert not upward_imports(["artifact"], False, "from . import __version__\n")
