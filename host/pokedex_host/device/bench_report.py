"""The bench report: the device's top-1/top-5 beside the host's float and simulator figures on
the same images, latency percentiles and fps, per-class accuracy, most-confused pairs, PNG plots."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from ..artifact import BuildArtifact
from ..compile.export import onnx_float_logits
from ..fsutil import atomic_write_text, sha256_file
from ..plotting import save_png
from ..preprocess import load_image
from ..species import by_dex


def _topk_hits(rank_lists: list[list[int]], labels: list[int], k: int) -> float:
    hits = [lab in ranks[:k] for ranks, lab in zip(rank_lists, labels)]
    return 100.0 * sum(hits) / max(1, len(hits))


def host_reference(
    rows: list[dict], data: Path, kmodel: Path, classes: list[int], size: int, out: Path, workers: int = 0
) -> dict:
    """Float (onnxruntime) and host-kmodel ranks for the benched images, cached in OUT. The host
    kmodel is the same file as the board's: a v3 in the v3 interpreter, a v5 in nncase's simulator
    (both under the key "simulator"); no float ranks when the build folder has no model.onnx."""
    from ..evaluate import kmodel_on_host

    cache = out / "host_reference.json"
    key = {"kmodel": sha256_file(kmodel), "files": [r["file"] for r in rows], "input": "rgb565"}
    if cache.exists():
        c = json.loads(cache.read_text())
        if c.get("key") == key:
            return c
    x = np.stack([load_image(Path(data) / r["file"], size) for r in rows])
    # the bench server builds its image with set_pixel on an RGB565 image.Image: the KPU gets
    # 5/6/5-bit colour, so the host reference does too (device = host means the same input)
    from ..pixels import to_rgb565

    x = np.ascontiguousarray(to_rgb565(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2))
    art = BuildArtifact.load(kmodel)
    f_logits = onnx_float_logits(art.onnx, x, art.input_range) if art.onnx is not None else None
    s_logits, how = kmodel_on_host(kmodel, x, workers)
    ref = {
        "key": key,
        "host_kmodel": how,
        "float": [[classes[i] for i in np.argsort(-v)[:5]] for v in f_logits] if f_logits is not None else None,
        "simulator": [[classes[i] for i in np.argsort(-v)[:5]] for v in s_logits],
    }
    atomic_write_text(cache, json.dumps(ref))
    return ref


def _pct(a: list[float], q: float) -> float:
    return float(np.percentile(a, q)) if a else 0.0


def build_report(out: Path, rows: list[dict], ref: dict | None, baud: int, link_s: float) -> dict:
    labelled = [(i, r) for i, r in enumerate(rows) if r.get("label") is not None]
    dev_ranks = [[d for d, _ in r["top"]] for r in rows]
    labels = [r["label"] for _, r in labelled]
    idx = [i for i, _ in labelled]
    figures: dict = {"images": len(rows), "labelled": len(labelled)}
    for name, ranks in (
        ("device", dev_ranks),
        ("simulator", ref and ref["simulator"]),
        ("float", ref and ref["float"]),
    ):
        if ranks:
            figures[name] = {
                "top1": _topk_hits([ranks[i] for i in idx], labels, 1),
                "top5": _topk_hits([ranks[i] for i in idx], labels, 5),
            }
    if ref:
        figures["device_vs_simulator_top1_agreement"] = (
            100.0 * float(np.mean([d[0] == s[0] for d, s in zip(dev_ranks, ref["simulator"])])) if rows else 0.0
        )
    kpu = [r["kpu_us"] / 1000 for r in rows]
    total = [r["total_us"] / 1000 for r in rows]
    host = [r["host_s"] * 1000 for r in rows]
    figures["latency_ms"] = {
        k: {"p50": _pct(v, 50), "p90": _pct(v, 90), "p99": _pct(v, 99)}
        for k, v in (("kpu", kpu), ("board_total", total), ("round_trip", host))
    }
    figures["fps_kpu"] = 1000.0 / np.mean(kpu) if kpu and np.mean(kpu) > 0 else 0.0
    figures["fps_board"] = 1000.0 / np.mean(total) if total and np.mean(total) > 0 else 0.0
    figures["link"] = {"baud": baud, "seconds_per_image": link_s}
    figures["retries"] = sum(r.get("attempts", 1) - 1 for r in rows)
    per_class: dict[int, list[int]] = {}
    confused: Counter = Counter()
    for i, r in labelled:
        pred = dev_ranks[i][0]
        per_class.setdefault(r["label"], []).append(int(pred == r["label"]))
        if pred != r["label"]:
            confused[(r["label"], pred)] += 1
    figures["per_class_top1"] = {str(k): 100.0 * sum(v) / len(v) for k, v in sorted(per_class.items())}
    figures["most_confused"] = [{"label": a, "predicted": b, "count": n} for (a, b), n in confused.most_common(10)]
    atomic_write_text(out / "report.json", json.dumps(figures, indent=2))
    _plots(out, kpu, total, figures["per_class_top1"])
    atomic_write_text(out / "report.md", _markdown(figures))
    return figures


def _plots(out: Path, kpu: list[float], total: list[float], per_class: dict) -> None:
    from ..plotting import pyplot

    plt = pyplot()

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    if kpu:
        a.hist([kpu, total], bins=30, label=["KPU", "board total"])
        a.legend(fontsize=8)
    a.set_xlabel("ms per image")
    a.set_title("latency", fontsize=10)
    vals = sorted(per_class.values())
    b.bar(range(len(vals)), vals, width=1.0)
    b.set_xlabel("species (sorted)")
    b.set_ylabel("device top-1 %")
    b.set_title("per-class accuracy", fontsize=10)
    fig.tight_layout()
    save_png(fig, out / "bench.png")


def _name(dex) -> str:
    try:
        return f"#{dex:04d} {by_dex(int(dex)).name}"
    except (KeyError, TypeError, ValueError):
        return str(dex)


def _markdown(f: dict) -> str:
    def pct(section, key):
        return f"{f[section][key]:.1f} %" if section in f else "—"

    lat = f["latency_ms"]
    lines = [
        "# Bench report",
        "",
        f"{f['images']} images ({f['labelled']} labelled); {f['retries']} retries.",
        "",
        "| | device | simulator (host) | float (host) |",
        "|---|---:|---:|---:|",
        f"| top-1 | {pct('device', 'top1')} | {pct('simulator', 'top1')} | {pct('float', 'top1')} |",
        f"| top-5 | {pct('device', 'top5')} | {pct('simulator', 'top5')} | {pct('float', 'top5')} |",
        "",
    ]
    if "device_vs_simulator_top1_agreement" in f:
        lines += [
            f"Device and simulator pick the same class on {f['device_vs_simulator_top1_agreement']:.1f} % of images.",
            "",
        ]
    lines += ["| latency (ms) | p50 | p90 | p99 |", "|---|---:|---:|---:|"]
    for k, v in lat.items():
        lines.append(f"| {k} | {v['p50']:.1f} | {v['p90']:.1f} | {v['p99']:.1f} |")
    lines += [
        "",
        f"fps: {f['fps_kpu']:.1f} (KPU alone), {f['fps_board']:.1f} (board, image in to answer out); "
        f"the link at {f['link']['baud']} baud needs {f['link']['seconds_per_image']:.2f} s per raw image.",
        "",
        "![latency and per-class accuracy](bench.png)",
        "",
        "Most confused (true → predicted):",
        "",
    ]
    lines += [f"- {_name(c['label'])} → {_name(c['predicted'])}: {c['count']}" for c in f["most_confused"]] or [
        "- none"
    ]
    return "\n".join(lines) + "\n"
