from pathlib import Path

import numpy as np
import pytest
from conftest import make_dataset
from PIL import Image

from pokedex_host.compile.calibration import calibration_and_holdout, load_spec, pick_images, synthetic_images
from pokedex_host.errors import PokedexError
from pokedex_host.preprocess import BadImage, load_image


def test_round_robin_covers_every_class_before_repeating(tmp_path):
    root = make_dataset(tmp_path, species=7, per_species=4)
    s = pick_images(root, 7, 32, seed=0, log=lambda m: None)
    assert sorted(s.labels) == list(range(1, 8))  # one per species
    s2 = pick_images(root, 10, 32, seed=0, log=lambda m: None)
    assert sorted(set(s2.labels)) == list(range(1, 8)) and len(s2) == 10
    assert s2.files[:7] == s.files  # a longer pick extends the shorter one


def test_selection_is_deterministic_by_seed(tmp_path):
    root = make_dataset(tmp_path, species=5, per_species=6)
    a = pick_images(root, 12, 32, seed=3, log=lambda m: None)
    b = pick_images(root, 12, 32, seed=3, log=lambda m: None)
    c = pick_images(root, 12, 32, seed=4, log=lambda m: None)
    assert a.files == b.files and np.array_equal(a.x, b.x)
    assert a.files != c.files


def test_holdout_is_disjoint_from_calibration(tmp_path):
    root = make_dataset(tmp_path, species=4, per_species=6)
    spec = load_spec("default")
    cal, hold = calibration_and_holdout(root, spec, 32, 8, 10, log=lambda m: None)
    assert len(cal) == 8 and len(hold) == 10
    assert not set(cal.files) & set(hold.files)


def test_corrupt_images_are_named_and_skipped(tmp_path):
    root = make_dataset(tmp_path, species=3, per_species=2)
    (root / "0001" / "zero.png").write_bytes(b"")
    (root / "0002" / "trunc.png").write_bytes((root / "0002" / "img_0.png").read_bytes()[:60])
    (root / "0003" / "fake.jpg").write_text("this is not a jpeg")
    logs = []
    s = pick_images(root, 100, 32, seed=0, log=logs.append)
    bad = {Path(f).name for f, _ in s.rejected}
    assert bad == {"zero.png", "trunc.png", "fake.jpg"}
    assert len(s) == 6
    assert all(any(name in m for m in logs) for name in bad)


def test_folders_with_nothing_usable(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PokedexError) as e:
        pick_images(tmp_path / "empty", 4, 32, seed=0)
    assert "empty" in e.value.message and "no images" in e.value.message
    bad = tmp_path / "bad"
    (bad / "0001").mkdir(parents=True)
    (bad / "0001" / "a.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(PokedexError) as e:
        pick_images(bad, 4, 32, seed=0, log=lambda m: None)
    assert "none of its images could be read" in e.value.message
    with pytest.raises(PokedexError) as e:
        pick_images(tmp_path / "nope", 4, 32, seed=0)
    assert "does not exist" in e.value.message


def test_synthetic_frames_are_deterministic():
    a, b = synthetic_images(3, 32, 1), synthetic_images(3, 32, 1)
    assert a.x.shape == (3, 3, 32, 32) and a.x.dtype == np.uint8
    assert np.array_equal(a.x, b.x) and not np.array_equal(a.x, synthetic_images(3, 32, 2).x)


# --- the model-input spec -------------------------------------------------------------------


def test_alpha_flattens_on_white_and_letterboxes(tmp_path):
    im = Image.new("RGBA", (40, 20), (255, 0, 0, 0))
    im.paste((0, 0, 255, 255), (10, 5, 30, 15))
    im.save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png", 40)
    assert x.shape == (3, 40, 40)
    assert tuple(x[:, 0, 0]) == (255, 255, 255)  # letterbox band is white
    assert tuple(x[:, 12, 1]) == (255, 255, 255)  # transparent pixels are white, not red
    assert tuple(x[:, 20, 20]) == (0, 0, 255)  # RGB order


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "P", "L", "LA", "1"])
def test_odd_modes_convert_to_rgb(tmp_path, mode):
    Image.new("RGB", (16, 16), (10, 200, 30)).convert(mode).save(
        tmp_path / "x.tiff" if mode == "CMYK" else tmp_path / "x.png"
    )
    p = tmp_path / ("x.tiff" if mode == "CMYK" else "x.png")
    x = load_image(p, 8)
    assert x.shape == (3, 8, 8) and x.dtype == np.uint8


def test_exif_rotation_is_applied(tmp_path):
    im = Image.new("RGB", (20, 10), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 10, 10))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW when shown
    im.save(tmp_path / "r.jpg", exif=exif)
    x = load_image(tmp_path / "r.jpg", 20)
    # shown upright it is 10 wide x 20 tall, white on top
    assert x[:, 5:8, 10].mean() > 200 and x[:, 14:17, 10].mean() < 60


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    import pokedex_host.preprocess as pp

    Image.new("RGB", (300, 300)).save(tmp_path / "big.png")
    monkeypatch.setattr(pp, "MAX_PIXELS", 10_000)
    with pytest.raises(BadImage) as e:
        load_image(tmp_path / "big.png", 8)
    assert "limit" in str(e.value)


def test_each_set_names_its_count_once(tmp_path):
    """The count lives in the set's file: a file without one is refused, naming it."""
    import tomllib

    from pokedex_host.train.release import ReleaseOptions

    for name in ("default", "release"):
        spec = load_spec(name)
        raw = tomllib.loads(spec.path.read_text())
        assert spec.count == raw["count"] and spec.name == name
    assert load_spec(ReleaseOptions(recipe=tmp_path, run=tmp_path, out=tmp_path).calibration_spec).name == "release"
    bad = tmp_path / "nocount.toml"
    bad.write_text('name = "x"\nseed = 0\n')
    with pytest.raises(PokedexError, match="nocount.toml has no count"):
        load_spec(str(bad))
