"""``pokedex-host bench-cards``: the camera app end to end on the project's card frames.

The firmware (``firmware/main.py`` + ``pk_card.py``) runs unmodified on the emulated board over
a card-frame set (``data camera-set --kind card``: QVGA frames of test-split species on cards, with
``truth.jsonl`` giving species and corners, plus frames with no card). From its UART lines:

- card found: the quad it reported overlaps the true card with IoU >= 0.5;
- top-1: the answer it gave (after its confidence threshold) is the true species;
- no card handled: on frames without a card it answered "no card" / "unknown";
- an estimate of the time per frame each stage would take on a K210 (:func:`board_time_estimate`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..boardconfig import APP_THRESHOLD, app_settings
from ..errors import PokedexError
from ..fsutil import atomic_write_text
from ..species import SPECIES_COUNT


def quad_iou(a, b) -> float:
    """Intersection over union of two convex quads (4 x 2 points)."""
    import cv2

    pa, pb = np.asarray(a, np.float32).reshape(-1, 2), np.asarray(b, np.float32).reshape(-1, 2)
    ha, hb = cv2.convexHull(pa), cv2.convexHull(pb)
    inter, _ = cv2.intersectConvexConvex(ha, hb)
    union = cv2.contourArea(ha) + cv2.contourArea(hb) - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass
class FrameResult:
    file: str
    dex: int  # truth, 0 = no card
    answer: int  # the app's answer, 0 = unknown / no card
    confidence: float
    card: str  # "card" | "none" | "off"
    box: tuple[int, int, int, int]
    corners: list[tuple[float, float]] | None


def parse_line(line: str) -> dict:
    """A result line of firmware/main.py (docs/firmware.md)."""
    f = line.rstrip("\n").split("\t")
    if len(f) < 10 or f[0] != "R":
        raise ValueError(f"not a card-app result line: {line[:80]!r}")
    corners = None if f[9] == "-" else [tuple(float(v) for v in p.split(",")) for p in f[9].split(";")]
    return {
        "frame": int(f[1]),
        "dex": int(f[2]),
        "name": f[3],
        "confidence": float(f[4]),
        "top": f[5],
        "fps": float(f[6]),
        "card": f[7],
        "box": tuple(int(v) for v in f[8].split(",")),
        "corners": corners,
    }


def read_truth(set_dir: Path) -> list[dict]:
    p = Path(set_dir) / "truth.jsonl"
    if not p.is_file():
        raise PokedexError(
            f"{p} does not exist", "make the set with `pokedex-host data camera-set --kind card --out DIR`"
        )
    rows = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    return sorted(rows, key=lambda r: Path(r["file"]).name)  # the emulated camera reads frames in name order


def score(truth: list[dict], lines: list[dict]) -> tuple[dict, list[FrameResult]]:
    if len(lines) != len(truth):
        raise PokedexError(
            f"the emulated app answered {len(lines)} of {len(truth)} frames", "see console.log in the output folder"
        )
    res = []
    for t, r in zip(truth, lines):
        res.append(FrameResult(t["file"], t["dex"], r["dex"], r["confidence"], r["card"], r["box"], r["corners"]))
    cards = [(t, r) for t, r in zip(truth, res) if t["dex"]]
    empty = [r for t, r in zip(truth, res) if not t["dex"]]
    found = [r.corners is not None and quad_iou(r.corners, t["corners"]) >= 0.5 for t, r in cards]
    right = [r.answer == t["dex"] for t, r in cards]
    m = {
        "card_frames": len(cards),
        "no_card_frames": len(empty),
        "card_found_pct": 100.0 * sum(found) / max(1, len(cards)),
        "top1_pct": 100.0 * sum(right) / max(1, len(cards)),
        "top1_when_found_pct": 100.0 * sum(a and b for a, b in zip(found, right)) / max(1, sum(found)),
        "answered_unknown_on_cards_pct": 100.0 * sum(r.answer == 0 for _, r in cards) / max(1, len(cards)),
        "no_card_handled_pct": 100.0 * sum(r.answer == 0 for r in empty) / max(1, len(empty)),
        "false_card_on_empty_pct": 100.0 * sum(r.card == "card" for r in empty) / max(1, len(empty)),
    }
    return m, res


SWEEP = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)


def threshold_sweep(per_frame: list[FrameResult], thresholds=SWEEP) -> list[dict]:
    """What a run at threshold 0 (every answer a best guess) would have said at each threshold:
    a card frame's answer is named when its confidence reaches the threshold (a frame with no
    card found already needed the app's no-card threshold to be named at all)."""
    cards = [r for r in per_frame if r.dex]
    empty = [r for r in per_frame if not r.dex]
    rows = []
    for t in thresholds:
        named = [r for r in cards if r.answer and r.confidence >= t]
        right = sum(r.answer == r.dex for r in named)
        rows.append(
            {
                "threshold": t,
                "named_right_pct": 100.0 * right / max(1, len(cards)),
                "named_wrong_pct": 100.0 * (len(named) - right) / max(1, len(cards)),
                "right_among_named_pct": 100.0 * right / len(named) if named else float("nan"),
                "no_card_handled_pct": 100.0
                * sum(not (r.answer and r.confidence >= t) for r in empty)
                / max(1, len(empty)),
            }
        )
    return rows


