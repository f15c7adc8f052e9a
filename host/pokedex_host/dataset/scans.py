"""Official card scans (``../shared/data/cards``) as a data source: labels, a split by set, art crops.

``pokedex-host data cards SOURCE --data DATA`` reads ``SOURCE/labels.csv`` (file, card_id, set,
source, language, name, dex, ...), decodes every image once and writes ``DATA/processed/cards/
scans.csv``: one row per usable card with its split, era, language and kind. Nothing is copied:
rows name the image under SOURCE, so no card image or crop is ever written inside the project.
Rows that cannot be used (missing or broken file, a dex out of range, a set reserved for
evaluation) go to ``DATA/reports/cards-problems.csv`` with the reason, and are printed.

The split is **by set** (:data:`SET_SPLIT`): a whole set goes to validation or test, so a test
card's illustration was never trained on, and each split spans the eras and languages. Sets that
are not named train. Because reprint collections carry art from other sets, a validation or test
card whose art window matches a training card's (perceptual hash within :data:`SAME_ART_BITS`
bits) is moved to train, and the count is reported.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import PokedexError
from ..fsutil import atomic_write_text
from ..species import SPECIES_COUNT
from .cards import LAYOUT, CardLayout

SPLITS = ("train", "validation", "test")

# Whole sets held out. Chosen so that each held-out split has every era and language of the
# source: Wizards-era English, Sun & Moon / Sword & Shield Traditional Chinese, Scarlet & Violet /
# Mega Japanese. Evolutions (xy12) re-draws Base Set art and Base Set 2 (base4) reprints it, so
# both stay in train with the sets they copy.
SET_SPLIT: dict[str, str] = {
    "neo2": "validation",
    "AS5b": "validation",
    "S5I": "validation",
    "M2": "validation",
    "SV11W": "validation",
    "gym2": "test",
    "neo3": "test",
    "AS6b": "test",
    "SC2b": "test",
    "S6K": "test",
    "M3": "test",
    "SV10": "test",
    "SV11B": "test",
}

# Reserved for evaluation outside this project, never to be ingested: Scarlet & Violet 151 and
# Temporal Forces, with their Japanese prints.
RESERVED_SETS = frozenset({"sv3pt5", "sv5", "SV2a", "SV5K", "SV5M", "MEW", "TEF"})

ERAS = {
    "pokemon_card_images": "wizards",
    "Pokemon-Card-Scanner": "xy",
    "ptcg-cards": "sm-swsh",
    "ptcg-card-viewer": "sv-mega",
}

# name suffixes of cards with a rule box (these are often full-art or stylised)
_RULE_BOX = ("EX", "ex", "GX", "V", "VMAX", "VSTAR", "BREAK", "LV.X", "δ", "Prime", "LEGEND")

SAME_ART_BITS = 10  # of the 64-bit hash of the art window


@dataclass(frozen=True)
class Scan:
    path: str  # the image, absolute
    card_id: str
    set: str
    source: str
    language: str
    name: str
    dex: int
    split: str = "train"
    era: str = ""
    kind: str = "regular"  # or "rule-box" (EX, GX, V, VMAX, ex...)

    @property
    def group(self) -> str:
        """What the benchmarks report by: era and card kind."""
        return f"{self.era}/{self.kind}"


def card_kind(name: str) -> str:
    """ "rule-box" for a card whose name carries a rule-box suffix (``Zacian V``, ``M Venusaur EX``,
    and in Chinese or Japanese prints the suffix straight after the name, ``蒼響V``, ``リザードンex``),
    else "regular"."""
    words = name.replace("-", " ").split()
    if not words:
        return "regular"
    if words[-1] in _RULE_BOX or words[0] == "M":
        return "rule-box"
    last = words[-1]
    for suffix in _RULE_BOX:
        head = last[: -len(suffix)]
        if last.endswith(suffix) and head and not head[-1].isascii():
            return "rule-box"
    return "regular"


def art_window(card: Image.Image, layout: CardLayout = LAYOUT, margin: float | None = None) -> Image.Image:
    """The firmware's crop of a perfectly located card: the art window grown by the crop margin."""
    m = layout.crop_margin if margin is None else margin
    x0, y0, x1, y1 = layout.art
    mx, my = (x1 - x0) * m, (y1 - y0) * m
    w, h = card.size
    box = (
        max(0, round((x0 - mx) * w)),
        max(0, round((y0 - my) * h)),
        min(w, round((x1 + mx) * w)),
        min(h, round((y1 + my) * h)),
    )
    return card.crop(box)


