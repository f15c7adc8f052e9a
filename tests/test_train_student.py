import csv
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import make_dataset

from pokedex_host.cli import main
from pokedex_host.models.checkpoint import load_checkpoint
from pokedex_host.train.student import StudentConfig, train_student


@pytest.fixture
def classify(tmp_path: Path) -> Path:
    root = tmp_path / "classify"
    make_dataset(root / "train", species=3, per_species=6, size=40, seed=1)
    make_dataset(root / "validation", species=3, per_species=2, size=40, seed=2)
    return root


def cfg(classify, out, **kw):
    base = dict(data=str(classify), out=str(out), width=0.25, input=32, classes=3, epochs=2, batch=8, threads=1)
    base.update(kw)
    return StudentConfig(**base)


def test_trains_checkpoints_and_resumes(classify, tmp_path):
    out = tmp_path / "run"
    res = train_student(cfg(classify, out, epochs=1), log=lambda m: None)
    assert len(res["history"]) == 1
    last = torch.load(out / "last.pt", weights_only=True)  # the project's checkpoints are weights-only
    assert last["format"] == "pokedex-k210/last" and last["epoch"] == 0 and last["meta"]["config"]["width"] == 0.25
    ck = load_checkpoint(out / "best.pt")
    assert ck.classes == [1, 2, 3] and ck.meta["epoch"] == 1
    logs = []
    res = train_student(cfg(classify, out, epochs=3), resume=True, log=logs.append)
    assert any("resuming" in m and "epoch 2 of 3" in m for m in logs)
    assert [h["epoch"] for h in res["history"]] == [1, 2, 3]
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"] and float(rows[-1]["top5"]) == 100.0


def test_resume_refuses_another_architecture_and_a_corrupt_checkpoint(classify, tmp_path):
    out = tmp_path / "run"
    train_student(cfg(classify, out, epochs=1), log=lambda m: None)
    from pokedex_host.errors import PokedexError

    with pytest.raises(PokedexError) as e:
        train_student(cfg(classify, out, width=0.5), resume=True, log=lambda m: None)
    assert "same model options" in e.value.hint
    st = torch.load(out / "last.pt", weights_only=True)
    torch.save({**st, "stage": "teacher", "meta": {"stage": "teacher"}}, out / "last.pt")  # a recipe stage's
    with pytest.raises(PokedexError, match="another stage"):
        train_student(cfg(classify, out), resume=True, log=lambda m: None)
    (out / "last.pt").write_bytes(b"garbage")
    with pytest.raises(PokedexError) as e:
        train_student(cfg(classify, out), resume=True, log=lambda m: None)
    assert "corrupt" in e.value.message


def test_cli(classify, tmp_path):
    r = CliRunner().invoke(
        main,
        [
            "train",
            "student",
            "--data",
            str(classify),
            "--out",
            str(tmp_path / "r"),
            "--width",
            "0.25",
            "--input",
            "32",
            "--epochs",
            "1",
            "--batch",
            "8",
            "--threads",
            "1",
        ],
    )
    # the CLI trains all 1025 classes; the fixture has 3 species, which is fine for a smoke run
    assert r.exit_code == 0, r.output
    assert "best validation top-1" in r.output


def test_distillation_uses_cached_teacher_logits(classify, tmp_path):
    teacher_run = tmp_path / "teacher"
    train_student(cfg(classify, teacher_run, epochs=1), log=lambda m: None)
    logs = []
    res = train_student(cfg(classify, tmp_path / "s", epochs=1, teacher=str(teacher_run / "best.pt")), log=logs.append)
    assert (tmp_path / "s" / "teacher_logits.pt").exists() and any("cached in" in m for m in logs)
    cache = torch.load(tmp_path / "s" / "teacher_logits.pt", weights_only=True)
    assert cache["logits"].shape == (18, 3)
    logs = []
    train_student(
        cfg(classify, tmp_path / "s", epochs=2, teacher=str(teacher_run / "best.pt")), resume=True, log=logs.append
    )
    assert any("from the cache" in m for m in logs)
    assert len(res["history"]) == 1


def test_ddp_on_cpu_with_gloo_two_processes(classify, tmp_path):
    """torchrun, two CPU processes, gloo: both train, rank 0 writes the checkpoints once."""
    import os
    import shutil
    import subprocess
    import sys

    exe = shutil.which("pokedex-host", path=os.path.dirname(sys.executable))
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--no-python",
            exe,
            "train",
            "student",
            "--data",
            str(classify),
            "--out",
            str(out),
            "--width",
            "0.25",
            "--input",
            "32",
            "--epochs",
            "2",
            "--batch",
            "4",
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "DDP: 2 processes" in r.stdout + r.stderr
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert load_checkpoint(out / "best.pt").classes[:3] == [1, 2, 3]


