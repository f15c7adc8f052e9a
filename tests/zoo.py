"""Small real graphs of the shapes users bring, for the v3 re-emitter's tests (issue 13's zoo).

Each builder returns a torch module in eval mode with its input size; :func:`export` writes it as
ONNX the way a user's exporter would (legacy TorchScript exporter, opset 11). Weights are seeded
random: what is checked is that the v3 file computes what nncase's simulator computes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pokedex_host.models.kpu_mobilenet_v1 import KPUMobileNetV1


def _cbr(cin, cout, k=3, s=1, groups=1, act=True):
    layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return layers + ([nn.ReLU6()] if act else [])


class PoolThenConvHead(KPUMobileNetV1):
    """torchvision's layout: features, global average pool, then the classifier as 1x1 convs on
    the 1x1 map (split in two to stay under 1024 outputs each), concat, reshape."""

    def forward(self, x):
        f = self.features(x).mean(dim=(2, 3), keepdim=True)
        return torch.cat([h(f) for h in self.heads], 1).reshape(x.shape[0], -1)


class PoolThenGemm(nn.Module):
    """Keras's layout: features, global average pool, flatten, a fully connected layer."""

    def __init__(self, classes=1000, width=16):
        super().__init__()
        self.features = nn.Sequential(
            *_cbr(3, width, s=2),
            *_cbr(width, width, groups=width),
            *_cbr(width, 2 * width, 1),
            *_cbr(2 * width, 2 * width, s=2, groups=2 * width),
            *_cbr(2 * width, 4 * width, 1),
        )
        self.fc = nn.Linear(4 * width, classes)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class InvertedResidual(nn.Module):
    """MobileNetV2's block: expand 1x1, depthwise 3x3, project 1x1 (no activation), plus the input."""

    def __init__(self, c=16, expand=4):
        super().__init__()
        self.stem = nn.Sequential(*_cbr(3, c, s=2))
        self.block = nn.Sequential(
            *_cbr(c, c * expand, 1),
            *_cbr(c * expand, c * expand, groups=c * expand),
            *_cbr(c * expand, c, 1, act=False),
        )
        self.head = nn.Conv2d(c, 10, 1)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.block(x)
        return self.head(x).mean(dim=(2, 3))


class TwoBranchConcat(nn.Module):
    """An Inception-style pair of branches (1x1 and 3x3) concatenated on channels."""

    def __init__(self, c=16):
        super().__init__()
        self.stem = nn.Sequential(*_cbr(3, c, s=2))
        self.a = nn.Sequential(*_cbr(c, c, 1))
        self.b = nn.Sequential(*_cbr(c, c, 3))
        self.head = nn.Conv2d(2 * c, 10, 1)

    def forward(self, x):
        x = self.stem(x)
        return self.head(torch.cat([self.a(x), self.b(x)], 1)).mean(dim=(2, 3))


ZOO = {
    # name: (builder, input size)
    "pool-then-1x1-head": (lambda: PoolThenConvHead(width=0.25, input=224, classes=1025), 224),
    "pool-then-gemm": (lambda: PoolThenGemm(classes=1000), 128),
    "mobilenet-v1-64px": (lambda: KPUMobileNetV1(width=0.25, input=64, classes=1025), 64),
    "mobilenet-v1-96px": (lambda: KPUMobileNetV1(width=0.25, input=96, classes=1025), 96),
    "inverted-residual": (lambda: InvertedResidual(), 128),
    "two-branch-concat": (lambda: TwoBranchConcat(), 128),
}


def export(name: str, path: Path) -> Path:
    build, size = ZOO[name]
    torch.manual_seed(0)
    m = build().eval()
    with torch.no_grad():  # batch-norm statistics that are not the identity, as after training
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
    torch.onnx.export(
        m,
        torch.zeros(1, 3, size, size),
        str(path),
        opset_version=11,
        dynamo=False,
        input_names=["input"],
        output_names=["output"],
    )
    return path


class GlobalMaxPoolHead(nn.Module):
    """Features, then a global max pool: kpu.c has no layer for it, so v3 must refuse it by name."""

    def __init__(self, c=16):
        super().__init__()
        self.features = nn.Sequential(*_cbr(3, c, s=2), *_cbr(c, 2 * c, 1))
        self.head = nn.Conv2d(2 * c, 10, 1)

    def forward(self, x):
        return torch.amax(self.head(self.features(x)), dim=(2, 3))


REFUSED = {"global-max-pool": (lambda: GlobalMaxPoolHead(), 64)}
ZOO.update(REFUSED)
