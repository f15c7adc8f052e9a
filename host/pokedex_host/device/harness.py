"""``pokedex-host bench``: stream a test split to the bench server, one JSONL row per image.

Rows are appended and fsynced one by one, so an interrupted run (unplugged board, Ctrl-C, a
reset) loses nothing measured and ``--resume`` continues where it stopped; each image is tried
again after a timeout, and after a reset the harness says HELLO again before going on. The input
bytes are exactly what the host simulator gets (docs/specs/model-input.md), so device and
simulator can be compared image by image.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..compile.calibration import class_folders, round_robin
from ..errors import PokedexError
from ..fsutil import atomic_write_text, sha256_file
from ..preprocess import BadImage, load_image
from .client import BenchClient, BoardError
from .transport import TransportError


@dataclass(frozen=True)
class BenchItem:
    file: str  # relative to the data folder
    label: int | None  # dex from the folder name


def select_items(data: Path, count: int | None, seed: int = 0) -> list[BenchItem]:
    groups = class_folders(Path(data))
    if not groups:
        raise PokedexError(
            f"{data} has no images", "pass --data DIR with per-species folders (e.g. DATA/processed/classify/test)"
        )
    picks = round_robin(groups, seed)
    if count:
        picks = picks[:count]
    return [BenchItem(str(f.relative_to(data)), int(k) if k.isdigit() else None) for k, f in picks]


def link_seconds_per_image(size: int, baud: int) -> float:
    """Time the UART needs for one INFER frame (10 bits a byte: start + 8 data + stop)."""
    payload = 6 + 3 * size * size
    return (10 + payload + 4) * 10 / baud


def load_done(jsonl: Path) -> dict[str, dict]:
    done: dict[str, dict] = {}
    if jsonl.exists():
        for line in jsonl.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash mid-write: that image is measured again
            done[row["file"]] = row
    return done


def _drop_partial_line(jsonl: Path) -> None:
    """A crash mid-write leaves a last line without its newline: cut it, so appends stay whole."""
    if not jsonl.exists():
        return
    data = jsonl.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(jsonl, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def run_bench(
    client: BenchClient,
    data: Path,
    items: list[BenchItem],
    classes: list[int],
    size: int,
    out: Path,
    *,
    kmodel: Path,
    resume: bool,
    topk: int = 5,
    reconnects: int = 5,
    log=print,
    stop_after: int | None = None,
) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    jsonl = out / "results.jsonl"
    meta = {
        "kmodel": str(kmodel),
        "kmodel_sha256": sha256_file(kmodel),
        "data": str(data),
        "count": len(items),
        "items_sha256": hashlib.sha256("\n".join(i.file for i in items).encode()).hexdigest(),
    }
    run_json = out / "run.json"
    if run_json.exists() and jsonl.exists() and jsonl.stat().st_size:
        old = json.loads(run_json.read_text())
        if not resume:
            raise PokedexError(f"{out} already holds a bench run", "pass --resume to continue it, or another --out")
        if old.get("kmodel_sha256") != meta["kmodel_sha256"] or old.get("items_sha256") != meta["items_sha256"]:
            raise PokedexError(f"{out} holds a run of another model or image list", "use another --out")
    atomic_write_text(run_json, json.dumps(meta, indent=2))
    _drop_partial_line(jsonl)
    done = load_done(jsonl)
    todo = [i for i in items if i.file not in done]
    log(f"bench: {len(items)} images, {len(done)} already measured, {len(todo)} to go")
    client.hello()
    with open(jsonl, "a", encoding="utf-8") as f:
        for n, item in enumerate(todo):
            if stop_after is not None and n >= stop_after:
                break
            try:
                x = load_image(Path(data) / item.file, size)
            except BadImage as e:
                log(f"warning: skipping {item.file}: {e}")
                continue
            for attempt in range(reconnects + 1):
                t0 = time.monotonic()
                try:
                    res = client.infer(x.tobytes(), size, size, topk)
                    break
                except TransportError as e:
                    if attempt == reconnects:
                        raise PokedexError(
                            f"board stopped answering at {item.file}: {e.message}",
                            "check the board; then run the same command with --resume",
                        ) from e
                    log(f"no answer for {item.file} ({e.message}); saying HELLO again ({attempt + 1}/{reconnects})")
                    client.t.drain_input()
                    try:
                        client.hello()
                    except TransportError:
                        time.sleep(1.0)
                except BoardError as e:
                    raise PokedexError(f"the board refused {item.file}: {e}", "is the right model on the board?") from e
            row = {
                "file": item.file,
                "label": item.label,
                "top": [[classes[i] if i < len(classes) else None, round(s, 6)] for i, s in res.top],
                "kpu_us": res.kpu_us,
                "total_us": res.total_us,
                "host_s": round(time.monotonic() - t0, 4),
                "attempts": attempt + 1,
            }
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
            if (n + 1) % 10 == 0:
                log(f"bench: {len(done) + n + 1}/{len(items)}")
    return jsonl
