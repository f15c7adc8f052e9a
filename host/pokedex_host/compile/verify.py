"""Host verification: the compiled kmodel (nncase simulator, uint8) against the float model
(onnxruntime) on the same held-out images."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Verification:
    images: int
    labelled: int
    float_top1: float | None
    float_top5: float | None
    kmodel_top1: float | None
    kmodel_top5: float | None
    agreement_top1: float  # share of images where float and kmodel pick the same class
    cosine_mean: float
    cosine_min: float
    loss_pp: float | None  # float top-1 minus kmodel top-1, in percentage points (labelled images)
    threshold_pp: float
    flagged: bool
    notes: list[str] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)
    # kmodel v3 only: our re-emitted v3 (run by the v3 interpreter) against nncase's v5 (simulator)
    v3_vs_v5: dict | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def _topk(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    top = np.argsort(-logits, axis=1)[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)) * 100)


def compare(
    float_logits: np.ndarray,
    kmodel_logits: np.ndarray,
    labels: list[int | None],
    classes: list[int],
    threshold_pp: float,
    *,
    judge_agreement: bool = True,
) -> Verification:
    """Top-k of both models on labelled images; agreement and cosine on all.

    Without labels the loss cannot be measured; top-1 disagreement stands in for it unless
    ``judge_agreement`` is False (untrained weights, whose near-tied logits make it noise).
    """
    n = float_logits.shape[0]
    index = {dex: i for i, dex in enumerate(classes)}
    lab = [index.get(d) if d is not None else None for d in labels]
    mask = np.array([x is not None for x in lab], bool)
    y = np.array([x if x is not None else -1 for x in lab])
    a = float_logits.astype(np.float64)
    b = kmodel_logits.astype(np.float64)
    cos = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    agree = float(np.mean(a.argmax(1) == b.argmax(1)) * 100) if n else 0.0
    notes = []
    f1 = f5 = k1 = k5 = loss = None
    if mask.any():
        f1, f5 = _topk(a[mask], y[mask], 1), _topk(a[mask], y[mask], 5)
        k1, k5 = _topk(b[mask], y[mask], 1), _topk(b[mask], y[mask], 5)
        loss = f1 - k1
        flagged = loss > threshold_pp
    elif judge_agreement:
        notes.append("no labelled images: judged on top-1 agreement (disagreement above the threshold is flagged)")
        flagged = (100 - agree) > threshold_pp
    else:
        notes.append("no labelled images and untrained weights: nothing to judge accuracy by; see the cosine")
        flagged = False
    return Verification(
        n,
        int(mask.sum()),
        f1,
        f5,
        k1,
        k5,
        agree,
        float(cos.mean()) if n else 0.0,
        float(cos.min()) if n else 0.0,
        loss,
        threshold_pp,
        bool(flagged),
        notes,
    )


def same_outputs(a: np.ndarray, b: np.ndarray) -> dict:
    """Image by image, are two runs' outputs identical to the bit? (``images``, ``identical``, ``max_abs_diff``)."""
    a32, b32 = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if a32.shape != b32.shape:
        return {
            "images": int(len(a32)),
            "identical": 0,
            "max_abs_diff": None,
            "shapes": [list(a32.shape), list(b32.shape)],
        }
    same = [bool(np.array_equal(x.view(np.uint32), y.view(np.uint32))) for x, y in zip(a32, b32)]
    diff = float(np.max(np.abs(a32.astype(np.float64) - b32))) if a32.size else 0.0
    return {"images": len(same), "identical": int(sum(same)), "max_abs_diff": diff}
