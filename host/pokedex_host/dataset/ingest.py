"""``pokedex-host data ingest SOURCE --out DATA``: a folder of per-species folders into the raw store.

Every file is fully decoded once. Bad files (zero bytes, truncated, not an image, decompression
bombs) are copied to ``DATA/quarantine/`` and listed with the reason; images in odd modes (CMYK,
16-bit, palette, grayscale) or with EXIF rotation are stored as they are and converted in
processing; a wrong extension is corrected in the stored name. Every problem is printed and
written to ``DATA/reports/ingest-problems.csv``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PokedexError
from ..fsutil import atomic_write_text
from ..species import SPECIES_COUNT
from .images import FORMAT_EXT, ImageProblem, dhash, inspect
from .progress import Progress
from .store import RawImage, load_index, raw_dir, save_index


@dataclass
class Problem:
    path: str
    problem: str
    action: str


@dataclass
class IngestReport:
    source: str
    seen: int = 0
    added: int = 0
    duplicates: int = 0
    problems: list[Problem] = field(default_factory=list)


def parse_dex(name: str) -> int | None:
    if not name.isdigit():
        return None
    n = int(name)
    return n if 1 <= n <= SPECIES_COUNT else None


def _examine(path: str) -> tuple[str, dict | None, str | None]:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        return path, None, f"unreadable: {e.strerror}"
    try:
        info = inspect(p)
        h = dhash(p)
    except ImageProblem as e:
        return path, None, str(e)
    return (
        path,
        {
            "sha256": hashlib.sha256(data).hexdigest(),
            "format": info.format,
            "mode": info.mode,
            "width": info.width,
            "height": info.height,
            "frames": info.frames,
            "notes": list(info.notes),
            "dhash": h,
        },
        None,
    )


def ingest_folder(
    source: Path | str, data: Path, *, workers: int = 0, log=print, source_label: str | None = None
) -> IngestReport:
    source = Path(source)
    if not source.is_dir():
        raise PokedexError(
            f"ingest source {source} is not a folder",
            "pass a folder with one sub-folder per species named by dex number (0001 ... 1025)",
        )
    rep = IngestReport(source_label or str(source))
    files: list[tuple[int, Path]] = []
    try:
        entries = sorted(source.iterdir())
    except OSError as e:
        raise PokedexError(f"cannot read {source}: {e.strerror}", "check its permissions") from e
    for d in entries:
        if not d.is_dir():
            continue
        dex = parse_dex(d.name)
        if dex is None:
            rep.problems.append(
                Problem(
                    str(d),
                    f"folder name {d.name!r} is not a dex number 1..{SPECIES_COUNT}",
                    "skipped (rename it to the dex number, e.g. 0025)",
                )
            )
            continue
        try:
            for f in sorted(d.rglob("*")):
                if f.is_file():
                    files.append((dex, f))
        except OSError as e:
            rep.problems.append(Problem(str(d), f"unreadable folder: {e.strerror}", "skipped"))
    index = load_index(data)
    raw = raw_dir(data)
    quarantine = Path(data) / "quarantine" / (source_label or source.name).replace(":", "_").replace("/", "_")
    progress = Progress("ingest", len(files))
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as ex:
        results = ex.map(_examine, [str(f) for _, f in files], chunksize=16)
        for (dex, f), (_, info, err) in zip(files, results):
            rep.seen += 1
            progress.step()
            rel = str(f.relative_to(source))
            if err is not None:
                dst = quarantine / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    shutil.copyfile(f, dst)
                    action = f"quarantined to {dst}"
                except OSError:
                    action = "skipped (could not be copied)"
                rep.problems.append(Problem(str(f), err, action))
                continue
            src_ref = {"source": source_label or str(source), "path": rel}
            have = index.get(info["sha256"])
            if have is not None:
                rep.duplicates += 1
                if have.dex != dex:
                    rep.problems.append(
                        Problem(
                            str(f),
                            f"same bytes as an image of #{have.dex:04d}, filed under #{dex:04d}",
                            f"kept under #{have.dex:04d} only",
                        )
                    )
                elif src_ref not in have.sources:
                    have.sources.append(src_ref)
                continue
            ext = FORMAT_EXT[info["format"]]
            if f.suffix.lower() not in (ext, ".jpeg" if ext == ".jpg" else ext, ".tif" if ext == ".tiff" else ext):
                rep.problems.append(
                    Problem(
                        str(f),
                        f"extension {f.suffix or '(none)'} but the content is {info['format']}",
                        f"stored as {ext}",
                    )
                )
            for note in info["notes"]:
                rep.problems.append(
                    Problem(
                        str(f),
                        note.split(" converted")[0].split(" applied")[0],
                        note if "converted" in note or "applied" in note else "kept",
                    )
                )
            rel_raw = f"all_pokemon/{dex:04d}/{info['sha256'][:16]}{ext}"
            dst = raw / rel_raw
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.exists():
                tmp = dst.with_name(dst.name + ".part")
                shutil.copyfile(f, tmp)
                os.replace(tmp, dst)
            index[info["sha256"]] = RawImage(
                info["sha256"],
                dex,
                rel_raw,
                info["format"],
                info["mode"],
                info["width"],
                info["height"],
                info["frames"],
                info["dhash"],
                info["notes"],
                [src_ref],
            )
            rep.added += 1
    progress.done()
    save_index(data, index)
    write_problems(Path(data) / "reports" / "ingest-problems.csv", rep.problems)
    for p in rep.problems:
        log(f"problem: {p.path}: {p.problem} -> {p.action}")
    return rep


def write_problems(path: Path, problems: list[Problem]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "problem", "action"])
    for p in problems:
        w.writerow([p.path, p.problem, p.action])
    atomic_write_text(path, buf.getvalue())