def art_hash(card: Image.Image) -> int:
    """64-bit difference hash of the card's art window (what 'the same illustration' is tested by)."""
    g = np.asarray(art_window(card, margin=-0.05).convert("L").resize((9, 8), Image.BILINEAR), np.int16)
    bits = (g[:, 1:] > g[:, :-1]).flatten()
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def _read_labels(source: Path) -> list[dict]:
    f = source / "labels.csv"
    if not f.is_file():
        raise PokedexError(
            f"{f} does not exist", "point at a folder with labels.csv and images/ (../shared/data/cards)"
        )
    with f.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    need = {"file", "card_id", "set", "source", "language", "name", "dex"}
    if not rows or not need <= set(rows[0]):
        raise PokedexError(
            f"{f} lacks the columns {', '.join(sorted(need - set(rows[0] if rows else ())))}",
            "labels.csv needs file, card_id, set, source, language, name, dex",
        )
    return rows


def ingest_scans(source: Path, data: Path, log=print) -> dict[str, list[Scan]]:
    """Read, check and split the scans under ``source``; writes ``DATA/processed/cards/scans.csv``."""
    source, data = Path(source).resolve(), Path(data)
    problems: list[tuple[str, str]] = []
    scans: list[Scan] = []
    hashes: dict[str, int] = {}
    seen_ids: set[str] = set()
    for row in _read_labels(source):
        p = source / row["file"]
        why = None
        if row["set"] in RESERVED_SETS:
            why = f"set {row['set']} is reserved for evaluation: never ingested"
        elif not row["dex"].isdigit() or not 1 <= int(row["dex"]) <= SPECIES_COUNT:
            why = f"dex {row['dex']!r} is not 1-{SPECIES_COUNT}"
        elif row["card_id"] in seen_ids:
            why = f"card id {row['card_id']} appears twice"
        elif not p.is_file():
            why = "file missing"
        if why is None:
            try:
                with Image.open(p) as im:
                    im.load()
                    if im.width < 60 or im.height < 80:
                        why = f"{im.width}x{im.height} px is too small for a card"
                    else:
                        hashes[row["card_id"]] = art_hash(im.convert("RGB"))
            except Exception as e:  # noqa: BLE001 - any decoder failure is the file's problem
                why = f"cannot decode: {type(e).__name__}"
        if why:
            problems.append((row["file"], why))
            log(f"problem: {p}: {why} -> left out")
            continue
        seen_ids.add(row["card_id"])
        scans.append(
            Scan(
                str(p),
                row["card_id"],
                row["set"],
                row["source"],
                row["language"],
                row["name"],
                int(row["dex"]),
                SET_SPLIT.get(row["set"], "train"),
                ERAS.get(row["source"], row["source"]),
                card_kind(row["name"]),
            )
        )
    scans, moved = _move_shared_art(scans, hashes)
    if moved:
        log(f"{moved} validation/test cards share their art with a training card: moved to train")
    out = data / "processed" / "cards" / "scans.csv"
    names = [f.name for f in fields(Scan)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, names)
    w.writeheader()
    for s in scans:
        w.writerow(asdict(s))
    atomic_write_text(out, buf.getvalue())
    buf = io.StringIO()
    csv.writer(buf).writerows([("file", "problem"), *problems])
    atomic_write_text(data / "reports" / "cards-problems.csv", buf.getvalue())
    by = split_scans(scans)
    for k in SPLITS:
        log(
            f"cards {k}: {len(by[k])} cards of {len({s.dex for s in by[k]})} species, "
            f"sets {', '.join(sorted({s.set for s in by[k]})) if k != 'train' else str(len({s.set for s in by[k]}))}"
        )
    return by


def _move_shared_art(scans: list[Scan], hashes: dict[str, int]) -> tuple[list[Scan], int]:
    train = np.array([hashes[s.card_id] for s in scans if s.split == "train"], np.uint64)
    out, moved = [], 0
    for s in scans:
        if s.split != "train" and len(train):
            d = np.array([bin(int(v)).count("1") for v in np.bitwise_xor(train, np.uint64(hashes[s.card_id]))])
            if d.min() <= SAME_ART_BITS:
                s = Scan(**{**asdict(s), "split": "train"})
                moved += 1
        out.append(s)
    return out, moved


def split_scans(scans: list[Scan]) -> dict[str, list[Scan]]:
    return {k: [s for s in scans if s.split == k] for k in SPLITS}


