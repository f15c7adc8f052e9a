import json

import pytest

from conftest import make_dataset
from pokedex_host.evaluate import evaluate


@pytest.mark.toolchain
def test_eval_compares_float_onnx_and_kmodel(tmp_path, toolchain_ready):
    from pokedex_host.build import BuildOptions, build_kmodel
    from pokedex_host.models import create_model
    from pokedex_host.models.checkpoint import save_checkpoint

    import torch

    torch.manual_seed(1)
    ck = save_checkpoint(tmp_path / "m.pt", create_model("kpu_mobilenet_v1", width=0.25, input=64, classes=1025).eval(),
                         "kpu_mobilenet_v1", list(range(1, 1026)))
    data = make_dataset(tmp_path / "test", species=4, per_species=3)
    build_kmodel(BuildOptions(model=ck, board="maix-bit-canmv", out=tmp_path / "out", calibration=data,
                              calibration_count=4, verify_count=0), log=lambda m: None)
    res = evaluate([ck, tmp_path / "out" / "model.onnx", tmp_path / "out" / "model.kmodel"], data, tmp_path / "ev",
                   log=lambda m: None)
    kinds = [m["kind"] for m in res["models"]]
    assert kinds == ["float (torch)", "float (onnxruntime)", "uint8 kmodel v5 (nncase simulator)"]
    assert res["images"] == 12
    assert res["models"][1]["top1_agreement_with_first"] == 100.0  # the same float model, two runtimes
    md = (tmp_path / "ev" / "eval.md").read_text()
    assert f"| `{tmp_path.name}/m.pt` |" in md and "out/model.kmodel" in md
    assert json.loads((tmp_path / "ev" / "eval.json").read_text())["models"][2]["images_per_s"] > 0
    assert (tmp_path / "ev" / "confusion_2_model_kmodel.png").exists()
