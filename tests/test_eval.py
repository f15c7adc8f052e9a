import json

import pytest
from conftest import make_dataset

from pokedex_host.evaluate import evaluate


@pytest.mark.toolchain
def test_eval_compares_float_onnx_and_kmodel(tmp_path, toolchain_ready):
    import torch

    from pokedex_host.compile import BuildOptions, build_kmodel
    from pokedex_host.models import create_model
    from pokedex_host.models.checkpoint import save_checkpoint

    torch.manual_seed(1)
    ck = save_checkpoint(
        tmp_path / "m.pt",
        create_model("kpu_mobilenet_v1", width=0.25, input=64, classes=1025).eval(),
        "kpu_mobilenet_v1",
        list(range(1, 1026)),
    )
    data = make_dataset(tmp_path / "test", species=4, per_species=3)
    build_kmodel(
        BuildOptions(
            model=ck,
            board="maix-bit-canmv",
            out=tmp_path / "out",
            calibration=data,
            calibration_count=4,
            verify_count=0,
        ),
        log=lambda m: None,
    )
    res = evaluate(
        [ck, tmp_path / "out" / "model.onnx", tmp_path / "out" / "model.kmodel"],
        data,
        tmp_path / "ev",
        log=lambda m: None,
    )
    kinds = [m["kind"] for m in res["models"]]
    assert kinds == ["float (torch)", "float (onnxruntime)", "uint8 kmodel v5 (nncase simulator)"]
    assert res["images"] == 12
    assert res["models"][1]["top1_agreement_with_first"] == 100.0  # the same float model, two runtimes
    md = (tmp_path / "ev" / "eval.md").read_text()
    assert f"| `{tmp_path.name}/m.pt` |" in md and "out/model.kmodel" in md
    assert json.loads((tmp_path / "ev" / "eval.json").read_text())["models"][2]["images_per_s"] > 0
    assert (tmp_path / "ev" / "confusion_2_model_kmodel.png").exists()


def test_eval_with_the_mirror_image_averages_the_logits(tmp_path):
    """eval --mirror: each model a second time, logits averaged with those of the mirrored images."""
    import numpy as np
    import torch

    from pokedex_host.evaluate import _images
    from pokedex_host.models import create_model
    from pokedex_host.models.checkpoint import save_checkpoint

    torch.manual_seed(2)
    model = create_model("kpu_mobilenet_v1", width=0.25, input=32, classes=1025).eval()
    ck = save_checkpoint(tmp_path / "m.pt", model, "kpu_mobilenet_v1", list(range(1, 1026)))
    data = make_dataset(tmp_path / "test", species=4, per_species=4, size=32)
    res = evaluate([ck], data, tmp_path / "ev", mirror=True, log=lambda m: None)
    assert [m["model"] for m in res["models"]] == [str(ck), f"{ck} + mirror"]
    assert res["models"][1]["kind"] == "float (torch), averaged with the mirror image"
    x, _, _ = _images(data, 32, None)
    with torch.no_grad():
        a = model(torch.from_numpy(x).float() / 255)
        b = model(torch.from_numpy(np.ascontiguousarray(x[..., ::-1])).float() / 255)
    want = ((a + b) / 2).argmax(1) + 1
    assert res["models"][1]["predictions"] == want.tolist()
    assert res["models"][0]["predictions"] == (a.argmax(1) + 1).tolist() != want.tolist()  # the mirror mattered
    assert "m.pt + mirror" in (tmp_path / "ev" / "eval.md").read_text()
    assert (tmp_path / "ev" / "confusion_1_m_mirror_pt.png").exists()


def test_models_of_different_input_sizes_each_see_the_images_at_their_own(tmp_path):
    """A 160-px teacher beside a 128-px student (the release's card): each model gets the same
    images, loaded at its own input size, and agrees with itself run on those by hand."""
    import torch

    from pokedex_host.evaluate import _images
    from pokedex_host.models import create_model
    from pokedex_host.models.checkpoint import save_checkpoint

    torch.manual_seed(2)
    small = save_checkpoint(
        tmp_path / "s.pt",
        create_model("kpu_mobilenet_v1", width=0.25, input=32, classes=1025).eval(),
        "kpu_mobilenet_v1",
        list(range(1, 1026)),
    )
    big = save_checkpoint(
        tmp_path / "b.pt",
        create_model("kpu_mobilenet_v1", width=0.25, input=48, classes=1025).eval(),
        "kpu_mobilenet_v1",
        list(range(1, 1026)),
    )
    data = make_dataset(tmp_path / "test", species=3, per_species=2)
    res = evaluate([small, big], data, tmp_path / "ev", log=lambda m: None)
    assert res["images"] == 6
    for path, size, row in ((small, 32, res["models"][0]), (big, 48, res["models"][1])):
        x, labels, _ = _images(data, size, None)
        from pokedex_host.models.checkpoint import load_checkpoint

        with torch.no_grad():
            pred = load_checkpoint(path).build()(torch.from_numpy(x).float() / 255).argmax(1).numpy() + 1
        assert row["predictions"] == pred.tolist()
