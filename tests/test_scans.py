"""Official card scans as a data source: labels, the split by set, held card frames, the recipe's
[cards] table, and the real-card benchmark sets. Cards are generated here; the shared scans are
read when they are beside the checkout."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, make_dataset
from PIL import Image, ImageDraw

from pokedex_host.dataset import scans as S
from pokedex_host.errors import PokedexError

SHARED_CARDS = ROOT.parent / "shared" / "data" / "cards"


def _card(rng, colour, art) -> Image.Image:
    """A generated card 183 x 256: a border colour, an art window of ``art`` colour with a blob."""
    im = Image.new("RGB", (183, 256), colour)
    d = ImageDraw.Draw(im)
    x0, y0, x1, y1 = S.LAYOUT.art
    box = [int(x0 * 183), int(y0 * 256), int(x1 * 183), int(y1 * 256)]
    scene = Image.fromarray(rng.integers(0, 255, (6, 9, 3), dtype=np.uint8)).resize(
        (box[2] - box[0], box[3] - box[1]), Image.BICUBIC
    )  # a scene of its own behind the Pokémon
    im.paste(scene, box[:2])
    d.rectangle(box, outline=art, width=2)
    cx, cy = rng.uniform(60, 120), rng.uniform(40, 100)
    d.ellipse([cx - 25, cy - 20, cx + 25, cy + 20], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return im


def make_scans(root: Path, sets: dict[str, list[int]], seed: int = 0) -> Path:
    """A scans folder like ../shared/data/cards: labels.csv and images/<source>/<id>.jpg."""
    rng = np.random.default_rng(seed)
    rows = []
    for st, dexes in sets.items():
        for i, dex in enumerate(dexes):
            cid = f"{st}-{i + 1}"
            f = root / "images" / "gen" / f"{cid}.jpg"
            f.parent.mkdir(parents=True, exist_ok=True)
            _card(
                rng, tuple(int(v) for v in rng.integers(0, 255, 3)), tuple(int(v) for v in rng.integers(0, 255, 3))
            ).save(f)
            rows.append(
                {
                    "file": f"images/gen/{cid}.jpg",
                    "card_id": cid,
                    "set": st,
                    "source": "pokemon_card_images",
                    "language": "en",
                    "name": f"Mon {dex}" + (" EX" if i % 3 == 0 else ""),
                    "dex": str(dex),
                    "all_dex": str(dex),
                    "origin": "generated",
                }
            )
    with (root / "labels.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def test_scans_are_split_by_set_and_bad_rows_are_reported(tmp_path):
    src = make_scans(tmp_path / "cards", {"base1": [1, 2, 3], "neo2": [1, 2], "gym2": [3, 2], "SV2a": [1]})
    with (src / "labels.csv").open("a", encoding="utf-8") as fh:  # a missing file and a bad dex
        fh.write("images/gen/gone.jpg,gone-1,base1,pokemon_card_images,en,Gone,4,4,x\n")
        fh.write("images/gen/base1-1.jpg,odd-1,base1,pokemon_card_images,en,Odd,2000,2000,x\n")
    logs = []
    by = S.ingest_scans(src, tmp_path / "data", log=logs.append)
    assert [s.set for s in by["validation"]] == ["neo2", "neo2"] and {s.set for s in by["test"]} == {"gym2"}
    assert {s.set for s in by["train"]} == {"base1"}
    problems = (tmp_path / "data" / "reports" / "cards-problems.csv").read_text()
    assert "reserved for evaluation" in problems and "file missing" in problems and "2000" in problems
    assert sum("problem:" in m for m in logs) == 3
    back = S.load_scans(tmp_path / "data", "test")
    assert back == by["test"] and back[0].era == "wizards" and back[0].group in ("wizards/regular", "wizards/rule-box")
    assert S.card_kind("Venusaur EX") == "rule-box" and S.card_kind("M Venusaur EX") == "rule-box"
    assert S.card_kind("Zacian V") == "rule-box" and S.card_kind("Pikachu") == "regular"
    assert S.card_kind("蒼響V") == "rule-box" and S.card_kind("リザードンex") == "rule-box"
    assert S.card_kind("噴火龍") == "regular" and S.card_kind("Vulpix") == "regular"


def test_a_held_out_card_with_a_training_cards_art_moves_to_train(tmp_path):
    src = make_scans(tmp_path / "cards", {"base1": [1, 2], "neo2": [5]})
    # the neo2 card reprints base1-1's art (same image, another set)
    (src / "images" / "gen" / "neo2-1.jpg").write_bytes((src / "images" / "gen" / "base1-1.jpg").read_bytes())
    logs = []
    by = S.ingest_scans(src, tmp_path / "data", log=logs.append)
    assert by["validation"] == [] and len(by["train"]) == 3
    assert any("moved to train" in m for m in logs)


def test_load_scans_without_ingest_names_the_command(tmp_path):
    with pytest.raises(PokedexError, match="data cards"):
        S.load_scans(tmp_path / "nothing", "train")
    with pytest.raises(PokedexError, match="labels.csv"):
        S.ingest_scans(tmp_path / "empty", tmp_path / "data")


def test_a_held_card_frame_shows_the_card_where_its_corners_say(tmp_path):
    from pokedex_host.dataset.cards import held_card_frame, scan_view

    card = S.open_card(make_scans(tmp_path / "c", {"base1": [7]}) / "images" / "gen" / "base1-1.jpg")
    assert card.getpixel((0, 0))[3] == 0 and card.getpixel((90, 128))[3] == 255  # rounded corners
    for seed in range(6):
        img, corners = held_card_frame(card, np.random.default_rng(seed), strength=0.0)
        assert img.shape == (240, 320, 3)
        c = np.asarray(corners)
        h = np.ptp(c[:, 1])
        assert 0.3 * 240 < h <= 240 and (c >= -2).all() and (c[:, 0] <= 322).all()
        # the centre of the art window in the frame has the card's art colour, not the desk's
        art = np.asarray(card.convert("RGB"))[int(0.2 * 256), int(0.2 * 183)]
        u, v = 0.2, 0.2
        top, bottom = c[0] + (c[1] - c[0]) * u, c[3] + (c[2] - c[3]) * u
        x, y = top + (bottom - top) * v
        assert np.abs(img[int(y), int(x)].astype(int) - art).max() < 60
    a = scan_view(card, np.random.default_rng(3), 64)
    assert a.shape == (64, 64, 3) and (a == scan_view(card, np.random.default_rng(3), 64)).all()


def test_the_recipe_trains_on_cards_and_validates_on_real_ones(tmp_path):
    import torch

    from pokedex_host.train.recipe import Recipe, epoch_order, run_recipe

    root = tmp_path / "classify"
    make_dataset(root / "train", species=3, per_species=4, size=40, seed=1)
    make_dataset(root / "validation", species=3, per_species=2, size=40, seed=2)
    S.ingest_scans(make_scans(tmp_path / "cards", {"base1": [1, 2, 3, 1], "neo2": [2, 3]}), tmp_path / "data")
    rec = tmp_path / "tiny.toml"
    rec.write_text(
        f'data = "{root}"\nthreads = 1\n[views]\nper_image = 2\nsize = 32\nworkers = 1\n'
        f'[cards]\ndata = "{tmp_path / "data"}"\nrepeat = 3\nviews = 5\n'
        "[teacher]\ninput = 32\nepochs = 1\nbatch = 4\n[student]\ninput = 32\nwidth = 0.25\nepochs = 1\nbatch = 4\n"
    )
    logs = []
    run_recipe(Recipe.load(rec), tmp_path / "run", log=logs.append)
    assert any("cards: 4 training cards (each 3x an epoch, 5 camera views), 2 validation cards" in m for m in logs)
    cached = torch.load(tmp_path / "run" / "views" / "cards-train.pt", weights_only=True)["views"]
    assert tuple(cached.shape[:2]) == (4, 5)  # cards.views of each card; the sprites keep views.per_image
    assert any("real cards" in m and "student epoch 1/1" in m for m in logs)
    hist = (tmp_path / "run" / "student" / "metrics.csv").read_text()
    assert "val_real_top1" in hist
    # the epoch: every sprite once, every card `repeat` times
    from pokedex_host.train.data import SplitData

    sd = SplitData(torch.zeros(5, 3, 2, 2, dtype=torch.uint8), torch.arange(5), [""] * 5)
    order = epoch_order(sd, 3, 3, 0)
    assert sorted(order.tolist()) == [0, 1, 2] + [3] * 3 + [4] * 3


def test_scan_sets_for_eval_and_the_app(tmp_path):
    from pokedex_host.dataset.preview import styles_for
    from pokedex_host.emulator.bench_cards import read_truth

    S.ingest_scans(make_scans(tmp_path / "cards", {"gym2": [4, 5, 6, 4, 5, 6, 4, 5, 6, 4, 5]}), tmp_path / "data")
    art = tmp_path / "art"
    assert S.scan_set(tmp_path / "data", "test", art, kind="art", size=48) == 11
    files = sorted(str(f) for f in art.glob("*/*.png"))
    assert len(files) == 11 and Image.open(files[0]).size == (48, 48)
    groups = styles_for(files)
    assert set(groups.values()) == {"wizards/regular", "wizards/rule-box"}
    frames = tmp_path / "frames"
    S.scan_set(tmp_path / "data", "test", frames, kind="card")
    truth = read_truth(frames)
    assert len(truth) == 12 and sum(t["dex"] == 0 for t in truth) == 1
    assert all((frames / t["file"]).is_file() for t in truth)
    assert {t["style"] for t in truth if t["dex"]} == {"wizards/regular", "wizards/rule-box"}
    assert json.loads((frames / "groups.json").read_text())["gym2-1"] == "wizards/rule-box"


def test_bench_cards_reports_by_group_and_most_confused():
    from pokedex_host.emulator.bench_cards import FrameResult, by_group, most_confused

    sq = [[0, 0], [10, 0], [10, 14], [0, 14]]
    truth = [
        {"dex": 1, "style": "a", "corners": sq},
        {"dex": 2, "style": "a", "corners": sq},
        {"dex": 3, "style": "b", "corners": sq},
        {"dex": 0, "style": "none", "corners": None},
    ]
    res = [
        FrameResult("f1", 1, 1, 0.9, "card", (0, 0, 1, 1), sq),
        FrameResult("f2", 2, 3, 0.2, "card", (0, 0, 1, 1), None),
        FrameResult("f3", 3, 2, 0.6, "card", (0, 0, 1, 1), sq),
        FrameResult("f4", 0, 0, 0.0, "none", (0, 0, 1, 1), None),
    ]
    g = by_group(truth, res, 0.25)
    assert g["a"] == {
        "frames": 2,
        "found_pct": 50.0,
        "best_guess_pct": 50.0,
        "named_right_pct": 50.0,
        "named_wrong_pct": 0.0,
    }
    assert g["b"]["named_wrong_pct"] == 100.0 and "none" not in g
    assert most_confused(res) == [{"label": 2, "predicted": 3, "count": 1}, {"label": 3, "predicted": 2, "count": 1}]


@pytest.mark.skipif(
    not (SHARED_CARDS / "labels.csv").is_file(), reason="the shared card scans are not beside this checkout"
)
def test_the_shared_scans_split_spans_eras_and_no_reserved_set(tmp_path):
    by = S.ingest_scans(SHARED_CARDS, tmp_path / "data", log=lambda m: None)
    for split in ("validation", "test"):
        assert {s.era for s in by[split]} >= {"wizards", "sm-swsh", "sv-mega"}
        assert {s.language for s in by[split]} >= {"en", "zh-Hant", "ja"}
    sets = {k: {s.set for s in v} for k, v in by.items()}
    assert not (sets["test"] & sets["validation"]) and sets["test"] | sets["validation"] == set(S.SET_SPLIT)
    # only the held-out cards that reprint a training card's art went to train
    moved = [s for s in by["train"] if s.set in S.SET_SPLIT]
    assert 0 < len(moved) < 0.1 * (len(by["test"]) + len(by["validation"]))
    assert not any(s.set in S.RESERVED_SETS for v in by.values() for s in v)
    assert len(by["test"]) > 500 and len(by["train"]) > 3000


def test_real_card_gap_reads_the_same_cards_at_each_stage(tmp_path):
    """tools/real_card_gap.py: each stage is the card as that stage shows it (the printed stage is
    the firmware's crop of a located card, squeezed; square and letterbox keep the art's aspect;
    camera adds the OV2640's effects to the held card), and the table has a row per model."""
    import importlib.util
    import subprocess
    import sys

    from pokedex_host.models import create_model
    from pokedex_host.models.checkpoint import save_checkpoint

    spec = importlib.util.spec_from_file_location("real_card_gap", ROOT / "tools" / "real_card_gap.py")
    gap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gap)
    S.ingest_scans(make_scans(tmp_path / "cards", {"base1": [1, 2, 3], "neo2": [2, 3, 1]}), tmp_path / "data")
    path = S.load_scans(tmp_path / "data", "validation")[0].path
    crop = S.art_window(S.open_card(path).convert("RGB"))
    printed = gap.stage_image(path, "printed", np.random.default_rng(0), 64)
    assert printed.shape == (3, 64, 64)
    assert np.array_equal(printed, np.asarray(crop.resize((64, 64), Image.BILINEAR)).transpose(2, 0, 1))
    square = gap.stage_image(path, "square", np.random.default_rng(0), 64)
    side = min(crop.size)
    x0 = (crop.width - side) // 2
    want = crop.crop((x0, (crop.height - side) // 2, x0 + side, (crop.height - side) // 2 + side))
    assert np.array_equal(square, np.asarray(want.resize((64, 64), Image.BILINEAR)).transpose(2, 0, 1))
    box = gap.stage_image(path, "letterbox", np.random.default_rng(0), 64)
    assert (box[:, 0] == 255).all() and not (box[:, 32] == 255).all()  # white above the art, art in the middle
    held = gap.stage_image(path, "held", np.random.default_rng(5), 64)
    camera = gap.stage_image(path, "camera", np.random.default_rng(5), 64)
    assert np.array_equal(held, gap.stage_image(path, "held", np.random.default_rng(5), 64))
    assert not np.array_equal(held, camera)
    model = create_model("kpu_mobilenet_v1", width=0.25, input=32, classes=1025)
    ck = save_checkpoint(tmp_path / "m.pt", model, "kpu_mobilenet_v1", list(range(1, 1026)))
    r = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "real_card_gap.py"), str(ck), str(ck), "--data", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("3 validation cards of 3 species")
    assert lines[1] == "| model | printed | square | letterbox | held | camera |"
    assert sum(line.startswith(f"| {ck} |") for line in lines) == 2
    r = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "real_card_gap.py"), str(ck), "--stages", "printed,zoom"],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "zoom" in r.stderr and "letterbox" in r.stderr
