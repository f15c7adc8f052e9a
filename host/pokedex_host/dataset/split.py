"""Per-species train/validation/test split: deterministic, no near-duplicate leakage.

Targets for a species with n images: validation = round(0.15 n), test = round(0.15 n), train
= the rest; small species fill train first, then validation, then test:
n = 1 -> 1/0/0, n = 2 -> 1/1/0, n = 3 -> 1/1/1, n = 4 -> 2/1/1 (and train is never empty).
Images are first grouped (near-duplicates: perceptual hashes within ``max_distance`` bits, e.g.
animation frames and recolours); whole groups are dealt, largest first in a seeded order, to the
split with the largest remaining need, train first on ties. A species that is one big group
therefore lands entirely in train.
"""

from __future__ import annotations

import hashlib

from .images import hamming

SPLITS = ("train", "validation", "test")


def targets(n: int) -> dict[str, int]:
    if n <= 0:
        return {s: 0 for s in SPLITS}
    val = max(1 if n >= 2 else 0, round(0.15 * n))
    test = max(1 if n >= 3 else 0, round(0.15 * n))
    return {"train": n - val - test, "validation": val, "test": test}


def group(hashes: dict[str, int], max_distance: int = 6) -> dict[str, str]:
    """key -> group id (the smallest key in its group); union-find over close hashes."""
    keys = sorted(hashes)
    parent = {k: k for k in keys}

    def find(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            if hamming(hashes[a], hashes[b]) <= max_distance:
                ra, rb = find(a), find(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    return {k: find(k) for k in keys}


def assign(groups: dict[str, list[str]], seed: int = 0) -> dict[str, str]:
    """group id -> members; returns key -> split."""
    n = sum(len(m) for m in groups.values())
    need = targets(n)
    order = sorted(groups, key=lambda g: (-len(groups[g]), hashlib.sha256(f"{seed}:{g}".encode()).hexdigest()))
    out: dict[str, str] = {}
    for g in order:
        if not out:
            split = "train"  # the largest group always trains: every species keeps train images
        else:
            split = max(SPLITS, key=lambda s: (need[s], -SPLITS.index(s)))
        need[split] -= len(groups[g])
        for k in groups[g]:
            out[k] = split
    return out
