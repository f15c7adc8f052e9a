#!/usr/bin/env python3
"""The card locator alone (firmware/pk_card.py ``find_card``) on a card-frame set, in the
emulator's ``image`` module: no classifier, no app, so a settings change is measured in about a
minute. What ``bench-cards`` reports as "card found" comes from the same function inside the app.

    .venv/bin/python tools/locator_bench.py data/camera/validation-cards
    .venv/bin/python tools/locator_bench.py data/camera/validation-cards --set blob_look=false --set max_cos=1.0

Prints, for card frames, the share found (IoU >= 0.5 with the true corners), missed with no quad
and missed with a wrong quad; for empty frames, how many were taken for a card. Choose settings on
the validation frames (`data camera-set --kind card --split validation --seed 1 --limit 600`) and
report them on the test frames once.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _modules():
    spec = importlib.util.spec_from_file_location("image", ROOT / "host/pokedex_host/emulator/mods/image.py")
    image = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(image)
    sys.modules["image"] = image  # what the firmware imports
    spec = importlib.util.spec_from_file_location("pk_card", ROOT / "firmware/pk_card.py")
    pk_card = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pk_card)
    return image, pk_card


def locate_all(set_dir: Path, overrides: dict | None = None, count: int | None = None) -> dict:
    from pokedex_host.boardconfig import card_config
    from pokedex_host.boards import get_board
    from pokedex_host.emulator.bench_cards import quad_iou, read_truth
    from pokedex_host.pixels import to_rgb565

    image, pk_card = _modules()
    cfg = {**card_config(get_board("maix-bit")), **(overrides or {})}
    truth = read_truth(set_dir)
    if count:
        truth = truth[:: max(1, len(truth) // count)][:count]
    found, none, wrong, false_cards, empty, missed = 0, 0, 0, 0, 0, []
    t0 = time.time()
    for t in truth:
        with Image.open(set_dir / t["file"]) as im:
            a = to_rgb565(np.asarray(im.convert("RGB")))  # what the sensor hands the firmware
        c = pk_card.find_card(image.Image._from_array(a), cfg)
        if not t.get("corners"):
            empty += 1
            false_cards += c is not None
        elif c is not None and quad_iou(c, t["corners"]) >= 0.5:
            found += 1
        else:
            none += c is None
            wrong += c is not None
            missed.append(t["file"])
    cards = found + none + wrong
    return {
        "set": str(set_dir),
        "card_frames": cards,
        "found_pct": 100.0 * found / max(1, cards),
        "missed_no_quad": none,
        "missed_wrong_quad": wrong,
        "empty_frames": empty,
        "empty_taken_for_a_card": false_cards,
        "seconds": time.time() - t0,
        "missed": missed,
    }


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("set", type=Path, help="a card-frame set (truth.jsonl + frames/)")
    ap.add_argument(
        "--set",
        dest="over",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a card-locator setting (JSON value), e.g. blob_look=false",
    )
    ap.add_argument("--count", type=int, help="frames to use, spread over the set")
    ap.add_argument("--missed", action="store_true", help="also list the missed card frames")
    a = ap.parse_args(argv)
    over = {}
    for kv in a.over:
        k, _, v = kv.partition("=")
        over[k] = _value(v)
    r = locate_all(a.set, over, a.count)
    print(
        f"{r['set']}{' ' + json.dumps(over) if over else ''}: card found {r['found_pct']:.1f} % of "
        f"{r['card_frames']} (missed: {r['missed_no_quad']} with no quad, {r['missed_wrong_quad']} with a wrong one); "
        f"{r['empty_taken_for_a_card']} of {r['empty_frames']} empty frames taken for a card ({r['seconds']:.0f} s)"
    )
    if a.missed:
        print("\n".join(r["missed"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
