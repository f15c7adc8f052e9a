"""The project's own checkpoint format: a plain dict that loads with ``weights_only=True``.

``{"format": "pokedex-k210/checkpoint", "version": 1, "family": str, "config": dict,
"classes": [dex, ...], "input": {"size": int, "range": [0, 1]}, "state_dict": {...}, "meta": {...}}``
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import PokedexError
from ..fsutil import atomic_write_bytes
from . import create_model

FORMAT = "pokedex-k210/checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    family: str
    config: dict
    classes: list[int]
    state_dict: dict
    meta: dict = field(default_factory=dict)

    @property
    def input_size(self) -> int:
        return int(self.config["input"])

    def build(self) -> torch.nn.Module:
        model = create_model(self.family, **self.config)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as e:
            raise PokedexError(
                f"checkpoint weights do not fit {self.family}({self.config}): {str(e).splitlines()[0]}",
                "the checkpoint's config or class count differs from its weights; re-export it",
            ) from e
        return model.eval()


def save_checkpoint(
    path: Path, model: torch.nn.Module, family: str, classes: list[int], meta: dict | None = None
) -> Path:
    buf = io.BytesIO()
    torch.save(
        {
            "format": FORMAT,
            "version": VERSION,
            "family": family,
            "config": dict(model.config),
            "classes": list(classes),
            "state_dict": model.state_dict(),
            "meta": meta or {},
        },
        buf,
    )
    return atomic_write_bytes(path, buf.getvalue())


def is_project_checkpoint(obj) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def load_checkpoint(path: Path) -> Checkpoint:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PokedexError(f"model file {path} does not exist") from None
    except Exception as e:  # a pickle that is not weights-only, a truncated zip, random bytes
        raise PokedexError(
            f"{path} is not a pokedex-k210 checkpoint that loads safely "
            f"({type(e).__name__}: {str(e).splitlines()[0][:200]})",
            "pass a checkpoint written by pokedex-host, an ultralytics .pt (loaded as a pickle, only files you name), "
            "or an ONNX file",
        ) from e
    if not is_project_checkpoint(obj):
        raise PokedexError(
            f"{path} is a torch file but not a pokedex-k210 checkpoint (no 'format' key)",
            "export your model to ONNX and pass the .onnx file",
        )
    if obj.get("version") != VERSION:
        raise PokedexError(
            f"{path}: checkpoint version {obj.get('version')} is not supported (this tool reads {VERSION})"
        )
    return Checkpoint(obj["family"], obj["config"], list(obj["classes"]), obj["state_dict"], obj.get("meta", {}))
