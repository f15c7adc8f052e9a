"""``pokedex.json``, the config the host writes onto the board (docs/specs/board-config.md)."""

from __future__ import annotations

import json
from pathlib import Path

from .boards import Board
from .fsutil import atomic_write_text


# the card locator's settings (firmware/pk_card.py); the layout itself is dataset/cards.LAYOUT, the
# one the training views and the card-frame benchmark are drawn with. Chosen on the validation card
# frames (docs/card-in-frame.md): max_cos / side_ratio drop quads far from a rectangle (the true
# cards there stay within 11 degrees and 1.18), blob_look outlines the card as a blob of the
# colour-only looks when no quad is card-shaped.
CARD_LOCATOR = {"scale": 2, "rect_threshold": 6000, "mask_threshold": 6000, "aspect": [1.15, 1.75],
                "min_height": 0.3, "mask_scale": 2, "strip": 4, "desk_k": 3.0, "desk_margin": 6,
                "chroma_k": [3.0, 1.8], "art_look": True, "art_outside": 0.05, "no_card_threshold": 0.8,
                "max_cos": 0.42, "side_ratio": 1.4, "blob_look": True, "blob_from": 1, "blob_density": 0.6,
                "texture": 4,
                # last, when nothing passed: any look's quad of a looser card shape whose art window
                # shows a picture (chosen on the validation card frames, docs/card-in-frame.md)
                "loose": {"max_cos": 0.6, "side_ratio": 1.9, "aspect": [1.0, 2.0], "texture": 9}}


# the app names a species at this confidence or more (else "unknown"). Each release chooses its
# own on the validation cards (`release`: the lowest threshold at which more than four in five
# named answers are right) and carries it in its app.json (APP_FILE); this is the value for a
# kmodel that has none.
APP_THRESHOLD = 0.25

# the app also classifies the mirror image of the crop and averages the two logit vectors (a second
# KPU run per frame; docs/card-in-frame.md has what it buys on the card-frame benchmark and costs)
APP_MIRROR = True

# the weight of the previous frames' scores in the app's running average (0 = off)
APP_SMOOTHING = 0.6

APP_FILE = "app.json"  # beside a release's model.kmodel: the app settings chosen for that release


def app_settings(kmodel: Path | None) -> dict:
    """The app's threshold, mirror and smoothing for ``kmodel``: the defaults above, overridden by
    the ``app.json`` its release folder carries (the release chose its threshold on validation)."""
    out = {"threshold": APP_THRESHOLD, "mirror": APP_MIRROR, "smoothing": APP_SMOOTHING}
    f = Path(kmodel).with_name(APP_FILE) if kmodel else None
    if f is not None and f.is_file():
        try:
            got = json.loads(f.read_text())
        except (OSError, ValueError) as e:
            from .errors import PokedexError

            raise PokedexError(f"{f} is not readable JSON ({e})", "restore it from the release or delete it") from e
        out.update({k: got[k] for k in out if k in got})
    return out


def card_config(board: Board, locate: bool = True) -> dict | None:
    """The ``card`` section of pokedex.json: where the art window is on a card, how to find one,
    and the centre crop (the profile's camera window) used when no card is found."""
    if not locate:
        return None
    from .dataset.cards import LAYOUT

    return {**CARD_LOCATOR, "art": list(LAYOUT.art), "margin": LAYOUT.crop_margin,
            "centre": int(min(board.camera.window))}


def make_config(board: Board, *, input_size: int, outputs: int, model: str | int, labels: str = "/sd/classes.txt",
                threshold: float = APP_THRESHOLD, smoothing: float = APP_SMOOTHING, topk: int = 3, uart: dict | None = None,
                locate_card: bool = True, model_size: int | None = None, mirror: bool = APP_MIRROR,
                model_runtime: int | None = None) -> dict:
    from .families import app_family

    api = app_family(board.firmware.family, board.name).api
    if isinstance(model, int) and not model_size:
        from .errors import PokedexError

        raise PokedexError(f"model at flash address 0x{model:X} without its size",
                           "pass model_size (bytes of the kmodel): CanMV's load_kmodel(address, size) needs it")
    # the card app takes the whole frame and crops in software (set_windowing would give the
    # sensor's top-left corner on MaixPy-v1, not the centre)
    window = None if locate_card else list(board.camera.window)
    return {
        "version": 1,
        "api": api,
        "model": model,
        "model_size": model_size if isinstance(model, int) else None,
        # the model's run-time RAM (kmodel + working memory + I/O, from its build): the app checks
        # it against the free system heap before kpu.load
        "model_runtime": model_runtime,
        "labels": labels,
        "outputs": outputs,
        "input": [input_size, input_size],
        "camera": {"framesize": board.camera.framesize, "window": window,
                   "resize": window != [input_size, input_size], "hmirror": False, "vflip": False},
        "threshold": threshold,
        "mirror": mirror,
        "smoothing": smoothing,
        "topk": topk,
        "uart": uart or {"baud": board.firmware.uart_baud, "tx": None, "rx": None},
        "gc_heap_size": board.firmware.gc_heap_size,
        "card": card_config(board, locate_card),
    }


def write_config(path: Path, cfg: dict) -> Path:
    return atomic_write_text(path, json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
