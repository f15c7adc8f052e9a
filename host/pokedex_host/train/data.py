"""Classification data for the students: an ImageFolder of ``<dex:04d>/`` folders, decoded once
into RAM (uint8), augmented on the fly in torch."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import PokedexError
from ..preprocess import is_image_file, to_model_input
from ..species import SPECIES_COUNT


@dataclass
class SplitData:
    x: torch.Tensor  # uint8 N x 3 x S x S
    y: torch.Tensor  # int64 class index = dex - 1
    files: list[str]

    def __len__(self) -> int:
        return int(self.y.shape[0])


def list_split(folder: Path) -> list[tuple[Path, int]]:
    folder = Path(folder)
    if not folder.is_dir():
        raise PokedexError(
            f"training split {folder} does not exist",
            "run `pokedex-host data process` and pass DATA/processed/classify",
        )
    out = []
    for d in sorted(folder.iterdir()):
        if d.is_dir() and d.name.isdigit() and 1 <= int(d.name) <= SPECIES_COUNT:
            out += [(f, int(d.name) - 1) for f in sorted(d.iterdir()) if is_image_file(f) or f.is_symlink()]
    if not out:
        raise PokedexError(f"{folder} has no <dex>/ image folders", "point --data at DATA/processed/classify")
    return out


def data_hash(items: list[tuple[Path, int]]) -> str:
    h = hashlib.sha256()
    for f, y in items:
        h.update(f"{f.name}:{y}\n".encode())
    return h.hexdigest()[:16]


def load_split(folder: Path, size: int) -> SplitData:
    items = list_split(folder)
    x = np.empty((len(items), 3, size, size), np.uint8)
    for i, (f, _) in enumerate(items):
        with Image.open(f) as im:
            x[i] = to_model_input(im, size)
    return SplitData(torch.from_numpy(x), torch.tensor([y for _, y in items]), [str(f) for f, _ in items])


def augment(x: torch.Tensor, out: int, gen: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """uint8 batch -> float [0, 1] batch of ``out`` px: random resized crop, flip, colour jitter."""
    n, _, s, _ = x.shape
    xf = x.float() / 255.0
    res = torch.empty(n, 3, out, out)
    scale = torch.empty(n).uniform_(1 - 0.5 * strength, 1.0, generator=gen)
    for i in range(n):
        side = max(8, int(s * float(scale[i]) ** 0.5))
        top = int(torch.randint(0, s - side + 1, (1,), generator=gen))
        left = int(torch.randint(0, s - side + 1, (1,), generator=gen))
        crop = xf[i : i + 1, :, top : top + side, left : left + side]
        res[i] = torch.nn.functional.interpolate(crop, size=(out, out), mode="bilinear", align_corners=False)[0]
    flip = torch.rand(n, generator=gen) < 0.5
    res[flip] = res[flip].flip(-1)
    b = 1 + (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.6 * strength
    c = 1 + (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.6 * strength
    mean = res.mean(dim=(1, 2, 3), keepdim=True)
    res = ((res - mean) * c + mean) * b
    sat = 1 + (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.6 * strength
    gray = res.mean(dim=1, keepdim=True)
    res = (res - gray) * sat + gray
    return res.clamp_(0, 1)


def to_input(x: torch.Tensor, out: int) -> torch.Tensor:
    xf = x.float() / 255.0
    if x.shape[-1] != out:
        xf = torch.nn.functional.interpolate(xf, size=(out, out), mode="bilinear", align_corners=False)
    return xf