def by_group(truth: list[dict], per_frame: list[FrameResult], threshold: float) -> dict[str, dict]:
    """The card frames' figures per ``style`` of the truth (era/kind for real cards, the source
    style for synthetic ones): found, best guess right (meaningful for a run at threshold 0) and,
    at ``threshold``, named right and named wrong."""
    groups: dict[str, list[tuple[dict, FrameResult]]] = {}
    for t, r in zip(truth, per_frame):
        if t["dex"]:
            groups.setdefault(t.get("style") or "unknown", []).append((t, r))
    out = {}
    for g, rows in sorted(groups.items()):
        n = len(rows)
        named = [(t, r) for t, r in rows if r.answer and r.confidence >= threshold]
        right = sum(r.answer == t["dex"] for t, r in named)
        out[g] = {
            "frames": n,
            "found_pct": 100.0
            * sum(r.corners is not None and quad_iou(r.corners, t["corners"]) >= 0.5 for t, r in rows)
            / n,
            "best_guess_pct": 100.0 * sum(r.answer == t["dex"] for t, r in rows) / n,
            "named_right_pct": 100.0 * right / n,
            "named_wrong_pct": 100.0 * (len(named) - right) / n,
        }
    return out


def most_confused(per_frame: list[FrameResult], k: int = 10) -> list[dict]:
    """The (true, answered) species pairs the app got wrong most often (its best guesses)."""
    from collections import Counter

    c = Counter((r.dex, r.answer) for r in per_frame if r.dex and r.answer and r.answer != r.dex)
    return [{"label": a, "predicted": b, "count": n} for (a, b), n in c.most_common(k)]


def choose_threshold(rows: list[dict], precision: float = 80.0) -> float | None:
    """The rule the app's default is chosen by (on validation frames): the lowest threshold at
    which more than ``precision`` % of the named answers are right."""
    for r in rows:
        if r["right_among_named_pct"] == r["right_among_named_pct"] and r["right_among_named_pct"] > precision:
            return r["threshold"]
    return None


def lowest_within_wrong(rows: list[dict], max_wrong: float) -> float | None:
    """The fallback when no threshold reaches :func:`choose_threshold`'s precision (on validation
    frames): the lowest threshold at which at most ``max_wrong`` % of the frames are named wrong."""
    for r in sorted(rows, key=lambda r: r["threshold"]):
        if r["named_wrong_pct"] <= max_wrong:
            return r["threshold"]
    return None


def model_macs(kmodel: Path) -> int | None:
    """Multiply-accumulates of the classifier, from its kmodel's KPU convolutions (v3 or v5:
    :func:`kmodel.v3.conv_macs`, the float model's count); None for a v4 file."""
    from ..kmodel import detect_version, v3, v5

    data = Path(kmodel).read_bytes()
    version = detect_version(data)
    if version == 3:
        return v3.parse(data, str(kmodel)).macs
    if version == 5:
        return v3.conv_macs([regs for _, regs in v5.kpu_layers(data)])
    return None


# What the estimate rests on (docs/card-in-frame.md says where each figure comes from; only a
# board can confirm them)
KPU_GMAC_PER_S = 21.8  # MobileNetV1 1.0 at 320x240 (871 M MAC) at ~25 fps on MaixPy: effective rate
CPU_HZ = 400e6
CYCLES_PER_PIXEL = {  # RISC-V at 400 MHz, imlib's C loops (assumptions, see the docs)
    "resize": 12,  # nearest neighbour, RGB565
    "copy": 4,
    "gaussian": 40,  # 3x3 on RGB565
    "find_rects": 900,  # AprilTag quad detection without decoding
    "statistics": 20,  # LAB histogram of the border strips
    "binary": 15,  # LAB look-up and compare
    "find_blobs": 30,  # LAB look-up and compare, then the scanline flood fill's bitmap and moments
    "pix_to_ai": 6,
    "lcd": 10,
}
MICROPYTHON_S_PER_LOOP = 6e-6  # one simple `for` iteration with a float operation in MicroPython
QUAD_LOOPS = 60  # _card_like on one quad (order, shape, squareness, aspect), in such iterations
LATE_QUADS = 20  # the quads and blobs all looks hand the art and loose passes (validation frames: ~15)


