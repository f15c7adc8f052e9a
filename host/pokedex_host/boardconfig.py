"""``pokedex.json``, the config the host writes onto the board (docs/specs/board-config.md)."""

from __future__ import annotations

import json
from pathlib import Path

from .boards import Board
from .fsutil import atomic_write_text

API_FOR_FAMILY = {"maixpy": "maixpy", "canmv": "canmv", "baremetal": None}


def make_config(board: Board, *, input_size: int, outputs: int, model: str | int, labels: str = "/sd/classes.txt",
                threshold: float = 0.5, smoothing: float = 0.6, topk: int = 3, uart: dict | None = None) -> dict:
    api = API_FOR_FAMILY.get(board.firmware.family)
    if api is None:
        raise ValueError(f"{board.name}: firmware family {board.firmware.family!r} does not run the MicroPython app")
    window = list(board.camera.window)
    return {
        "version": 1,
        "api": api,
        "model": model,
        "labels": labels,
        "outputs": outputs,
        "input": [input_size, input_size],
        "camera": {"framesize": board.camera.framesize, "window": window,
                   "resize": window != [input_size, input_size], "hmirror": False, "vflip": False},
        "threshold": threshold,
        "smoothing": smoothing,
        "topk": topk,
        "uart": uart or {"baud": board.firmware.uart_baud, "tx": None, "rx": None},
        "gc_heap_size": board.firmware.gc_heap_size,
    }


def write_config(path: Path, cfg: dict) -> Path:
    return atomic_write_text(path, json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
