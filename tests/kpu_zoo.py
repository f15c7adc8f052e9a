"""A zoo of small graphs, good and bad for the KPU, to hold the lint to what nncase does."""

from __future__ import annotations

import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, *layers: nn.Module, pool_out: bool = True):
        super().__init__()
        self.body = nn.Sequential(*layers)
        self.pool_out = pool_out

    def forward(self, x):
        y = self.body(x)
        return y.mean(dim=(2, 3)) if self.pool_out else y.flatten(1)


def _cbr(cin, cout, k=3, s=1, p=None, g=1, act=None, d=1):
    p = k // 2 * d if p is None else p
    return [nn.Conv2d(cin, cout, k, s, p, groups=g, dilation=d), nn.BatchNorm2d(cout), act or nn.ReLU6()]


def zoo() -> dict[str, tuple[nn.Module, int]]:
    """name -> (model, input size). Each is small enough to compile in a few seconds."""
    return {
        "good_3x3_1x1_dw": (
            Net(
                *_cbr(3, 16, 3, 2),
                *_cbr(16, 16, 3, 1, g=16),
                *_cbr(16, 32, 1),
                *_cbr(32, 32, 3, 2, g=32),
                *_cbr(32, 64, 1),
            ),
            64,
        ),
        "good_maxpool2x2": (Net(*_cbr(3, 16), nn.MaxPool2d(2, 2), *_cbr(16, 32)), 32),
        "good_relu_leaky": (Net(*_cbr(3, 16, act=nn.ReLU()), *_cbr(16, 16, act=nn.LeakyReLU(0.1))), 32),
        "bad_5x5": (Net(*_cbr(3, 16, 3, 2), *_cbr(16, 16, 5)), 32),
        "bad_7x7_stem": (Net(*_cbr(3, 16, 7, 2), *_cbr(16, 16)), 64),
        "bad_stride3": (Net(*_cbr(3, 16), *_cbr(16, 16, 3, 3)), 48),
        "bad_dilation": (Net(*_cbr(3, 16), *_cbr(16, 16, 3, 1, d=2)), 32),
        "bad_asym_pad": (Net(*_cbr(3, 16), nn.ZeroPad2d((0, 1, 0, 1)), *_cbr(16, 16, 3, 2, p=0)), 32),
        "bad_maxpool3x3": (Net(*_cbr(3, 16), nn.MaxPool2d(3, 2, 1), *_cbr(16, 32)), 32),
        "bad_1025_head": (Net(*_cbr(3, 16, 3, 2), *_cbr(16, 32, 3, 2), nn.Conv2d(32, 1025, 1)), 32),
        "good_split_head": (SplitHead(), 32),
        "bad_tiny_map": (Net(*_cbr(3, 16, 3, 2), *_cbr(16, 16, 3, 2), *_cbr(16, 16, 3, 2), *_cbr(16, 16, 3, 1)), 16),
        "bad_silu": (Net(*_cbr(3, 16, act=nn.SiLU()), *_cbr(16, 16)), 32),
        "bad_grouped": (Net(*_cbr(3, 16), *_cbr(16, 32, 3, 1, g=4)), 32),
        "bad_gemm_head": (GemmHead(), 32),
    }


class SplitHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(*_cbr(3, 16, 3, 2), *_cbr(16, 32, 3, 2))
        self.h1 = nn.Conv2d(32, 513, 1)
        self.h2 = nn.Conv2d(32, 512, 1)

    def forward(self, x):
        f = self.body(x)
        return torch.cat([self.h1(f), self.h2(f)], 1).mean(dim=(2, 3))


class GemmHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(*_cbr(3, 16, 3, 2), *_cbr(16, 32, 3, 2))
        self.fc = nn.Linear(32, 100)

    def forward(self, x):
        return self.fc(self.body(x).mean(dim=(2, 3)))


def zoo_extra() -> dict[str, tuple[nn.Module, int]]:
    """Limits measured on bigger maps (a few seconds more each)."""
    return {
        "bad_width_640": (Net(*_cbr(3, 8, 3, 1)), 640),
        # measured: a 256-wide input stays on the KPU, 264 does not (both layers leave it)
        "good_width_256": (Net(*_cbr(3, 8, 3, 1), *_cbr(8, 8, 3, 1)), 256),
        "bad_width_264": (Net(*_cbr(3, 8, 3, 1), *_cbr(8, 8, 3, 1)), 264),
        "bad_1100_channels": (Net(*_cbr(3, 16, 3, 2), *_cbr(16, 1100, 1), *_cbr(1100, 16, 1)), 16),
        "good_silu_fused": (Net(*_cbr(3, 16, act=nn.SiLU()), *_cbr(16, 16, act=nn.Hardswish())), 32),
    }


def zoo_kpu_overflow() -> dict[str, tuple[nn.Module, int]]:
    """A layer whose input + output maps exceed the 2 MiB KPU SRAM: nncase refuses to compile."""
    return {
        "bad_kpu_sram": (Net(*_cbr(3, 64, 3, 2), *_cbr(64, 128, 1)), 224),
        # a depthwise stride-2 conv keeps its full-resolution output in KPU SRAM: 1 + 1 MiB here
        "bad_kpu_sram_dw_s2": (Net(*_cbr(3, 32, 3, 2), *_cbr(32, 64, 1), *_cbr(64, 64, 3, 2, g=64)), 256),
    }
