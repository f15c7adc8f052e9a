"""Stage 1 of build-kmodel: turn the user's model into a static, simplified ONNX graph.

Inputs: a model recipe (``models/*.toml``, seeded random weights), a pokedex-k210 checkpoint
(``.pt``, loaded with ``weights_only=True``), an ultralytics ``.pt`` (a pickle: loaded only
because the user named it) or an ONNX file. Output: :class:`ExportedModel`, an ONNX file with a
static 1 x 3 x S x S input that takes uint8-range RGB when the 1/255 input scale could be folded
into the first convolution (so no float pre-processing runs on the K210's CPU).
"""

from __future__ import annotations

import io
import tomllib
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import PokedexError
from ..fsutil import atomic_write_bytes
from ..species import SPECIES_COUNT

OPSET = 11  # what nncase 1.9's ONNX importer is tested with here


@dataclass
class ExportedModel:
    onnx_path: Path
    source: Path
    source_kind: str  # "recipe" | "checkpoint" | "ultralytics" | "onnx"
    input_size: int
    input_range: tuple[float, float]  # the float range the compiled model's uint8 input maps to
    scale_folded: bool
    classes: list[int]
    simplifier: str  # what onnxsim did, in words
    notes: list[str] = field(default_factory=list)
    torch_model: object | None = None  # the float reference when we built it here


def _load_recipe(path: Path):
    import torch

    from ..models import create_model

    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise PokedexError(f"model recipe {path} is not valid TOML: {e}") from e
    if "family" not in raw or "config" not in raw:
        raise PokedexError(
            f"model recipe {path} needs `family` and a [config] table", "see models/kpu_mobilenet_v1-075-224.toml"
        )
    torch.manual_seed(int(raw.get("seed", 0)))
    try:
        model = create_model(raw["family"], **raw["config"]).eval()
    except (TypeError, ValueError) as e:
        raise PokedexError(f"model recipe {path}: {e}") from e
    classes = list(range(1, int(raw["config"].get("classes", SPECIES_COUNT)) + 1))
    return model, int(raw["config"]["input"]), classes


def is_ultralytics(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                if name.endswith("data.pkl"):
                    return b"ultralytics" in z.read(name)
    except (zipfile.BadZipFile, OSError):
        return False
    return False


def ultralytics_env() -> None:
    """ultralytics fully offline, its settings and fonts under the project's cache."""
    import os

    from .. import paths

    cfg = paths.cache_dir() / "ultralytics"
    cfg.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(cfg))
    os.environ.setdefault("MPLCONFIGDIR", str(paths.cache_dir() / "matplotlib"))


def _ultralytics_logits_module(model, task: str):
    import torch

    class UltralyticsLogits(torch.nn.Module):
        """Class logits from an ultralytics model in eval mode.

        classify: the head's pre-softmax output. detect: per class, the best score over all boxes
        (the image's class score is that of its top box), turned from a probability into a logit
        so both kinds can teach a student, shape [1, nc].
        """

        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            out = self.model(x)
            if task == "classify":
                return out[1] if isinstance(out, (tuple, list)) else out
            y = out[0] if isinstance(out, (tuple, list)) else out
            p = y[:, 4:, :].amax(dim=2).clamp(1e-6, 1 - 1e-6)
            return torch.log(p) - torch.log1p(-p)

    return UltralyticsLogits().eval()


def load_ultralytics(path: Path, log):
    ultralytics_env()
    try:
        from ultralytics.nn.tasks import load_checkpoint  # type: ignore
    except ImportError as e:
        raise PokedexError(
            f"{path} is an ultralytics checkpoint but ultralytics is not installed",
            "run `make setup` (it pins ultralytics), or export the model to ONNX yourself",
        ) from e
    log(f"loading {path} as an ultralytics pickle: this runs code from the file; only do this for files you trust")
    try:
        model, ckpt = load_checkpoint(str(path), device="cpu")
    except Exception as e:
        raise PokedexError(
            f"{path} could not be loaded by ultralytics ({type(e).__name__}: {str(e)[:200]})",
            "check the file is a complete ultralytics .pt (best.pt / last.pt)",
        ) from e
    model = model.float().eval()
    task = getattr(model, "task", None) or (ckpt.get("train_args") or {}).get("task") or "classify"
    if task not in ("classify", "detect"):
        raise PokedexError(
            f"{path}: ultralytics task {task!r} is not a classifier or detector",
            "pass a -cls model or the YOLO detection teacher",
        )
    names = getattr(model, "names", {}) or {}
    imgsz = (ckpt.get("train_args") or {}).get("imgsz", 224) if isinstance(ckpt, dict) else 224
    size = int(imgsz if isinstance(imgsz, int) else imgsz[0])
    return _ultralytics_logits_module(model, task), size, len(names)