def test_disk_full_keeps_the_last_good_checkpoint(classify, tmp_path, monkeypatch):
    import pokedex_host.train.trainer as st
    from pokedex_host.errors import PokedexError

    out = tmp_path / "run"
    train_student(cfg(classify, out, epochs=1), log=lambda m: None)
    good = (out / "last.pt").read_bytes()
    real = st.atomic_write_bytes

    def full(path, data):
        if path.name == "last.pt":
            raise OSError(28, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(st, "atomic_write_bytes", full)
    with pytest.raises(PokedexError) as e:
        train_student(cfg(classify, out, epochs=2), resume=True, log=lambda m: None)
    assert "No space left" in e.value.message and "--resume" in e.value.hint
    assert (out / "last.pt").read_bytes() == good
    monkeypatch.setattr(st, "atomic_write_bytes", real)
    res = train_student(cfg(classify, out, epochs=2), resume=True, log=lambda m: None)
    assert [h["epoch"] for h in res["history"]] == [1, 2]


def test_interrupt_mid_epoch_then_resume(classify, tmp_path, monkeypatch):
    import pokedex_host.train.student as st

    out = tmp_path / "run"
    train_student(cfg(classify, out, epochs=1), log=lambda m: None)
    calls = {"n": 0}
    real = st.augment

    def interrupt(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # Ctrl-C in the middle of epoch 2
        return real(*a, **k)

    monkeypatch.setattr(st, "augment", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_student(cfg(classify, out, epochs=3), resume=True, log=lambda m: None)
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 0  # epoch 1 is what was saved
    monkeypatch.setattr(st, "augment", real)
    res = train_student(cfg(classify, out, epochs=3), resume=True, log=lambda m: None)
    assert [h["epoch"] for h in res["history"]] == [1, 2, 3]


def test_species_missing_from_validation_are_reported(tmp_path):
    root = tmp_path / "c"
    make_dataset(root / "train", species=3, per_species=4, size=40, seed=1)
    make_dataset(root / "validation", species=2, per_species=1, size=40, seed=2)
    logs = []
    train_student(cfg(root, tmp_path / "r", epochs=1), log=logs.append)
    assert any("none in validation" in m and "#0003" in m for m in logs)


def test_groups_and_a_coarse_student(classify, tmp_path):
    import json

    from pokedex_host.train.groups import load_groups, make_groups

    fine = tmp_path / "fine"
    train_student(cfg(classify, fine, epochs=1), log=lambda m: None)
    g = make_groups(fine / "best.pt", classify / "train", 2, tmp_path / "g.json", log=lambda m: None)
    assert sorted(g["dex_to_group"]) == ["1", "2", "3"] and set(g["dex_to_group"].values()) <= {0, 1}
    assert load_groups(tmp_path / "g.json") == {int(k): v for k, v in g["dex_to_group"].items()}
    res = train_student(
        cfg(classify, tmp_path / "coarse", classes=2, groups=str(tmp_path / "g.json")), log=lambda m: None
    )
    assert len(res["history"]) == 2
    assert load_checkpoint(tmp_path / "coarse" / "best.pt").classes == [1, 2]
    from pokedex_host.errors import PokedexError

    with pytest.raises(PokedexError) as e:
        train_student(cfg(classify, tmp_path / "bad", classes=3, groups=str(tmp_path / "g.json")), log=lambda m: None)
    assert "--classes 2" in e.value.hint
    assert json.loads((tmp_path / "g.json").read_text())["format"] == "pokedex-k210/groups"


def test_tensorboard_scalars_when_asked(classify, tmp_path):
    tb = tmp_path / "tb"
    train_student(cfg(classify, tmp_path / "r", epochs=1, tensorboard=str(tb)), log=lambda m: None)
    assert list(tb.glob("events.out.tfevents.*"))


def test_a_resumed_run_gives_the_weights_of_an_uninterrupted_one(classify, tmp_path, monkeypatch):
    import pokedex_host.train.student as st

    train_student(cfg(classify, tmp_path / "straight", epochs=3), log=lambda m: None)
    calls = {"n": 0}
    real = st.augment

    def interrupt(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:  # 3 steps an epoch: Ctrl-C in the middle of epoch 2
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(st, "augment", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_student(cfg(classify, tmp_path / "cut", epochs=3), log=lambda m: None)
    monkeypatch.setattr(st, "augment", real)
    res = train_student(cfg(classify, tmp_path / "cut", epochs=3), resume=True, log=lambda m: None)
    assert [h["epoch"] for h in res["history"]] == [1, 2, 3]
    a, b = (torch.load(tmp_path / d / "last.pt", weights_only=True) for d in ("straight", "cut"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [h["top1"] for h in a["history"]] == [h["top1"] for h in b["history"]]