def load_scans(data: Path, split: str | None = None) -> list[Scan]:
    """The ingested scans (of one split); a clear error when ``data cards`` has not run."""
    f = Path(data) / "processed" / "cards" / "scans.csv"
    if not f.is_file():
        raise PokedexError(f"{f} does not exist", f"run `pokedex-host data cards ../shared/data/cards --data {data}`")
    with f.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = [Scan(**{**r, "dex": int(r["dex"])}) for r in rows]
    missing = [s.path for s in out if not Path(s.path).is_file()]
    if missing:
        raise PokedexError(
            f"{len(missing)} card images of {f} are gone (e.g. {missing[0]})",
            "run `pokedex-host data cards SOURCE` again where the scans are",
        )
    return [s for s in out if split is None or s.split == split]


def open_card(path: str | Path) -> Image.Image:
    """A scan as an RGBA card with rounded corners (the scans are rectangles; a card's corner
    radius is about 4 % of its width)."""
    from PIL import ImageDraw

    with Image.open(path) as im:
        card = im.convert("RGBA")
    mask = Image.new("L", card.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle([0, 0, card.width - 1, card.height - 1], max(2, card.width // 24), fill=255)
    card.putalpha(mask)
    return card


GROUPS_FILE = "groups.json"  # beside a set made from scans: file stem -> "era/kind"


def scan_set(
    data: Path,
    split: str,
    out: Path,
    *,
    kind: str = "art",
    size: int = 128,
    seed: int = 0,
    no_card_every: int = 10,
    limit: int | None = None,
) -> int:
    """A fixed, seeded evaluation set of the real cards of ``split``; returns the number of cards.

    kind ``art``: the firmware's crop of each card held in front of the camera
    (``cards.scan_view``), an ImageFolder ``OUT/<dex>/<card_id>.png`` — the classifier alone;
    ``card``: QVGA frames of each card held in a hand (``cards.held_card_frame``) and a frame with
    no card every ``no_card_every``, ``OUT/frames/`` with ``OUT/truth.jsonl`` (file, dex, corners,
    style = era/kind) for ``bench-cards``. Both write ``OUT/groups.json`` (card -> era/kind).
    Written under DATA (never inside the project: these are images made from the scans)."""
    import json

    from ..fsutil import atomic_write_bytes
    from .cards import card_frame, held_card_frame, scan_view

    if kind not in ("art", "card"):
        raise PokedexError(f"unknown card-scan set kind {kind!r}", "use art or card")
    scans = load_scans(data, split)
    if limit:
        scans = scans[:: max(1, len(scans) // limit)][:limit]
    out = Path(out)
    truth, groups = [], {}
    for n, s in enumerate(scans):
        rng = np.random.default_rng([seed, 29, n])
        card = open_card(s.path)
        buf = io.BytesIO()
        groups[s.card_id] = s.group
        if kind == "art":
            Image.fromarray(scan_view(card, rng, size)).save(buf, "PNG")
            atomic_write_bytes(out / f"{s.dex:04d}" / f"{s.card_id}.png", buf.getvalue())
            continue
        img, corners = held_card_frame(card, rng)
        Image.fromarray(img).save(buf, "PNG")
        atomic_write_bytes(out / "frames" / f"{s.card_id}.png", buf.getvalue())
        truth.append(
            {
                "file": f"frames/{s.card_id}.png",
                "dex": s.dex,
                "style": s.group,
                "corners": [[round(float(v), 2) for v in p] for p in corners],
            }
        )
        if no_card_every and (n + 1) % no_card_every == 0:
            buf = io.BytesIO()
            img, _ = card_frame(None, np.random.default_rng([seed, 7, n]))
            Image.fromarray(img).save(buf, "PNG")
            atomic_write_bytes(out / "frames" / f"none_{n:05d}.png", buf.getvalue())
            truth.append({"file": f"frames/none_{n:05d}.png", "dex": 0, "style": "none", "corners": None})
    if kind == "card":
        atomic_write_text(out / "truth.jsonl", "".join(json.dumps(t) + "\n" for t in truth))
    atomic_write_text(out / GROUPS_FILE, json.dumps(groups, indent=0, sort_keys=True))
    return len(scans)


def groups_for(files: list[str]) -> dict[str, str] | None:
    """era/kind of each image of a set made by :func:`scan_set`, or None for other sets."""
    import json

    if not files:
        return None
    for parent in list(Path(files[0]).parents)[:2]:
        g = parent / GROUPS_FILE
        if g.is_file():
            groups = json.loads(g.read_text())
            return {f: groups.get(Path(f).stem, "unknown") for f in files}
    return None
