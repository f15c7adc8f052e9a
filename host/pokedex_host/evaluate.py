"""``pokedex-host eval``: top-1/top-5, per-class accuracy, confusion, host speed — for a float
checkpoint, an ONNX file or a kmodel (nncase simulator), several side by side on the same images."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .compile.calibration import class_folders, round_robin
from .errors import PokedexError
from .fsutil import atomic_write_text
from .plotting import save_png
from .preprocess import load_image
from .species import by_dex, generation


@dataclass
class ModelRun:
    name: str
    kind: str
    classes: list[int]
    logits: np.ndarray
    seconds: float


def _images(data: Path, size: int, count: int | None) -> tuple[np.ndarray, list[int], list[str]]:
    groups = class_folders(Path(data))
    picks = [(k, f) for k, f in round_robin(groups, 0) if k.isdigit()]
    if count:
        picks = picks[:count]
    if not picks:
        raise PokedexError(
            f"{data} has no <dex>/ image folders", "pass a split folder such as DATA/processed/classify/test"
        )
    x = np.stack([load_image(f, size) for _, f in picks])
    return x, [int(k) for k, _ in picks], [str(f) for _, f in picks]


def kmodel_on_host(path: Path, x: np.ndarray, workers: int = 0) -> tuple[np.ndarray, str]:
    """Outputs of a kmodel on the host, and how they were computed: a v3 in the v3 interpreter, a
    v5 in nncase's simulator (both the exact bytes a board would run)."""
    from .kmodel import detect_file_version

    workers = workers or os.cpu_count() or 1
    if detect_file_version(path) == 3:
        from .kmodel.interp import run_batch

        return run_batch(Path(path).read_bytes(), x, workers=workers), "v3 (v3 interpreter)"
    from .toolchain import simulate_parallel

    return simulate_parallel(path, x, workers=workers), "v5 (nncase simulator)"


def _model_size(path: Path) -> int:
    s = path.suffix.lower()
    if s in (".pt", ".pth"):
        from .models.checkpoint import load_checkpoint

        return load_checkpoint(path).input_size
    if s == ".kmodel":
        from .kmodel import detect_file_version

        if detect_file_version(path) == 3:  # the file says it itself
            from .kmodel import v3

            shape = v3.read(path).input_shape
            if shape:
                return shape[1]
    from .artifact import BuildArtifact

    art = BuildArtifact.find(path)
    if art is not None:
        return art.input_size
    if s == ".onnx":
        import onnx

        return int(onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[2].dim_value)
    raise PokedexError(f"{path}: cannot tell its input size", "keep the manifest.json of its build folder beside it")


def run_model(path: Path, x: np.ndarray, workers: int = 0) -> ModelRun:
    path = Path(path)
    s = path.suffix.lower()
    t = time.time()
    if s in (".pt", ".pth"):
        import torch

        from .models.checkpoint import load_checkpoint

        ck = load_checkpoint(path)
        model = ck.build()
        with torch.no_grad():
            out = torch.cat(
                [model(torch.from_numpy(x[i : i + 64]).float() / 255) for i in range(0, len(x), 64)]
            ).numpy()
        return ModelRun(f"{path.parent.name}/{path.name}", "float (torch)", ck.classes, out, time.time() - t)
    from .artifact import BuildArtifact

    art = BuildArtifact.find(path)
    classes = art.classes if art is not None else None
    if s == ".onnx":
        from .compile.export import onnx_float_logits

        out = onnx_float_logits(path, x, art.input_range if art is not None else (0.0, 1.0))
        kind = "float (onnxruntime)"
    elif s == ".kmodel":
        out, how = kmodel_on_host(path, x, workers)
        kind = f"uint8 kmodel {how}"
    else:
        raise PokedexError(f"{path}: unknown model type", "pass a .pt checkpoint, an .onnx file or a .kmodel")
    return ModelRun(
        f"{path.parent.name}/{path.name}", kind, classes or list(range(1, out.shape[1] + 1)), out, time.time() - t
    )


