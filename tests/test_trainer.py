"""The one training loop (train/trainer.py): resume, best.pt, last.pt, a continued stage's start."""

import pytest
import torch
from torch import nn

from pokedex_host.errors import PokedexError
from pokedex_host.models import create_model
from pokedex_host.train.trainer import LAST_FORMAT, Stage, Trainer, read_last


class Toy(Stage):
    """A linear classifier on 12 fixed points; batches and noise come from the stage's generator,
    dropout from torch's global RNG, so a resume is exact only if both states are restored."""

    name = label = "toy"
    family = "toy"
    classes = [1, 2, 3]
    steps = 3
    warmup_epochs = 0.5

    def __init__(self, scores=None, start_counts=False, interrupt_at=None):
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Dropout(0.3), nn.Linear(4, 3))
        self.model.config = {}
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=0.1)
        self.generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(12, 4, generator=torch.Generator().manual_seed(1))
        self.y = torch.arange(12) % 3
        self.meta = {"what": "toy"}
        self.scores, self.start_counts, self.interrupt_at, self.validated = scores, start_counts, interrupt_at, 0

    def begin_epoch(self, epoch):
        self.model.train()
        self.perm = torch.randperm(12, generator=self.generator)

    def step(self, epoch, s):
        if (epoch, s) == self.interrupt_at:
            raise KeyboardInterrupt
        idx = self.perm[s * 4 : (s + 1) * 4]
        x = self.x[idx] + 0.1 * torch.randn(4, 4, generator=self.generator)
        loss = nn.functional.cross_entropy(self.model(x), self.y[idx])
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return float(loss.detach()), 4

    def validate(self):
        self.model.eval()
        with torch.no_grad():
            loss = float(nn.functional.cross_entropy(self.model(self.x), self.y))
        self.validated += 1
        top1 = self.scores[self.validated - 1] if self.scores else -loss
        return {"val_loss": loss, "top1": top1, "top5": 100.0}


def _fit(out, epochs=4, **kw):
    stage = Toy(**kw)
    return stage, Trainer(stage, out, epochs, log=lambda m: None).fit()


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _rows(history):
    return [{k: v for k, v in h.items() if k not in ("seconds", "images_per_s")} for h in history]


def test_a_resumed_run_is_bit_identical_to_a_straight_one(tmp_path):
    straight, res = _fit(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "b", interrupt_at=(2, 1))  # Ctrl-C in the middle of epoch 3
    assert read_last(tmp_path / "b" / "last.pt")["epoch"] == 1
    resumed, res2 = _fit(tmp_path / "b")
    assert _same(straight.model.state_dict(), resumed.model.state_dict())
    assert _rows(res["history"]) == _rows(res2["history"]) and [h["epoch"] for h in res2["history"]] == [1, 2, 3, 4]
    assert _same(
        torch.load(tmp_path / "a" / "best.pt", weights_only=True)["state_dict"],
        torch.load(tmp_path / "b" / "best.pt", weights_only=True)["state_dict"],
    )
    # without the generator's state the resumed epochs draw other batches: the test can tell
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "c", interrupt_at=(2, 1))
    st = torch.load(tmp_path / "c" / "last.pt", weights_only=True)
    st["generator"] = None
    torch.save(st, tmp_path / "c" / "last.pt")
    other, _ = _fit(tmp_path / "c")
    assert not _same(straight.model.state_dict(), other.model.state_dict())


def test_best_pt_is_the_epoch_that_validated_best(tmp_path):
    weights = {}
    stage = Toy(scores=[50.0, 90.0, 70.0])
    tr = Trainer(
        stage,
        tmp_path,
        3,
        log=lambda m: None,
        callbacks=[lambda m: weights.update({m["epoch"]: {k: v.clone() for k, v in stage.model.state_dict().items()}})],
    )
    res = tr.fit()
    assert res["best"] == 90.0 and res["best_epoch"] == 2
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["meta"]["epoch"] == 2 and best["meta"]["metrics"]["top1"] == 90.0 and best["classes"] == [1, 2, 3]
    assert _same(best["state_dict"], weights[2]) and not _same(best["state_dict"], weights[3])
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",")[:5] == ["epoch", "train_loss", "images_per_s", "seconds", "lr"] and len(rows) == 4


def test_patience_stops_when_no_epoch_beats_the_best(tmp_path):
    logs = []
    stage = Toy(scores=[50.0, 40.0, 30.0, 20.0, 10.0])
    res = Trainer(stage, tmp_path, 5, patience=2, log=logs.append).fit()
    assert [h["epoch"] for h in res["history"]] == [1, 2, 3] and any("early stop" in m for m in logs)