def load_torch_model(path: Path, log=print):
    """(module giving class logits, input size, class dex list, "checkpoint" | "ultralytics") for a
    pokedex-k210 checkpoint or an ultralytics ``.pt`` — shared by export and distillation."""
    if is_ultralytics(path):
        model, size, n = load_ultralytics(path, log)
        return model, size, list(range(1, n + 1)), "ultralytics"
    from ..models.checkpoint import load_checkpoint

    ck = load_checkpoint(path)
    return ck.build(), ck.input_size, ck.classes, "checkpoint"


def torch_to_onnx(model, size: int, out: Path) -> None:
    import torch

    x = torch.zeros(1, 3, size, size)
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # the TorchScript exporter is "legacy" in torch 2.9+, but it is the one that writes the
        # opset-11 Conv/Clip/Concat graphs nncase 1.9 imports
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            x,
            buf,
            opset_version=OPSET,
            dynamo=False,
            input_names=["input"],
            output_names=["logits"],
            do_constant_folding=True,
        )
    atomic_write_bytes(out, buf.getvalue())


def _fix_static_input(model: onnx.ModelProto, path: Path, input_size: int | None, notes: list[str]) -> int:
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise PokedexError(
            f"{path} has {len(inputs)} inputs; a classifier for the K210 takes one image",
            "export the model with a single 1x3xSxS image input",
        )
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise PokedexError(f"{path}: input {inputs[0].name!r} has rank {len(dims)}, expected N x 3 x H x W")
    shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims]
    if shape[0] is None:
        dims[0].Clear()
        dims[0].dim_value = 1
        notes.append("batch dimension was dynamic; fixed to 1")
    elif shape[0] != 1:
        raise PokedexError(
            f"{path}: input batch is {shape[0]}; the K210 runs one image at a time", "re-export with batch 1"
        )
    if shape[1] != 3:
        raise PokedexError(
            f"{path}: input has {shape[1]} channels, expected 3 (RGB, NCHW)", "export with an NCHW RGB input"
        )
    if shape[2] is None or shape[3] is None:
        if input_size is None:
            raise PokedexError(
                f"{path}: input {inputs[0].name!r} has dynamic height/width "
                f"{[d.dim_param or d.dim_value for d in dims]}",
                "the K210 needs a static shape: re-export with a fixed size, or pass --input-size N",
            )
        for d in dims[2:]:
            d.Clear()
            d.dim_value = input_size
        notes.append(f"dynamic height/width fixed to {input_size}")
        shape[2] = shape[3] = input_size
    if shape[2] != shape[3]:
        raise PokedexError(
            f"{path}: input is {shape[2]}x{shape[3]}; this toolkit builds square inputs",
            "export at a square size such as 224x224",
        )
    if input_size is not None and shape[2] != input_size:
        raise PokedexError(
            f"{path}: input is {shape[2]}x{shape[3]} but --input-size is {input_size}",
            "drop --input-size or re-export at that size",
        )
    return int(shape[2])


def simplify(model: onnx.ModelProto, path: Path) -> tuple[onnx.ModelProto, str]:
    import onnxsim

    before = len(model.graph.node)
    ops_before = sorted({n.op_type for n in model.graph.node})
    try:
        simplified, ok = onnxsim.simplify(model)
    except Exception as e:
        return model, f"onnxsim failed ({type(e).__name__}: {str(e)[:120]}); compiled the graph as exported"
    if not ok:
        return model, "onnxsim could not validate its result; compiled the graph as exported"
    after = len(simplified.graph.node)
    removed = sorted(set(ops_before) - {n.op_type for n in simplified.graph.node})
    if after == before:
        return simplified, f"onnxsim changed nothing ({before} nodes)"
    what = f"onnxsim: {before} -> {after} nodes"
    if removed:
        what += " (removed op types: " + ", ".join(removed) + ")"
    return simplified, what


