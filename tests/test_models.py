from pathlib import Path

import pytest
import torch
from conftest import release_input

from pokedex_host.errors import PokedexError
from pokedex_host.models import create_model, list_models
from pokedex_host.models.checkpoint import load_checkpoint, save_checkpoint
from pokedex_host.models.kpu_mobilenet_v1 import split_sizes


def test_registry_builds_the_kpu_family():
    assert "kpu_mobilenet_v1" in list_models()
    m = create_model("kpu_mobilenet_v1", width=0.25, input=64, classes=1025).eval()
    with torch.no_grad():
        y = m(torch.rand(2, 3, 64, 64))
    assert y.shape == (2, 1025)
    convs = [x for x in m.modules() if isinstance(x, torch.nn.Conv2d)]
    assert all(c.out_channels <= 1024 and c.in_channels <= 1024 for c in convs)
    assert all(c.kernel_size in ((1, 1), (3, 3)) and c.stride in ((1, 1), (2, 2)) for c in convs)
    assert [h.out_channels for h in m.heads] == [513, 512]


def test_split_head_equals_one_big_linear_layer():
    m = create_model("kpu_mobilenet_v1", width=0.25, input=64, classes=1025).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        f = m.features(x).mean(dim=(2, 3))
        w = torch.cat([h.weight[:, :, 0, 0] for h in m.heads])
        b = torch.cat([h.bias for h in m.heads])
        torch.testing.assert_close(m(x), f @ w.T + b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "family,kw",
    [("kpu_mobilenet_v1", {"width": 0.25, "input": 64}), ("efficientnet_lite", {"variant": "lite0", "input": 64})],
)
def test_forward_features_then_head_is_forward(family, kw):
    """Training's split (pooled features, then the head) gives the logits of forward, which the
    export keeps; the features are one vector of feature_channels per image."""
    m = create_model(family, classes=1025, **kw).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        f = m.forward_features(x)
        assert f.shape == (2, m.feature_channels)
        torch.testing.assert_close(m.forward_head(f), m(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "n,cap,parts", [(1025, 1024, [513, 512]), (1024, 1024, [1024]), (2049, 1024, [683, 683, 683]), (10, 4, [4, 3, 3])]
)
def test_split_sizes(n, cap, parts):
    assert split_sizes(n, cap) == parts
    assert sum(parts) == n and max(parts) <= cap


def test_unknown_family_and_bad_width():
    with pytest.raises(PokedexError):
        create_model("resnet50")
    with pytest.raises(ValueError):
        create_model("kpu_mobilenet_v1", width=1.25)


def test_checkpoint_round_trip_and_bad_files(tmp_path: Path):
    m = create_model("kpu_mobilenet_v1", width=0.25, input=64, classes=10).eval()
    p = save_checkpoint(tmp_path / "m.pt", m, "kpu_mobilenet_v1", list(range(1, 11)), {"epoch": 3})
    ck = load_checkpoint(p)
    assert ck.classes == list(range(1, 11)) and ck.meta == {"epoch": 3} and ck.input_size == 64
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ck.build()(x), m(x))

    (tmp_path / "junk.pt").write_bytes(b"not a zip at all")
    with pytest.raises(PokedexError) as e:
        load_checkpoint(tmp_path / "junk.pt")
    assert "junk.pt" in e.value.message

    torch.save({"state_dict": m.state_dict()}, tmp_path / "other.pt")
    with pytest.raises(PokedexError) as e:
        load_checkpoint(tmp_path / "other.pt")
    assert "not a pokedex-k210 checkpoint" in e.value.message

    raw = torch.load(p, weights_only=True)
    raw["config"]["classes"] = 20  # weights for 10 classes, config says 20
    torch.save(raw, tmp_path / "mismatch.pt")
    with pytest.raises(PokedexError) as e:
        load_checkpoint(tmp_path / "mismatch.pt").build()
    assert "do not fit" in e.value.message

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": "pokedex-k210/checkpoint", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(PokedexError):
        load_checkpoint(tmp_path / "evil.pt")


ROOT = Path(__file__).resolve().parent.parent
RELEASES = sorted((ROOT / "models" / "releases").glob("*-v*"), key=lambda p: int(p.name.rsplit("-v", 1)[1]))


def test_the_tree_keeps_the_baseline_and_the_newest_release_only():
    """v0 and the newest; the newest carries what the next recipe starts from (its student and its
    teacher), and docs/releases.md keeps a row for it (the others rebuild from their commits)."""
    from pokedex_host.paths import releases

    names = [r.name for r in releases()]
    assert [r.name for r in RELEASES] == names and len(names) == 2, names
    assert names[0] == "kpu_mobilenet_v1-075-128-v0"
    newest = RELEASES[-1]
    assert (newest / "model.pt").is_file() and (newest / "teacher.pt").is_file()
    version = newest.name.rsplit("-", 1)[1]
    table = (ROOT / "docs" / "releases.md").read_text()
    assert f"| [{version}]" in table, f"docs/releases.md has no row for {version}"
    assert not list((ROOT / "models" / "releases").glob("*/model.v5.kmodel"))  # rebuilt from model.pt


@pytest.mark.parametrize("rel", RELEASES, ids=lambda p: p.name)
def test_released_model_loads_and_matches_its_kmodel(rel):
    import json

    from pokedex_host.kmodel import v3

    ck = load_checkpoint(rel / "model.pt")
    size = release_input(rel)
    assert ck.classes == list(range(1, 1026)) and ck.input_size == size in (128, 160)
    model = ck.build()
    with torch.no_grad():
        assert model(torch.rand(1, 3, size, size)).shape == (1, 1025)
    assert len(v3.read(rel / "model.kmodel").conv_layers) == 29  # v3 for stock MaixPy
    m = json.loads((rel / "manifest.json").read_text())
    from pokedex_host.fsutil import sha256_file

    for f in ("model.kmodel", "classes.txt"):
        assert m["files"][f]["sha256"] == sha256_file(rel / f)
    assert len(m["files"]["model.v5.kmodel"]["sha256"]) == 64  # the v5 build it was re-emitted from, named
    assert m["memory"]["runtime_total"] <= 3_500_000


def test_the_species_count_has_one_definition():
    """No literal 1025 (or 1026, its range's end) in host code: species.SPECIES_COUNT is the one."""
    import ast

    found = []
    for f in sorted((ROOT / "host" / "pokedex_host").rglob("*.py")):
        if f.name == "species.py":
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Constant) and type(node.value) is int and node.value in (1025, 1026):
                found.append(f"{f.relative_to(ROOT)}:{node.lineno}")
    assert not found, found
