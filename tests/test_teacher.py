"""ultralytics teachers, offline, on tiny data: they train, save, and give logits to distil from."""

from pathlib import Path


from conftest import make_dataset


def test_classify_teacher_smoke(tmp_path, monkeypatch):
    from pokedex_host.compile.export import export_model
    from pokedex_host.train.teacher import train_teacher

    root = Path(__file__).resolve().parent.parent
    data = tmp_path / "classify"
    make_dataset(data / "train", species=3, per_species=4, size=40, seed=1)
    make_dataset(data / "validation", species=3, per_species=1, size=40, seed=2)
    best = train_teacher(root / "models" / "teachers" / "yolov8n-cls-relu6.toml", data, tmp_path / "t", epochs=1,
                         imgsz=32, batch=4, extra={"workers": 0}, log=lambda m: None)
    assert best.exists()
    ex = export_model(best, tmp_path, log=lambda m: None)
    assert ex.source_kind == "ultralytics" and len(ex.classes) == 3
    import onnx

    ops = {n.op_type for n in onnx.load(str(ex.onnx_path)).graph.node}
    assert "Sigmoid" not in ops and "Mul" not in ops  # ReLU6 everywhere: no SiLU left


def test_yolov3_tiny_teacher_smoke(tmp_path):
    from pokedex_host.dataset.ingest import ingest_folder
    from pokedex_host.dataset.process import process
    from pokedex_host.train.teacher import train_teacher

    root = Path(__file__).resolve().parent.parent
    src = make_dataset(tmp_path / "src", species=3, per_species=4)
    data = tmp_path / "data"
    ingest_folder(src, data, log=lambda m: None, workers=1)
    process(data, log=lambda m: None, workers=1)
    best = train_teacher(root / "models" / "teachers" / "yolov3-tinyu.toml", data, tmp_path / "t", epochs=1,
                         imgsz=64, batch=4, extra={"workers": 0}, log=lambda m: None)
    assert best.exists()
    from pokedex_host.compile.export import export_model

    ex = export_model(best, tmp_path, log=lambda m: None)
    assert ex.source_kind == "ultralytics" and len(ex.classes) == 1025  # the detector's class scores as logits