def fold_input_scale(model: onnx.ModelProto, scale: float) -> bool:
    """Multiply the first convolutions' weights by ``scale`` so the graph takes raw pixel values.

    Exact: zero padding is zero in both ranges. Returns False (and changes nothing) when the
    input feeds anything but Conv nodes with constant weights.
    """
    inits = {i.name: i for i in model.graph.initializer}
    in_name = [i.name for i in model.graph.input if i.name not in inits][0]
    consumers = [n for n in model.graph.node if in_name in n.input]
    if not consumers or any(n.op_type != "Conv" or n.input[0] != in_name or n.input[1] not in inits for n in consumers):
        return False
    for n in consumers:
        w = inits[n.input[1]]
        arr = numpy_helper.to_array(w).astype(np.float32) * np.float32(scale)
        w.CopyFrom(numpy_helper.from_array(arr, w.name))
    return True


def export_model(
    source: Path,
    workdir: Path,
    *,
    input_size: int | None = None,
    input_range01: bool = True,
    classes: list[int] | None = None,
    log=print,
) -> ExportedModel:
    """Export ``source`` into ``workdir/model.onnx`` (static, simplified, input scale folded)."""
    source = Path(source)
    if not source.exists():
        raise PokedexError(
            f"model file {source} does not exist", "pass a .pt checkpoint, an .onnx file or a models/*.toml recipe"
        )
    if source.is_dir():
        raise PokedexError(f"{source} is a folder, not a model file")
    if source.stat().st_size == 0:
        raise PokedexError(f"model file {source} is empty (0 bytes)", "re-export or re-download it")
    notes: list[str] = []
    torch_model = None
    raw_onnx = workdir / "exported.onnx"
    suffix = source.suffix.lower()
    if suffix == ".toml":
        kind = "recipe"
        torch_model, size, model_classes = _load_recipe(source)
        torch_to_onnx(torch_model, size, raw_onnx)
        notes.append("weights are seeded random (recipe): figures prove fit and fidelity, not accuracy")
    elif suffix in (".pt", ".pth"):
        torch_model, size, model_classes, kind = load_torch_model(source, log)
        if input_size is not None and input_size != size:
            size = input_size
            notes.append(f"exported at --input-size {size} instead of the trained size")
        torch_to_onnx(torch_model, size, raw_onnx)
    elif suffix == ".onnx":
        kind = "onnx"
        raw_onnx = source
        model_classes = None
    else:
        raise PokedexError(
            f"{source}: unknown model type {suffix!r}",
            "pass a .pt/.pth checkpoint, an .onnx file or a models/*.toml recipe",
        )

    try:
        model = onnx.load(str(raw_onnx))
    except Exception as e:
        raise PokedexError(
            f"{source} is not a readable ONNX model ({type(e).__name__}: {str(e)[:160]})",
            "re-export the model; check the file was fully downloaded",
        ) from e
    size = _fix_static_input(model, source, input_size, notes)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        onnx.checker.check_model(model)
    except Exception as e:
        raise PokedexError(
            f"{source}: ONNX shape inference failed: {str(e).splitlines()[0][:300]}",
            "the graph is inconsistent; re-export it with a current exporter",
        ) from e
    model, simplifier = simplify(model, source)
    out_shape = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    n_out = int(np.prod([d for d in out_shape if d])) if out_shape else 0
    if model_classes is None:
        model_classes = classes if classes is not None else list(range(1, n_out + 1))
    if len(model.graph.output) != 1 or n_out != len(model_classes):
        raise PokedexError(
            f"{source}: the model's output {out_shape} does not match {len(model_classes)} classes",
            "a classifier for this toolkit has one output of shape [1, classes]; pass --classes FILE for ONNX models",
        )
    folded = False
    in_range = (0.0, 1.0) if input_range01 else (0.0, 255.0)
    if input_range01:
        folded = fold_input_scale(model, 1.0 / 255.0)
        if folded:
            in_range = (0.0, 255.0)
        else:
            notes.append(
                "could not fold the 1/255 input scale into the first conv: nncase dequantises the "
                "input on the CPU in float (about 4 bytes per input value of working memory)"
            )
    model = onnx.shape_inference.infer_shapes(model)
    out = workdir / "model.onnx"
    atomic_write_bytes(out, model.SerializeToString())
    return ExportedModel(out, source, kind, size, in_range, folded, list(model_classes), simplifier, notes, torch_model)


def onnx_float_logits(onnx_path: Path, x_uint8: np.ndarray, input_range: tuple[float, float]) -> np.ndarray:
    """Float reference: run the exported graph in onnxruntime on the same uint8 images."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    lo, hi = input_range
    outs = []
    for i in range(x_uint8.shape[0]):
        x = x_uint8[i : i + 1].astype(np.float32) * np.float32((hi - lo) / 255.0) + np.float32(lo)
        outs.append(sess.run(None, {name: x})[0].reshape(-1))
    return np.stack(outs)
