"""Class grouping: clusters of species that a trained model finds alike, for a coarse model.

``make_groups`` embeds every training image with a model's feature extractor (the layer before
its classifier), averages per species, and clusters the 1025 species means into G groups
(k-means, seeded). A coarse student (``train student --groups FILE``) predicts the group: its
classifier holds C x G weights instead of C x 1025 — what that buys in bytes and costs in
accuracy is measured in docs/training.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..errors import PokedexError
from ..fsutil import atomic_write_text, sha256_file
from ..models.checkpoint import load_checkpoint
from .data import load_split, to_input


def _kmeans(x: np.ndarray, k: int, seed: int, iters: int = 30) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = x[rng.choice(len(x), k, replace=False)]
    for _ in range(iters):
        d = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
        lab = d.argmin(1)
        for j in range(k):
            members = x[lab == j]
            centres[j] = members.mean(0) if len(members) else x[rng.integers(len(x))]
    return lab


def make_groups(model_path: Path, train_dir: Path, groups: int, out: Path, seed: int = 0, log=print) -> dict:
    ck = load_checkpoint(model_path)
    model = ck.build()
    if not hasattr(model, "features"):
        raise PokedexError(f"{model_path}: its family has no feature extractor to group by")
    data = load_split(train_dir, ck.input_size)
    feats = []
    with torch.no_grad():
        for i in range(0, len(data), 128):
            f = model.features(to_input(data.x[i : i + 128], ck.input_size)).mean(dim=(2, 3))
            feats.append(f)
    f = torch.cat(feats).numpy()
    f /= np.linalg.norm(f, axis=1, keepdims=True) + 1e-8
    species = sorted(set(data.y.tolist()))
    means = np.stack([f[data.y.numpy() == s].mean(0) for s in species])
    lab = _kmeans(means, groups, seed)
    result = {
        "format": "pokedex-k210/groups",
        "version": 1,
        "groups": groups,
        "seed": seed,
        "model": str(model_path),
        "model_sha256": sha256_file(model_path),
        "dex_to_group": {str(s + 1): int(g) for s, g in zip(species, lab)},
    }
    sizes = np.bincount(lab, minlength=groups)
    log(
        f"{len(species)} species in {groups} groups "
        f"(sizes {sizes.min()}..{sizes.max()}, median {int(np.median(sizes))})"
    )
    atomic_write_text(out, json.dumps(result, indent=1))
    return result


def load_groups(path: Path) -> dict[int, int]:
    try:
        obj = json.loads(Path(path).read_text())
        return {int(k): int(v) for k, v in obj["dex_to_group"].items()}
    except (OSError, ValueError, KeyError) as e:
        raise PokedexError(f"{path} is not a grouping file ({e})", "write one with `pokedex-host groups`") from e
