"""The training losses, written once: label cross-entropy (with mixup weighting), knowledge
distillation (KL to the teacher's softened outputs at temperature T, scaled by T², plus a little
label cross-entropy) and the feature term (the student's features, mapped to the teacher's, by
their cosine). The teacher fine-tune, the plain student and both distillations use them."""

from __future__ import annotations

import torch
from torch import nn


def label_loss(logits: torch.Tensor, y: torch.Tensor, smoothing: float, mixed=None) -> torch.Tensor:
    """Label cross-entropy; for a ``mix_batch`` blend ``(x, lam, perm)``, each row's two labels by their weights."""
    if mixed is None:
        return nn.functional.cross_entropy(logits, y, label_smoothing=smoothing)
    _, lam, perm = mixed
    lam = lam.to(logits.device)
    ce = nn.functional.cross_entropy(logits, y, label_smoothing=smoothing, reduction="none")
    ce2 = nn.functional.cross_entropy(logits, y[perm.to(y.device)], label_smoothing=smoothing, reduction="none")
    return (lam * ce + (1 - lam) * ce2).mean()


def kd_loss(
    logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    y: torch.Tensor,
    *,
    temperature: float,
    alpha: float,
    smoothing: float = 0.0,
    mixed=None,
) -> torch.Tensor:
    """``alpha`` x KL(teacher || student) at ``temperature`` T, times T² (so the gradient keeps its
    size as T changes), plus ``1 - alpha`` x :func:`label_loss`."""
    t = temperature
    soft = nn.functional.softmax(teacher_logits.float() / t, dim=1)
    kd = nn.functional.kl_div(nn.functional.log_softmax(logits / t, dim=1), soft, reduction="batchmean") * t * t
    return alpha * kd + (1 - alpha) * label_loss(logits, y, smoothing, mixed)


def feature_loss(mapped: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """1 - cosine similarity of each image's student features mapped into the teacher's feature
    space and the teacher's own, averaged over the batch: 0 when they point the same way."""
    return (1 - nn.functional.cosine_similarity(mapped.float(), teacher_features.float(), dim=1)).mean()
