"""Student model registry: ``create_model("kpu_mobilenet_v1", width=0.75, input=224, classes=1025)``.

One family per file; each registers its constructor with :func:`register_model`. Families know
nothing about training or compiling: they are ``torch.nn.Module`` factories whose output is
class logits for an RGB image in [0, 1], NCHW.
"""

from __future__ import annotations

from typing import Callable

from ..errors import PokedexError

_REGISTRY: dict[str, Callable] = {}


def register_model(name: str):
    def deco(fn: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs):
    if name not in _REGISTRY:
        raise PokedexError(f"unknown model family {name!r}", "known families: " + ", ".join(list_models()))
    return _REGISTRY[name](**kwargs)


# the families register themselves on import (after the registry above exists)
from . import efficientnet_lite, kpu_mobilenet_v1  # noqa: E402, F401  (teacher, student)
