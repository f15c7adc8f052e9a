"""``pokedex.json``, the config the host writes onto the board (docs/specs/board-config.md)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from .boards import Board
from .fsutil import atomic_write_text

# the card locator's settings (firmware/pk_card.py); the layout itself is dataset/cards.LAYOUT, the
# one the training views and the card-frame benchmark are drawn with. Chosen on the validation card
# frames (docs/card-in-frame.md): max_cos / side_ratio drop quads far from a rectangle (the true
# cards there stay within 11 degrees and 1.18), blob_look outlines the card as a blob of the
# colour-only looks when no quad is card-shaped.
CARD_LOCATOR = {
    "scale": 2,
    "rect_threshold": 6000,
    "mask_threshold": 6000,
    "aspect": [1.15, 1.75],
    "min_height": 0.3,
    "mask_scale": 2,
    "strip": 4,
    "desk_k": 3.0,
    "desk_margin": 6,
    "chroma_k": [3.0, 1.8],
    "art_look": True,
    "art_outside": 0.05,
    "no_card_threshold": 0.8,
    "max_cos": 0.42,
    "side_ratio": 1.4,
    "blob_look": True,
    "blob_from": 1,
    "blob_density": 0.6,
    "texture": 4,
    # last, when nothing passed: any look's quad of a looser card shape whose art window
    # shows a picture (chosen on the validation card frames, docs/card-in-frame.md)
    "loose": {"max_cos": 0.6, "side_ratio": 1.9, "aspect": [1.0, 2.0], "texture": 9},
}


# the app names a species at this confidence or more (else "unknown"). Each release chooses its
# own on the validation cards (`release`: the lowest threshold at which more than four in five
# named answers are right; when none is, the lowest at which at most APP_MAX_WRONG_PCT % of the
# card frames are named wrong) and carries it in its app.json (APP_FILE); this is the value for a
# kmodel that has none.
APP_THRESHOLD = 0.25
APP_MAX_WRONG_PCT = 10.0  # issue 25's target: at most one card frame in ten named wrong

# the app also classifies the mirror image of the crop and averages the two logit vectors (a second
# KPU run per frame; docs/card-in-frame.md has what it buys on the card-frame benchmark and costs)
APP_MIRROR = True

# the weight of the previous frames' scores in the app's running average (0 = off)
APP_SMOOTHING = 0.6

APP_FILE = "app.json"  # beside a release's model.kmodel: the app settings chosen for that release


def default_app_settings() -> dict:
    """The app settings of a kmodel whose folder carries no app.json (a build of your own)."""
    return {
        "threshold": APP_THRESHOLD,
        "mirror": APP_MIRROR,
        "smoothing": APP_SMOOTHING,
        "locator": copy.deepcopy(CARD_LOCATOR),
    }


def app_settings(kmodel: Path | None) -> dict:
    """The app's threshold, mirror, smoothing and card-locator settings for ``kmodel``: those its
    release folder's ``app.json`` carries (a release writes all of them, chosen or evaluated with
    it), the defaults above for what a folder's file does not name."""
    from .errors import PokedexError

    out = default_app_settings()
    f = Path(kmodel).with_name(APP_FILE) if kmodel else None
    if f is None or not f.is_file():
        return out
    try:
        got = json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise PokedexError(f"{f} is not readable JSON ({e})", "restore it from the release or delete it") from e
    unknown = sorted(set(got.get("locator", {})) - set(CARD_LOCATOR))
    if unknown:
        raise PokedexError(
            f"{f}: unknown locator setting(s) {', '.join(unknown)}",
            f"use the keys of boardconfig.CARD_LOCATOR ({', '.join(CARD_LOCATOR)})",
        )
    out.update({k: got[k] for k in ("threshold", "mirror", "smoothing") if k in got})
    out["locator"].update(got.get("locator", {}))
    return out


def release_app_file(threshold: float, chosen_on: str) -> dict:
    """What a release writes as its app.json: the threshold it chose and the settings its
    end-to-end figures were measured with."""
    return {**default_app_settings(), "threshold": threshold, "chosen_on": chosen_on}


def card_config(board: Board, locate: bool = True, locator: dict | None = None) -> dict | None:
    """The ``card`` section of pokedex.json: where the art window is on a card, how to find one
    (``locator``: a release's settings, CARD_LOCATOR when none), and the centre crop (the
    profile's camera window) used when no card is found."""
    if not locate:
        return None
    from .dataset.cards import LAYOUT

    return {
        **(CARD_LOCATOR if locator is None else locator),
        "art": list(LAYOUT.art),
        "margin": LAYOUT.crop_margin,
        "centre": int(min(board.camera.window)),
    }


def make_config(
    board: Board,
    *,
    input_size: int,
    outputs: int,
    model: str | int,
    labels: str = "/sd/classes.txt",
    threshold: float = APP_THRESHOLD,
    smoothing: float = APP_SMOOTHING,
    topk: int = 3,
    uart: dict | None = None,
    locate_card: bool = True,
    model_size: int | None = None,
    mirror: bool = APP_MIRROR,
    model_runtime: int | None = None,
    locator: dict | None = None,
) -> dict:
    from .families import app_family

    api = app_family(board.firmware.family, board.name).api
    if isinstance(model, int) and not model_size:
        from .errors import PokedexError

        raise PokedexError(
            f"model at flash address 0x{model:X} without its size",
            "pass model_size (bytes of the kmodel): CanMV's load_kmodel(address, size) needs it",
        )
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
        "camera": {
            "framesize": board.camera.framesize,
            "window": window,
            "resize": window != [input_size, input_size],
            "hmirror": False,
            "vflip": False,
        },
        "threshold": threshold,
        "mirror": mirror,
        "smoothing": smoothing,
        "topk": topk,
        "uart": uart or {"baud": board.firmware.uart_baud, "tx": None, "rx": None},
        "gc_heap_size": board.firmware.gc_heap_size,
        "card": card_config(board, locate_card, locator),
    }


def write_config(path: Path, cfg: dict) -> Path:
    return atomic_write_text(path, json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