def evaluate(
    models: list[Path], data: Path, out: Path, count: int | None = None, mirror: bool = False, log=print
) -> dict:
    """Each model on the same images, each loaded from its file at that model's own input size
    (a 160-px teacher beside a 128-px student); with ``mirror`` each also a second time with its
    logits averaged with those of the mirrored images (what the camera app does with ``mirror``)."""
    sizes = [_model_size(Path(m)) for m in models]
    xs: dict[int, np.ndarray] = {}
    for size in dict.fromkeys(sizes):
        xs[size], labels, files = _images(data, size, count)  # the same images in the same order
    log(f"eval: {len(labels)} images of {len(set(labels))} species at {', '.join(f'{s}px' for s in xs)}")
    y = np.array(labels)
    from .dataset.preview import styles_for

    styles = styles_for(files)
    results = {"images": len(labels), "species": len(set(labels)), "models": []}
    runs = []  # (row name, model path, tag of its confusion PNG, ModelRun)
    for mp, size in zip(models, sizes):
        x = xs[size]
        if not mirror:
            runs.append((str(mp), Path(mp), "", run_model(Path(mp), x)))
            continue
        # the images and their mirror images in one pass (one model load); each look costs half
        both = run_model(Path(mp), np.concatenate([x, x[..., ::-1]]))
        a, b = both.logits[: len(x)], both.logits[len(x) :]
        runs.append((str(mp), Path(mp), "", ModelRun(both.name, both.kind, both.classes, a, both.seconds / 2)))
        runs.append(
            (
                f"{mp} + mirror",
                Path(mp),
                "_mirror",
                ModelRun(
                    f"{both.name} + mirror",
                    f"{both.kind}, averaged with the mirror image",
                    both.classes,
                    (a.astype(np.float64) + b) / 2,
                    both.seconds,
                ),
            )
        )
    for n, (name, path, tag, r) in enumerate(runs):
        cls = np.array(r.classes)
        ranks = cls[np.argsort(-r.logits, axis=1)[:, :5]]
        top1 = float(np.mean(ranks[:, 0] == y) * 100)
        top5 = float(np.mean((ranks == y[:, None]).any(1)) * 100)
        per_class: dict[int, list[bool]] = {}
        confused: Counter = Counter()
        for lab, pred in zip(labels, ranks[:, 0]):
            per_class.setdefault(lab, []).append(bool(pred == lab))
            if pred != lab:
                confused[(lab, int(pred))] += 1
        hit = ranks[:, 0] == y
        by_gen: dict[int, list[bool]] = {}
        for lab, h in zip(labels, hit):
            by_gen.setdefault(generation(lab), []).append(bool(h))
        entry = {
            "model": name,
            "kind": r.kind,
            "top1": top1,
            "top5": top5,
            "by_generation": {
                str(g): {"images": len(v), "top1": 100.0 * sum(v) / len(v)} for g, v in sorted(by_gen.items())
            },
            "images_per_s": len(labels) / max(r.seconds, 1e-9),
            "per_class_top1": {str(k): 100.0 * sum(v) / len(v) for k, v in sorted(per_class.items())},
            "most_confused": [{"label": a, "predicted": b, "count": n} for (a, b), n in confused.most_common(15)],
            "predictions": [int(p) for p in ranks[:, 0]],
        }
        if styles:
            by_style: dict[str, list[bool]] = {}
            for f, h in zip(files, hit):
                by_style.setdefault(styles[f], []).append(bool(h))
            entry["by_style"] = {
                k: {"images": len(v), "top1": 100.0 * sum(v) / len(v)} for k, v in sorted(by_style.items())
            }
        results["models"].append(entry)
        log(f"  {r.name}: {r.kind}: top-1 {top1:.2f} %, top-5 {top5:.2f} % ({entry['images_per_s']:.1f} img/s)")
        _confusion_png(
            out / f"confusion_{n}_{path.stem}{tag}_{path.suffix[1:]}.png", labels, [int(p) for p in ranks[:, 0]]
        )
    if len(models) > 1:
        base = results["models"][0]["predictions"]
        for e in results["models"][1:]:
            e["top1_agreement_with_first"] = 100.0 * float(np.mean(np.array(e["predictions"]) == np.array(base)))
    atomic_write_text(out / "eval.json", json.dumps(results, indent=2))
    atomic_write_text(out / "eval.md", _markdown(results))
    return results


def _confusion_png(path: Path, labels: list[int], preds: list[int]) -> None:
    from .plotting import pyplot

    plt = pyplot()

    species = sorted(set(labels) | set(preds))
    idx = {d: i for i, d in enumerate(species)}
    m = np.zeros((len(species), len(species)), np.int32)
    for a, b in zip(labels, preds):
        m[idx[a], idx[b]] += 1
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(np.log1p(m), cmap="magma", interpolation="nearest")
    ax.set_xlabel("predicted (species present, dex order)")
    ax.set_ylabel("true")
    ax.set_title("confusion (log scale)", fontsize=10)
    save_png(fig, path)


def _short(model: str) -> str:
    return f"{Path(model).parent.name}/{Path(model).name}"


def _markdown(r: dict) -> str:
    lines = [
        "# Evaluation",
        "",
        f"{r['images']} images of {r['species']} species.",
        "",
        "| model | kind | top-1 | top-5 | host img/s | top-1 agreement with the first |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for e in r["models"]:
        agree = f"{e['top1_agreement_with_first']:.1f} %" if "top1_agreement_with_first" in e else "—"
        lines.append(
            f"| `{Path(e['model']).parent.name}/{Path(e['model']).name}` | {e['kind']} | "
            f"{e['top1']:.2f} % | {e['top5']:.2f} % | "
            f"{e['images_per_s']:.1f} | {agree} |"
        )
    first = r["models"][0]
    gens = list(first["by_generation"])
    lines += [
        "",
        "Top-1 by generation (images):",
        "",
        "| model | " + " | ".join(f"gen {g} ({first['by_generation'][g]['images']})" for g in gens) + " |",
        "|---|" + "---:|" * len(gens),
    ]
    for e in r["models"]:
        lines.append(
            f"| `{_short(e['model'])}` | " + " | ".join(f"{e['by_generation'][g]['top1']:.1f} %" for g in gens) + " |"
        )
    if "by_style" in first:
        st = list(first["by_style"])
        lines += [
            "",
            "Top-1 by source style:",
            "",
            "| style | images | " + " | ".join(f"`{_short(e['model'])}`" for e in r["models"]) + " |",
            "|---|---:|" + "---:|" * len(r["models"]),
        ]
        for k in st:
            lines.append(
                f"| {k} | {first['by_style'][k]['images']} | "
                + " | ".join(f"{e['by_style'][k]['top1']:.1f} %" for e in r["models"])
                + " |"
            )
    for e in r["models"]:
        lines += [
            "",
            f"Most confused by `{Path(e['model']).parent.name}/{Path(e['model']).name}` (true → predicted):",
            "",
        ]
        for c in e["most_confused"][:10]:
            lines.append(
                f"- #{c['label']:04d} {by_dex(c['label']).name} → #{c['predicted']:04d} "
                f"{by_dex(c['predicted']).name}: {c['count']}"
            )
    return "\n".join(lines) + "\n"
