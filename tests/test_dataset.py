"""Data pipeline: ingest a folder, process into the YOLO/ImageFolder layout, verify — on generated images."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_dataset
from PIL import Image

from pokedex_host.cli import main
from pokedex_host.dataset.check import verify
from pokedex_host.dataset.ingest import ingest_folder
from pokedex_host.dataset.process import process
from pokedex_host.dataset.split import assign, group, targets
from pokedex_host.dataset.store import load_index

QUIET = dict(log=lambda m: None, workers=1)


@pytest.mark.parametrize(
    "n,expect",
    [
        (1, (1, 0, 0)),
        (2, (1, 1, 0)),
        (3, (1, 1, 1)),
        (4, (2, 1, 1)),
        (7, (5, 1, 1)),
        (20, (14, 3, 3)),
        (100, (70, 15, 15)),
    ],
)
def test_split_targets(n, expect):
    t = targets(n)
    assert (t["train"], t["validation"], t["test"]) == expect


def test_groups_never_straddle_splits():
    import random

    rng = random.Random(1)
    hashes = {f"a{i}": rng.getrandbits(64) for i in range(6)}  # ~32 bits apart
    hashes |= {"dup1": 0xFFFF0000, "dup2": 0xFFFF0001, "dup3": 0xFFFF0003}  # within 6 bits of each other
    gid = group(hashes)
    assert gid["dup1"] == gid["dup2"] == gid["dup3"] and len(set(gid.values())) == 7
    groups: dict[str, list[str]] = {}
    for k, g in gid.items():
        groups.setdefault(g, []).append(k)
    split = assign(groups, seed=0)
    assert len({split[k] for k in ("dup1", "dup2", "dup3")}) == 1
    assert split == assign(groups, seed=0)  # deterministic
    assert "train" in split.values()


def _png_bytes(color, size=(30, 20), mode="RGBA"):
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    """A source folder with every kind of bad input the issue names."""
    src = make_dataset(tmp_path / "src", species=3, per_species=4)
    d1, d2 = src / "0001", src / "0002"
    (d1 / "zero.png").write_bytes(b"")
    (d1 / "trunc.png").write_bytes((d1 / "img_0.png").read_bytes()[:80])
    (d1 / "not_image.jpg").write_text("hello")
    Image.new("RGBA", (1, 1), (255, 0, 0, 255)).save(d1 / "dot.png")  # a 1x1 "image"
    (d2 / "png_named.jpg").write_bytes(_png_bytes((10, 20, 200, 255)))
    Image.new("CMYK", (20, 20), (0, 100, 100, 0)).save(d2 / "cmyk.jpg")
    Image.fromarray((np.arange(400, dtype=np.uint16).reshape(20, 20) * 150)).save(d2 / "deep16.png")
    Image.new("RGB", (20, 20), (200, 10, 10)).convert("P").save(d2 / "palette.gif")
    Image.new("L", (20, 20), 128).save(d2 / "gray.png")
    im = Image.new("RGB", (40, 20), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(d2 / "rotated.jpg", exif=exif)
    shutil.copyfile(d1 / "img_1.png", d1 / "img_1_copy.png")  # exact duplicate, same species
    shutil.copyfile(d1 / "img_2.png", src / "0003" / "stray.png")  # same bytes filed under another species
    (src / "pikachu").mkdir()
    (src / "pikachu" / "a.png").write_bytes(_png_bytes((1, 2, 3, 255)))
    (src / "9999").mkdir()
    (src / "notes.txt").write_text("not a folder")
    return src


def _tree_hash(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_ingest_reports_and_quarantines_bad_inputs_and_changes_nothing(messy, tmp_path):
    before = _tree_hash(messy)
    data = tmp_path / "data"
    logs = []
    rep = ingest_folder(messy, data, log=logs.append, workers=1)
    assert _tree_hash(messy) == before  # the source is never modified
    probs = {Path(p.path).name: (p.problem, p.action) for p in rep.problems}
    for bad in ("zero.png", "trunc.png", "not_image.jpg", "dot.png"):
        assert "quarantined" in probs[bad][1]
        assert (data / "quarantine" / "src" / "0001" / bad).read_bytes() == (messy / "0001" / bad).read_bytes()
    assert "zero-byte" in probs["zero.png"][0] and "too small: 1x1" in probs["dot.png"][0]
    assert "content is PNG" in probs["png_named.jpg"][0] and "stored as .png" in probs["png_named.jpg"][1]
    assert "CMYK" in probs["cmyk.jpg"][0] and "16-bit" in probs["deep16.png"][0]
    assert "palette" in probs["palette.gif"][0] and "grayscale" in probs["gray.png"][0]
    assert "EXIF" in probs["rotated.jpg"][0]
    assert "another" not in probs.get("stray.png", ("", ""))[0] and "#0001" in probs["stray.png"][0]
    assert "not a dex number" in probs["pikachu"][0] and "not a dex number" in probs["9999"][0]
    assert rep.duplicates == 2  # img_1_copy (merged) and stray (kept under #0001)
    # every problem is on the console and in the report file
    report = (data / "reports" / "ingest-problems.csv").read_text()
    for name in probs:
        assert name in report and any(name in m for m in logs)
    # the raw store holds byte-identical copies named by content; duplicates merged
    index = load_index(data)
    for r in index.values():
        raw = (data / "raw" / r.file).read_bytes()
        assert hashlib.sha256(raw).hexdigest() == r.sha256 and r.file.split("/")[-1].startswith(r.sha256[:16])
    merged = [r for r in index.values() if len(r.sources) > 1]
    assert len(merged) == 1 and {s["path"] for s in merged[0].sources} == {"0001/img_1.png", "0001/img_1_copy.png"}
    # a second ingest adds nothing and rewrites no stored file
    raw_before = _tree_hash(data / "raw" / "all_pokemon")
    rep2 = ingest_folder(messy, data, **QUIET)
    assert rep2.added == 0 and _tree_hash(data / "raw" / "all_pokemon") == raw_before


def test_process_layout_conversions_and_verify(messy, tmp_path):
    data = tmp_path / "data"
    ingest_folder(messy, data, **QUIET)
    rep = process(data, **QUIET)
    yolo = data / "processed" / "yolo_dataset"
    assert rep.species == 3 and rep.images == sum(rep.per_split.values())
    for p in (yolo / "images").rglob("*.jpg"):
        with Image.open(p) as im:
            assert im.format == "JPEG" and im.size == (416, 416) and im.mode == "RGB"
        lab = (yolo / "labels" / p.parent.name / f"{p.stem}.txt").read_text()
        assert lab == f"{int(p.stem[:4]) - 1} 0.5 0.5 1.0 1.0\n"
        view = data / "processed" / "classify" / p.parent.name / p.stem[:4] / p.name
        assert view.is_symlink() and view.resolve() == p.resolve()
    # the rotated photo is upright and letterboxed on white (20 wide x 40 tall when shown)
    rows = [r.split(",") for r in (yolo / "split.csv").read_text().splitlines()[1:]]
    rot_sha = hashlib.sha256((messy / "0002" / "rotated.jpg").read_bytes()).hexdigest()
    rot = next(r[0] for r in rows if r[3] == rot_sha)
    a = np.asarray(Image.open(yolo / rot))
    assert a[5:100, 5:50].min() > 240  # white band left of the centred portrait image
    assert a[60:150, 150:260].mean() > 200 and a[300:400, 150:260].mean() < 60  # white top half, black bottom
    yaml = (yolo / "data.yaml").read_text(encoding="utf-8")
    assert "nc: 1025" in yaml and '28: "Nidoran♀"' in yaml and "val: images/validation" in yaml
    assert verify(data, expect_species=3).ok
    v = verify(data)
    assert not v.ok and "1022 of 1025 species have no training images" in v.failures[-1]


def test_process_rerun_is_cached_and_a_new_source_renders_only_itself(tmp_path):
    src = make_dataset(tmp_path / "src", species=2, per_species=5)
    data = tmp_path / "data"
    ingest_folder(src, data, **QUIET)
    first = process(data, **QUIET)
    snap = _tree_hash(data / "processed" / "yolo_dataset")
    again = process(data, **QUIET)
    assert again.rendered == 0 and again.cached == first.images
    assert _tree_hash(data / "processed" / "yolo_dataset") == snap
    Image.new("RGB", (33, 21), (9, 99, 199)).save(src / "0002" / "new.png")
    ingest_folder(src, data, **QUIET)
    assert process(data, **QUIET).rendered == 1


def test_verify_names_the_broken_files(tmp_path):
    src = make_dataset(tmp_path / "src", species=3, per_species=6)
    data = tmp_path / "data"
    ingest_folder(src, data, **QUIET)
    process(data, **QUIET)
    yolo = data / "processed" / "yolo_dataset"
    labels = sorted((yolo / "labels" / "train").glob("*.txt"))
    labels[0].write_text("5000 0.5 0.5 1.0 1.0\n")
    labels[1].unlink()
    labels[2].write_text("0 0.5 0.5\n")
    img = sorted((yolo / "images" / "validation").glob("*.jpg"))[0]
    img.unlink()
    Image.new("RGB", (100, 100)).save(img, "JPEG")
    leak = sorted((yolo / "images" / "test").glob("*.jpg"))[0]
    shutil.copyfile(leak, yolo / "images" / "train" / leak.name)
    shutil.copyfile(yolo / "labels" / "test" / f"{leak.stem}.txt", yolo / "labels" / "train" / f"{leak.stem}.txt")
    v = verify(data, expect_species=3)
    text = "\n".join(v.failures)
    assert f"{labels[0]}: class 5000 is out of range" in text
    assert f"{labels[1].stem}.jpg has no label file" in text
    assert f"{labels[2]}: expected 'class 0.5 0.5 1.0 1.0'" in text
    assert f"{img}: JPEG 100x100, expected JPEG 416x416" in text
    assert f"images/train/{leak.name} is on disk but not in split.csv" in text
    r = CliRunner().invoke(main, ["data", "verify", "--data", str(data), "--expect-species", "3"])
    assert r.exit_code == 1 and "FAIL" in r.output and "verification failed" in r.output


def test_cli_round_trip(tmp_path):
    src = make_dataset(tmp_path / "src", species=2, per_species=3)
    data = tmp_path / "data"
    run = CliRunner().invoke
    assert run(main, ["data", "ingest", str(src), "--out", str(data), "--workers", "1"]).exit_code == 0
    assert run(main, ["data", "process", "--data", str(data), "--workers", "1"]).exit_code == 0
    r = run(main, ["data", "verify", "--data", str(data), "--expect-species", "2"])
    assert r.exit_code == 0 and "0 failures" in r.output
    r = run(main, ["data", "ingest", str(tmp_path / "nope"), "--out", str(data)])
    assert r.exit_code == 1 and "is not a folder" in r.output


def test_decompression_bomb_is_quarantined(tmp_path, monkeypatch):
    import pokedex_host.preprocess as pp

    src = tmp_path / "src" / "0001"
    src.mkdir(parents=True)
    Image.new("RGB", (300, 300)).save(src / "big.png")
    Image.new("RGB", (20, 20)).save(src / "ok.png")
    monkeypatch.setattr(pp, "MAX_PIXELS", 10_000)
    rep = ingest_folder(tmp_path / "src", tmp_path / "data", **QUIET)
    probs = {Path(p.path).name: p.problem for p in rep.problems}
    assert "decompression bomb" in probs["big.png"] and rep.added == 1


def test_unreadable_folder_is_reported_and_the_run_completes(tmp_path, monkeypatch):
    src = make_dataset(tmp_path / "src", species=2, per_species=2)
    real_rglob = Path.rglob

    def rglob(self, pattern):
        if self.name == "0002":
            raise PermissionError(13, "Permission denied")
        return real_rglob(self, pattern)

    monkeypatch.setattr(Path, "rglob", rglob)
    rep = ingest_folder(src, tmp_path / "data", **QUIET)
    probs = {Path(p.path).name: p.problem for p in rep.problems}
    assert "unreadable folder" in probs["0002"] and rep.added == 2
