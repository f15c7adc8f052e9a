from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from pokedex_host.compile.export import export_model, fold_input_scale, onnx_float_logits
from pokedex_host.errors import PokedexError
from pokedex_host.models import create_model


def test_recipe_exports_a_static_folded_graph(tiny_recipe: Path, tmp_path: Path):
    ex = export_model(tiny_recipe, tmp_path)
    m = onnx.load(str(ex.onnx_path))
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 128, 128]
    assert ex.scale_folded and ex.input_range == (0.0, 255.0)
    assert len(ex.classes) == 1025
    assert "onnxsim" in ex.simplifier
    # The folded graph on raw pixels equals the torch model on pixels / 255.
    x = np.random.default_rng(0).integers(0, 256, (2, 3, 128, 128), dtype=np.uint8)
    got = onnx_float_logits(ex.onnx_path, x, ex.input_range)
    with torch.no_grad():
        want = ex.torch_model(torch.tensor(x, dtype=torch.float32) / 255).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


def _export_torch(model, path: Path, dynamic=None):
    torch.onnx.export(
        model.eval(),
        torch.zeros(1, 3, 32, 32),
        str(path),
        opset_version=11,
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes=dynamic,
    )


def test_onnx_with_dynamic_spatial_dims_needs_input_size(tmp_path: Path):
    m = create_model("kpu_mobilenet_v1", width=0.25, input=32, classes=10)
    src = tmp_path / "dyn.onnx"
    _export_torch(m, src, {"input": {0: "n", 2: "h", 3: "w"}})
    with pytest.raises(PokedexError) as e:
        export_model(src, tmp_path, classes=list(range(1, 11)))
    assert "dyn.onnx" in e.value.message and "dynamic" in e.value.message and "--input-size" in e.value.hint
    ex = export_model(src, tmp_path, input_size=32, classes=list(range(1, 11)))
    assert ex.input_size == 32 and any("fixed" in n for n in ex.notes)


def test_onnx_class_count_must_match(tmp_path: Path):
    m = create_model("kpu_mobilenet_v1", width=0.25, input=32, classes=10)
    src = tmp_path / "m.onnx"
    _export_torch(m, src)
    with pytest.raises(PokedexError) as e:
        export_model(src, tmp_path, classes=list(range(1, 21)))
    assert "20 classes" in e.value.message


@pytest.mark.parametrize(
    "content,name,words",
    [
        (None, "missing.onnx", "does not exist"),
        (b"", "empty.onnx", "empty"),
        (b"\x08\x01garbage" * 10, "corrupt.onnx", "not a readable ONNX"),
        (b"x", "model.h5", "unknown model type"),
    ],
)
def test_bad_model_files_are_named(tmp_path: Path, content, name, words):
    p = tmp_path / name
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(PokedexError) as e:
        export_model(p, tmp_path)
    assert name in e.value.message and words in e.value.message


def test_input_scale_not_folded_when_input_feeds_something_else(tmp_path: Path):
    class Norm(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c = torch.nn.Conv2d(3, 8, 3, 1, 1)

        def forward(self, x):
            return self.c(x - 0.5).mean(dim=(2, 3))

    src = tmp_path / "n.onnx"
    _export_torch(Norm(), src)
    m = onnx.load(str(src))
    assert fold_input_scale(m, 1 / 255) is False
    ex = export_model(src, tmp_path, classes=list(range(1, 9)))
    assert not ex.scale_folded and ex.input_range == (0.0, 1.0)
    assert any("CPU" in n for n in ex.notes)


@pytest.mark.parametrize("task", ["classify", "detect"])
def test_ultralytics_checkpoint_exports_logits(tmp_path: Path, task):
    from pokedex_host.compile.export import ultralytics_env

    ultralytics_env()
    import ultralytics
    from ultralytics.nn.tasks import ClassificationModel, DetectionModel

    cfg = Path(ultralytics.__file__).parent / "cfg" / "models" / "v8"
    if task == "classify":
        model = ClassificationModel(str(cfg / "yolov8-cls.yaml"), nc=7, verbose=False)
    else:
        model = DetectionModel(str(cfg / "yolov8.yaml"), nc=7, verbose=False)
    model.names = {i: str(i + 1) for i in range(7)}
    pt = tmp_path / "best.pt"
    torch.save({"model": model.half(), "train_args": {"imgsz": 64, "task": task}}, pt)
    logs = []
    ex = export_model(pt, tmp_path, log=logs.append)
    assert ex.source_kind == "ultralytics" and ex.input_size == 64 and ex.classes == list(range(1, 8))
    assert any("pickle" in m for m in logs)  # the user is told the file runs code
    x = np.random.default_rng(0).integers(0, 256, (1, 3, 64, 64), dtype=np.uint8)
    got = onnx_float_logits(ex.onnx_path, x, ex.input_range)
    with torch.no_grad():
        want = ex.torch_model(torch.tensor(x, dtype=torch.float32) / 255).numpy()
    assert got.shape == (1, 7)
    np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-3)