def board_time_estimate(
    macs: int | None,
    outputs: int,
    frame=(320, 240),
    scale: int = 2,
    mask_scale: int = 2,
    strip: int = 4,
    crop: int = 128,
    smoothing: bool = True,
    colour_looks: int = 2,
    mirror: bool = False,
    blob_looks: int = 2,
    blob_main: bool = False,
    late_passes: int = 0,
) -> dict:
    """Milliseconds per frame for each stage of the card app (firmware/main.py + pk_card.py) on a
    K210 at 400 MHz: an estimate from pixel counts and published speeds, not a measurement.

    ``total`` is a frame whose card the edge or the desk-mask look finds (most frames); the
    colour-only looks run only when both find nothing, and ``worst_total`` adds all of them. The
    per-output work is counted in interpreted loops over the outputs: the exponentials, the
    top-k scan, and the smoothing when it is on (the app's default; the benchmark turns it off).
    With ``mirror`` the crop is mirrored in place, converted again and run through the KPU a
    second time, and averaging the two logit vectors is counted as one more loop. The last
    ``blob_looks`` colour-only looks also run find_blobs on their threshold (and the desk-mask
    look too with ``blob_main``). ``late_passes`` (the art look, the loose pass) each go over every
    look's quads again in MicroPython, when no look found a card."""
    fw, fh = frame
    small = (fw // scale) * (fh // scale)
    mask = small // (mask_scale * mask_scale)
    strips = 2 * strip * (fw // scale // mask_scale + fh // scale // mask_scale)
    c = CYCLES_PER_PIXEL

    def t(px, what):
        return 1e3 * px * c[what] / CPU_HZ

    kpu = 1e3 * macs / (KPU_GMAC_PER_S * 1e9) if macs else float("nan")
    ms = {
        "reduce the frame (resize)": t(fw * fh, "resize"),
        "edge pass: copy + gaussian": t(small, "copy") + t(small, "gaussian"),
        "edge pass: find_rects": t(small, "find_rects"),
        "mask pass: resize + statistics + binary": t(small, "resize") + t(strips, "statistics") + t(mask, "binary"),
        "mask pass: find_rects": t(mask, "find_rects"),
        "crop + resize + pix_to_ai": t(crop * crop, "resize") + t(crop * crop, "pix_to_ai"),
        "KPU": kpu,
        "mirror + pix_to_ai + KPU again": t(crop * crop, "copy") + t(crop * crop, "pix_to_ai") + kpu if mirror else 0.0,
        "softmax + smoothing + top-k (MicroPython)": 1e3
        * outputs
        * ((3 if smoothing else 2) + (1 if mirror else 0))
        * MICROPYTHON_S_PER_LOOP,
        "LCD": t(fw * fh, "lcd"),
    }
    look = t(mask, "copy") + t(strips, "statistics") + t(mask, "binary") + t(mask, "find_rects")
    blobs = t(mask, "find_blobs") + 1e3 * 40 * MICROPYTHON_S_PER_LOOP  # + blob_quad for a few blobs
    if blob_main:
        ms["mask pass: find_blobs"] = blobs
    ms["total"] = sum(v for v in ms.values() if v == v)
    ms["fps"] = 1000.0 / ms["total"]
    ms["colour-only look (each; only when the first two find nothing)"] = look
    ms["blob look (each colour-only look that has one)"] = blobs
    ms["art / loose pass (each; only when no look finds a card)"] = (
        1e3 * LATE_QUADS * QUAD_LOOPS * MICROPYTHON_S_PER_LOOP
    )
    ms["worst_total"] = (
        ms["total"]
        + colour_looks * look
        + min(blob_looks, colour_looks) * blobs
        + late_passes * ms["art / loose pass (each; only when no look finds a card)"]
    )
    ms["worst_fps"] = 1000.0 / ms["worst_total"]
    return ms


def _estimate_looks(card: dict | None) -> dict:
    """board_time_estimate's locator arguments for the ``card`` config the app ran."""
    if not card:
        return {"colour_looks": 0, "blob_looks": 0, "late_passes": 0}
    n = len(card.get("chroma_k", ()))
    first = int(card.get("blob_from", 0)) if card.get("blob_look") else n + 1
    return {
        "scale": card.get("scale", 2),
        "mask_scale": card.get("mask_scale", 2),
        "strip": card.get("strip", 4),
        "colour_looks": n,
        "blob_looks": sum(1 for i in range(1, n + 1) if i >= first),
        "blob_main": first == 0,
        "late_passes": int(bool(card.get("art_look"))) + int(bool(card.get("loose"))),
    }


def bench_cards(
    board,
    kmodel: Path,
    set_dir: Path,
    out: Path,
    *,
    threshold: float = APP_THRESHOLD,
    count: int | None = None,
    config_overrides: dict | None = None,
    log=print,
) -> dict:
    from ..emulator.host import emulate

    set_dir, out = Path(set_dir), Path(out)
    truth = read_truth(set_dir)
    if count and count < len(truth):  # spread over the set, card and no-card frames in proportion
        cards = [t for t in truth if t["dex"]]
        empty = [t for t in truth if not t["dex"]]
        n_empty = round(count * len(empty) / len(truth))
        pick = [g[:: max(1, len(g) // n)][:n] for g, n in ((cards, count - n_empty), (empty, n_empty)) if n]
        truth = sorted(sum(pick, []), key=lambda r: Path(r["file"]).name)
    frames = out / "frames"
    if frames.exists():
        for f in frames.iterdir():
            f.unlink()
    frames.mkdir(parents=True, exist_ok=True)
    for t in truth:
        os.symlink((set_dir / t["file"]).resolve(), frames / Path(t["file"]).name)
    log(
        f"bench-cards: {len(truth)} frames ({sum(1 for t in truth if not t['dex'])} without a card) through "
        f"firmware/main.py on the emulated {board.name}"
    )
    res = emulate(
        board,
        Path(kmodel),
        frames,
        out / "emulator",
        threshold=threshold,
        smoothing=0.0,
        config_overrides=config_overrides,
        log=log,
    )
    lines = [parse_line(line) for line in res.uart_lines]
    metrics, per_frame = score(truth, lines)
    from ..artifact import BuildArtifact

    art = BuildArtifact.find(Path(kmodel))
    outputs = len(art.classes) if art is not None and art.classes else SPECIES_COUNT
    # the mirror as the app ran it: two KPU runs per frame (the emulator logs each)
    events = (out / "emulator" / "events.jsonl").read_text().splitlines()
    mirror = sum('"kpu_run"' in e for e in events) >= 2 * len(truth)
    # the locator as the app ran it: the pokedex.json the emulator wrote onto its /sd
    ran = json.loads((out / "emulator" / "sd" / "pokedex.json").read_text()).get("card")
    est = board_time_estimate(model_macs(Path(kmodel)), outputs, mirror=mirror, **_estimate_looks(ran))
    report = {
        "set": str(set_dir),
        "kmodel": str(kmodel),
        "board": board.name,
        "threshold": threshold,
        "mirror": mirror,
        **metrics,
        "board_ms_estimate": est,
    }
    if threshold == 0:  # every answer is a best guess: what each threshold would have said
        report["threshold_sweep"] = threshold_sweep(per_frame)
        report["chosen_threshold"] = choose_threshold(report["threshold_sweep"])
        for r in report["threshold_sweep"]:
            log(
                f"  at {r['threshold']:.2f}: named right {r['named_right_pct']:.1f} %, "
                f"wrong {r['named_wrong_pct']:.1f} % ({r['right_among_named_pct']:.0f} % of named right), "
                f"empty frames handled {r['no_card_handled_pct']:.1f} %"
            )
        log(f"  lowest threshold with more than 4 in 5 named answers right: {report['chosen_threshold']}")
    at = threshold or app_settings(kmodel)["threshold"]  # a run at 0 is read at the release's threshold
    report["by_group"] = by_group(truth, per_frame, at)
    report["by_group_threshold"] = at
    report["most_confused"] = most_confused(per_frame)
    for g, m in report["by_group"].items():
        log(
            f"  {g}: {m['frames']} frames, found {m['found_pct']:.1f} %, best guess {m['best_guess_pct']:.1f} %, "
            f"at {at:.2f} named right {m['named_right_pct']:.1f} % / wrong {m['named_wrong_pct']:.1f} %"
        )
    atomic_write_text(out / "cards.json", json.dumps(report, indent=2))
    atomic_write_text(out / "frames.jsonl", "".join(json.dumps(r.__dict__) + "\n" for r in per_frame))
    log(
        f"card found (IoU >= 0.5) {metrics['card_found_pct']:.1f} %, top-1 {metrics['top1_pct']:.1f} % "
        f"({metrics['top1_when_found_pct']:.1f} % when found), no card handled {metrics['no_card_handled_pct']:.1f} %; "
        f"estimated on board {est['total']:.0f} ms/frame ({est['fps']:.1f} fps; {est['worst_fps']:.1f} fps when every "
        f"look of the locator runs)"
    )
    return report