def test_the_last_pt_schema(tmp_path):
    _fit(tmp_path, epochs=2)
    st = torch.load(tmp_path / "last.pt", weights_only=True)  # loads without pickled code
    assert set(st) == {
        "format",
        "version",
        "stage",
        "epoch",
        "model",
        "optimizer",
        "scheduler",
        "best",
        "best_epoch",
        "history",
        "generator",
        "torch_rng",
        "cuda_rng",
        "meta",
        "aux",
    }
    assert st["aux"] is None  # a stage with no training-only module (the feature term's map has one)
    assert st["format"] == LAST_FORMAT and st["version"] == 1 and st["stage"] == "toy" and st["epoch"] == 1
    assert st["scheduler"] == {"name": "warmup_cosine", "warmup_steps": 1, "total_steps": 6, "step": 6}
    assert st["generator"].dtype == torch.uint8 and st["meta"] == {"what": "toy"} and len(st["history"]) == 2
    # another stage's options are refused
    stage = Toy()
    stage.meta = {"what": "else"}
    with pytest.raises(PokedexError, match="another configuration"):
        Trainer(stage, tmp_path, 3, log=lambda m: None).fit()


def test_last_pt_files_of_the_earlier_loops_are_converted_or_refused(tmp_path):
    stage = Toy()
    sd, opt = stage.model.state_dict(), stage.optimizer.state_dict()
    row = {"epoch": 1, "train_loss": 1.0, "top1": 40.0}
    old_student = {
        "config": {"width": 0.25},
        "epoch": 0,
        "model": sd,
        "optimizer": opt,
        "generator": stage.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "best_top1": 40.0,
        "best_epoch": 0,
        "history": [row],
        "data_hash": "abc",
    }
    torch.save(old_student, tmp_path / "s.pt")
    st = read_last(tmp_path / "s.pt")
    assert st["format"] == LAST_FORMAT and st["best"] == 40.0 and st["best_epoch"] == 1
    assert st["meta"] == {"config": {"width": 0.25}, "data_hash": "abc"} and st["stage"] == "student"
    old_recipe = {
        "model": sd,
        "optimizer": opt,
        "epoch": 0,
        "best": 40.0,
        "history": [row],
        "torch_rng": torch.get_rng_state(),
        "meta": {"stage": "teacher"},
    }
    torch.save(old_recipe, tmp_path / "r.pt")
    st = read_last(tmp_path / "r.pt")
    assert st["stage"] == "teacher" and st["generator"] is None and st["best_epoch"] is None
    # a converted recipe last.pt resumes: its best epoch is found in its history
    (tmp_path / "run").mkdir()
    torch.save({**old_recipe, "meta": {"what": "toy"}}, tmp_path / "run" / "last.pt")
    stage = Toy(scores=[10.0])
    res = Trainer(stage, tmp_path / "run", 2, log=lambda m: None).fit()
    assert [h["epoch"] for h in res["history"]] == [1, 2] and res["best_epoch"] == 1
    torch.save({"weights": sd}, tmp_path / "x.pt")
    with pytest.raises(PokedexError) as e:
        read_last(tmp_path / "x.pt")
    assert "x.pt is not a last.pt" in e.value.message and "delete" in e.value.hint
    (tmp_path / "y.pt").write_bytes(b"garbage")
    with pytest.raises(PokedexError, match="y.pt is corrupt"):
        read_last(tmp_path / "y.pt")


def test_a_continued_stage_keeps_its_start_on_a_tie(tmp_path):
    logs = []
    stage = Toy(scores=[60.0, 60.0, 60.0], start_counts=True)
    start = {k: v.clone() for k, v in stage.model.state_dict().items()}
    res = Trainer(stage, tmp_path / "tie", 2, log=logs.append).fit()
    best = torch.load(tmp_path / "tie" / "best.pt", weights_only=True)
    assert best["meta"]["epoch"] == 0 and _same(best["state_dict"], start) and res["best_epoch"] == 0
    assert [h["epoch"] for h in res["history"]] == [0, 1, 2] and logs[0].startswith("toy epoch 0 (its start)")
    assert not _same(stage.model.state_dict(), start)  # it trained; the start was handed on
    # run again: the start is not validated a second time, nothing is retrained
    stage = Toy(scores=[], start_counts=True)
    assert Trainer(stage, tmp_path / "tie", 2, log=lambda m: None).fit()["best_epoch"] == 0 and stage.validated == 0
    # an epoch that beats the start is kept
    stage = Toy(scores=[60.0, 61.0, 60.5], start_counts=True)
    assert Trainer(stage, tmp_path / "beat", 2, log=lambda m: None).fit()["best_epoch"] == 1
    assert torch.load(tmp_path / "beat" / "best.pt", weights_only=True)["meta"]["epoch"] == 1


def test_the_models_say_what_a_trainer_may_freeze():
    t = create_model("efficientnet_lite", variant="lite0", input=32, classes=1025)
    assert t.get_classifier() is t._fc
    assert t.early_layers(3) == [t._conv_stem, t._bn0, *t._blocks[:3]]
    s = create_model("kpu_mobilenet_v1", width=0.25, input=32, classes=1025)
    assert s.get_classifier() is s.heads
    stem_and_one = s.early_layers(1)
    assert len(stem_and_one) == 9 and stem_and_one[0] is s.features[0]
    convs = [m for m in stem_and_one if isinstance(m, nn.Conv2d)]
    assert [c.groups > 1 for c in convs] == [False, True, False]  # stem, then one depthwise-separable block
    assert s.early_layers(0) == list(s.features[:3])
