"""Camera-realistic augmentation, the preview sheet, the materialised camera set, the report."""

from __future__ import annotations

import numpy as np
from conftest import make_dataset
from PIL import Image

from pokedex_host.dataset.augment import alpha_from_white, camera_frame, crop_to_alpha, curriculum
from pokedex_host.dataset.ingest import ingest_folder
from pokedex_host.dataset.preview import camera_set, preview
from pokedex_host.dataset.process import process
from pokedex_host.dataset.report import report


def _sprite() -> Image.Image:
    im = Image.new("RGBA", (60, 40), (0, 0, 0, 0))
    im.paste((250, 30, 30, 255), (10, 5, 50, 35))
    im.paste((255, 255, 255, 255), (25, 15, 35, 25))  # white inside the Pokémon
    return im


def test_frames_are_deterministic_sized_and_quantised():
    a = camera_frame(_sprite(), np.random.default_rng(3), 1.0, 96)
    b = camera_frame(_sprite(), np.random.default_rng(3), 1.0, 96)
    assert a.size == (96, 96) and a.mode == "RGB"
    assert np.array_equal(np.asarray(a), np.asarray(b))
    arr = np.asarray(a)
    assert set(np.unique(arr[..., 0] & 0b111)) <= {v & 0b111 for v in [(r << 3) | (r >> 2) for r in range(32)]}


def test_strength_zero_is_the_art_and_one_is_the_card_in_a_scene():
    rng = np.random.default_rng(0)
    easy = np.asarray(camera_frame(_sprite(), rng, 0.0, 96)).astype(int)
    red = (easy[..., 0] > 180) & (easy[..., 1] < 90)
    assert red.mean() > 0.25  # the Pokémon fills much of the view
    hard = [np.asarray(camera_frame(_sprite(), np.random.default_rng(s), 1.0, 96)).astype(int) for s in range(6)]
    shares = [((h[..., 0] > 180) & (h[..., 1] < 90)).mean() for h in hard]
    assert np.mean(shares) < red.mean() / 2  # at full strength the card is smaller and degraded


def test_alpha_from_white_keeps_white_inside():
    flat = Image.new("RGB", (60, 40), (255, 255, 255))
    flat.paste((250, 30, 30), (10, 5, 50, 35))
    flat.paste((255, 255, 255), (25, 15, 35, 25))
    a = np.asarray(alpha_from_white(flat).getchannel("A"))
    assert a[0, 0] == 0 and a[20, 30] == 255 and a[10, 15] == 255
    assert crop_to_alpha(_sprite()).size[0] < 60


def test_curriculum():
    assert [curriculum(e, 4) for e in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert curriculum(0, 0) == 1.0


def test_preview_camera_set_and_report(tmp_path):
    src = make_dataset(tmp_path / "src", species=4, per_species=4)
    data = tmp_path / "data"
    ingest_folder(src, data, log=lambda m: None, workers=1)
    process(data, log=lambda m: None, workers=1)
    sheet = preview(data, tmp_path / "sheet.png", count=4, size=64)
    assert Image.open(sheet).size[0] > 4 * 64
    n = camera_set(data, "train", tmp_path / "cam", size=64)
    files = sorted((tmp_path / "cam").rglob("*.jpg"))
    assert n == len(files) > 0 and Image.open(files[0]).size == (64, 64)
    again = tmp_path / "cam2"
    camera_set(data, "train", again, size=64)
    assert files[0].read_bytes() == (again / files[0].relative_to(tmp_path / "cam")).read_bytes()
    md = report(data).read_text()
    assert "16 images of 4 species (1021 species missing)" in md and (data / "reports" / "dataset.png").exists()
    assert "| train |" in md and "fewest" in md


def test_student_trains_with_camera_augmentation(tmp_path):
    from pokedex_host.train.student import StudentConfig, train_student

    root = tmp_path / "classify"
    make_dataset(root / "train", species=3, per_species=4, size=40, seed=1)
    make_dataset(root / "validation", species=3, per_species=1, size=40, seed=2)
    res = train_student(
        StudentConfig(
            data=str(root),
            out=str(tmp_path / "run"),
            width=0.25,
            input=32,
            classes=3,
            epochs=2,
            batch=4,
            threads=1,
            camera_aug_ramp=2,
        ),
        log=lambda m: None,
    )
    assert len(res["history"]) == 2
