"""MobileNetV1-style students built from what the K210 KPU runs natively.

Every layer is a 3x3 (full or depthwise) or 1x1 convolution, stride 1 or 2, symmetric padding,
batch norm (folded at export) and ReLU6; channel counts stay <= 1024. The classifier is a set of
1x1 convolutions on the last feature map, each with at most ``head_max`` (<= 1024) outputs,
concatenated, then a global average pool. A linear map commutes with averaging, so this equals
"pool, then a 1025-way fully connected layer" while keeping the big matrix on the KPU: a single
1025-wide conv or Gemm would leave the KPU and run in float on the CPU (+4 MB).
"""

from __future__ import annotations

import torch
from torch import nn

from ..species import SPECIES_COUNT
from . import register_model

# (output channels at width 1.0, stride) for the 13 depthwise-separable blocks of MobileNetV1.
_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
KPU_MAX_CHANNELS = 1024


def _conv_bn(cin: int, cout: int, k: int, stride: int, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    ]


def _channels(c: int, width: float) -> int:
    # round to a multiple of 8 (the KPU packs channels; it also keeps widths familiar)
    return max(8, int(c * width + 4) // 8 * 8)


def split_sizes(classes: int, head_max: int) -> list[int]:
    """Split ``classes`` outputs into near-equal parts of at most ``head_max``."""
    parts = -(-classes // head_max)
    base, extra = divmod(classes, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


class KPUMobileNetV1(nn.Module):
    def __init__(
        self,
        width: float = 0.75,
        input: int = 224,
        classes: int = SPECIES_COUNT,
        head_max: int = 1024,
        dropout: float = 0.0,
    ):
        super().__init__()
        if not 0 < width <= 1.0:
            raise ValueError(f"width {width} must be in (0, 1]: wider layers exceed 1024 channels and leave the KPU")
        if head_max > KPU_MAX_CHANNELS:
            raise ValueError(f"head_max {head_max} > {KPU_MAX_CHANNELS}: such a head leaves the KPU")
        self.config = {"width": width, "input": input, "classes": classes, "head_max": head_max, "dropout": dropout}
        layers = _conv_bn(3, _channels(32, width), 3, 2)
        c = _channels(32, width)
        for cout, stride in _BLOCKS:
            co = min(_channels(cout, width), KPU_MAX_CHANNELS)
            layers += _conv_bn(c, c, 3, stride, groups=c)
            layers += _conv_bn(c, co, 1, 1)
            c = co
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout2d(dropout) if dropout else nn.Identity()
        self.heads = nn.ModuleList(nn.Conv2d(c, n, 1) for n in split_sizes(classes, head_max))
        self.feature_channels = c
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(
                    m.weight, mode="fan_in", nonlinearity="relu"
                )  # fan_in keeps depthwise layers from shrinking the signal
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for h in self.heads:
            nn.init.normal_(h.weight, 0.0, (1.0 / self.feature_channels) ** 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.dropout(self.features(x))
        y = torch.cat([h(f) for h in self.heads], dim=1) if len(self.heads) > 1 else self.heads[0](f)
        return y.mean(dim=(2, 3))

    # training's split of forward (the export keeps forward: heads on the map, then the mean, as
    # the KPU runs it); the head is linear, so forward_head(forward_features(x)) equals forward(x)
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features the heads read (batch x feature_channels)."""
        return self.dropout(self.features(x)).mean(dim=(2, 3))

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        f = f[:, :, None, None]
        return torch.cat([h(f) for h in self.heads], dim=1).flatten(1)

    # what a trainer asks the model (as timm's models answer): the head, and what can be frozen
    def get_classifier(self) -> nn.Module:
        return self.heads

    def early_layers(self, n: int) -> list[nn.Module]:
        """The stem and the first ``n`` depthwise-separable blocks (``features``: 3 modules for the
        stem, then 6 per block)."""
        return list(self.features[: 3 + 6 * n])


@register_model("kpu_mobilenet_v1")
def kpu_mobilenet_v1(
    width: float = 0.75, input: int = 224, classes: int = SPECIES_COUNT, head_max: int = 1024, dropout: float = 0.0
) -> KPUMobileNetV1:
    return KPUMobileNetV1(width=width, input=input, classes=classes, head_max=head_max, dropout=dropout)
