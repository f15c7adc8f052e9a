"""The build folder's one reader: every release folder loads, bad folders get a clear error."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import ROOT, release_input

from pokedex_host.artifact import BuildArtifact
from pokedex_host.errors import PokedexError
from pokedex_host.paths import releases


@pytest.mark.parametrize("folder", releases(), ids=lambda p: p.name)
def test_every_release_folder_loads_with_its_typed_fields(folder):
    art = BuildArtifact.load(folder / "model.kmodel")  # a file in the folder names the folder
    assert art.folder == folder and art.kmodel.is_file()
    assert art.input_size == release_input(folder) in (128, 160) and art.kmodel_version == 3 and art.board == "maix-bit"
    assert len(art.classes) == len(art.names) == 1025 and art.classes[:3] == [1, 2, 3]
    assert art.names[24] == "Pikachu"
    assert art.input_range == (0.0, 255.0)  # the /255 is folded into model.onnx's first conv
    assert 2_000_000 < art.runtime_bytes < 3_500_000
    assert art.float_model == folder / "model.pt"


def test_a_folder_without_a_manifest_or_with_a_damaged_one_is_refused(tmp_path):
    with pytest.raises(PokedexError, match="not a build-kmodel output folder"):
        BuildArtifact.load(tmp_path)
    assert BuildArtifact.find(tmp_path / "model.kmodel") is None
    (tmp_path / "manifest.json").write_text('{"input": {}}')
    with pytest.raises(PokedexError, match="damaged") as e:
        BuildArtifact.load(tmp_path)
    assert "manifest.json" in str(e.value)


def test_classes_come_from_classes_txt_and_a_bad_line_names_the_file(tmp_path):
    src = releases()[-1]
    for f in ("manifest.json", "classes.txt"):
        shutil.copyfile(src / f, tmp_path / f)
    (tmp_path / "classes.txt").write_text("0025\tPikachu\tPikachu\n0004\tCharmander\tCharmander\n")
    art = BuildArtifact.load(tmp_path)
    assert art.classes == [25, 4] and art.names == ["Pikachu", "Charmander"]
    (tmp_path / "classes.txt").write_text("Pikachu\n")
    with pytest.raises(PokedexError, match=r"classes.txt:1"):
        BuildArtifact.load(tmp_path)
    m = json.loads((src / "manifest.json").read_text())
    m["export"]["scale_folded"] = False
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    (tmp_path / "classes.txt").unlink()
    art = BuildArtifact.load(tmp_path)
    assert art.input_range == (0.0, 1.0) and art.classes[:2] == [1, 2] and len(art.classes) == m["classes"]


def test_nothing_but_the_artifact_reads_the_manifest():
    # one owner: the other modules go through BuildArtifact, not through manifest.json by hand
    offenders = []
    for p in (ROOT / "host" / "pokedex_host").rglob("*.py"):
        if p.name == "artifact.py":
            continue
        text = p.read_text()
        if (
            'with_name("manifest.json")' in text
            or '/ "manifest.json"' in text
            or "write_manifest(" in text
            and "from ..artifact import write_manifest" not in text
        ):
            offenders.append(str(p.relative_to(ROOT)))
    assert offenders == []
