"""``data ingest npm:PACKAGE``: sprite packages from the npm registry.

The package's metadata names its tarball and the registry's integrity hash (SRI, sha512); the
tarball is downloaded with resume (HTTP Range on a ``.part`` file), verified, and unpacked
without letting any member escape the target folder (absolute paths, ``..``, links and devices
are refused and reported). Image files are matched to species by dex number or name; SVGs are
rasterised (cairosvg), animated GIFs give their distinct frames, and every sprite is cropped to
its visible pixels on alpha. The results are ingested like a folder (``ingest_folder``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from PIL import Image, ImageSequence

from ..errors import PokedexError
from .augment import crop_to_alpha
from .ingest import IngestReport, Problem, ingest_folder
from .names import dex_from_name

REGISTRY = "https://registry.npmjs.org"
IMAGE_EXT = {".png", ".gif", ".svg", ".jpg", ".jpeg", ".webp"}


def registry() -> str:
    return os.environ.get("POKEDEX_NPM_REGISTRY", REGISTRY).rstrip("/")


def _get(url: str, headers: dict | None = None, timeout: float = 60):
    req = urllib.request.Request(url, headers={"User-Agent": "pokedex-k210", **(headers or {})})
    return urllib.request.urlopen(req, timeout=timeout)


def _split_spec(spec: str) -> tuple[str, str | None]:
    """``pkg``, ``pkg@1.2.3``, ``@scope/pkg@1.2.3`` -> (name, version or None)."""
    at = spec.rfind("@")
    return (spec[:at], spec[at + 1 :]) if at > 0 else (spec, None)


def package_meta(spec: str) -> dict:
    from urllib.parse import quote

    name, version = _split_spec(spec)
    url = f"{registry()}/{quote(name, safe='@')}/{version or 'latest'}"
    try:
        with _get(url) as r:
            meta = json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise PokedexError(f"npm registry: {spec}: HTTP {e.code}", "check the package name (and version)") from e
    except (urllib.error.URLError, OSError) as e:
        raise PokedexError(
            f"npm registry unreachable for {spec}: {e}", "check the network, or ingest a local folder"
        ) from e
    if "dist" not in meta or "tarball" not in meta["dist"]:
        raise PokedexError(f"npm registry: {spec} has no tarball in its metadata")
    return meta


def download(url: str, dest: Path, integrity: str | None, log=print) -> Path:
    """Download ``url`` to ``dest`` with resume; verify the SRI ``integrity`` (sha512-…)."""
    if dest.exists() and _matches(dest, integrity):
        return dest
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        with _get(url, headers) as r:
            mode = "ab" if have and r.status == 206 else "wb"
            if have and mode == "wb":
                log(f"server ignored the resume request; downloading {url} again")
            elif have:
                log(f"resuming {url} at byte {have:,}")
            with open(part, mode) as f:
                while chunk := r.read(1 << 16):
                    f.write(chunk)
    except (urllib.error.URLError, OSError) as e:
        raise PokedexError(f"download of {url} failed: {e}", "run the same command again: it resumes") from e
    if not _matches(part, integrity):
        part.unlink()
        raise PokedexError(
            f"{url}: the download does not match the registry's integrity hash {integrity}",
            "run again; if it repeats, the package or a proxy is corrupting it",
        )
    os.replace(part, dest)
    return dest


def _matches(path: Path, integrity: str | None) -> bool:
    if not integrity:
        return True
    algo, _, b64 = integrity.partition("-")
    if algo not in ("sha512", "sha384", "sha256", "sha1"):
        raise PokedexError(f"unknown integrity algorithm {algo!r}")
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return base64.b64encode(h.digest()).decode() == b64


def safe_extract(tgz: Path, dest: Path) -> list[Problem]:
    """Extract regular files and folders only, never outside ``dest``; report what was refused."""
    problems = []
    root = dest.resolve()
    with tarfile.open(tgz, "r:*") as tar:
        for m in tar.getmembers():
            target = (dest / m.name).resolve()
            if m.name.startswith("/") or ".." in Path(m.name).parts or (root not in target.parents and target != root):
                problems.append(Problem(f"{tgz.name}:{m.name}", "archive member escapes the target folder", "refused"))
                continue
            if m.issym() or m.islnk() or m.isdev() or m.isfifo():
                problems.append(Problem(f"{tgz.name}:{m.name}", "archive member is a link or device", "refused"))
                continue
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif m.isfile():
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(m)
                with open(target, "wb") as f:
                    f.write(src.read() if src else b"")
    return problems


def sprite_frames(path: Path) -> list[Image.Image]:
    """RGBA frames of an image file: SVGs rasterised, distinct GIF frames, cropped to alpha."""
    if path.suffix.lower() == ".svg":
        try:
            import cairosvg
        except (ImportError, OSError) as e:
            raise PokedexError(
                "SVG sprites need cairosvg and the cairo library",
                "pip install cairosvg; on Debian/Ubuntu also apt install libcairo2",
            ) from e
        png = cairosvg.svg2png(url=str(path), output_width=256)
        frames = [Image.open(io.BytesIO(png)).convert("RGBA")]
    else:
        with Image.open(path) as im:
            seen, frames = set(), []
            for fr in ImageSequence.Iterator(im):
                rgba = fr.convert("RGBA")
                key = hashlib.sha256(rgba.tobytes()).hexdigest()
                if key not in seen:
                    seen.add(key)
                    frames.append(rgba.copy())
    return [crop_to_alpha(f) for f in frames if f.getchannel("A").getbbox()]


def ingest_npm(spec: str, data: Path, *, workers: int = 0, log=print) -> IngestReport:
    meta = package_meta(spec)
    label = f"npm:{meta.get('name', spec)}@{meta.get('version', '?')}"
    cache = Path(data) / "cache" / "npm"
    cache.mkdir(parents=True, exist_ok=True)
    tgz = download(
        meta["dist"]["tarball"], cache / Path(meta["dist"]["tarball"]).name, meta["dist"].get("integrity"), log
    )
    work = cache / (tgz.name + ".d")
    if work.exists():
        import shutil

        shutil.rmtree(work)
    problems = safe_extract(tgz, work / "pkg")
    staging = work / "species"
    n = 0
    for f in sorted((work / "pkg").rglob("*")):
        if not f.is_file() or f.suffix.lower() not in IMAGE_EXT:
            continue
        rel = f.relative_to(work / "pkg")
        dex = dex_from_name(f.stem)
        if dex is None:
            problems.append(Problem(f"{label}:{rel}", "file name names no species", "skipped"))
            continue
        try:
            frames = sprite_frames(f)
        except (OSError, ValueError, SyntaxError) as e:
            problems.append(Problem(f"{label}:{rel}", f"cannot decode: {e}", "skipped"))
            continue
        for i, fr in enumerate(frames):
            out = (
                staging / f"{dex:04d}" / (str(rel).replace("/", "__") + (f"__f{i}" if len(frames) > 1 else "") + ".png")
            )
            out.parent.mkdir(parents=True, exist_ok=True)
            fr.save(out)
            n += 1
    log(f"{label}: {n} sprites from {tgz.name}")
    if not n:
        raise PokedexError(
            f"{label}: no sprite in the package could be matched to a species",
            "check the package: file names must be dex numbers or species names",
        )
    rep = ingest_folder(staging, data, workers=workers, log=log, source_label=label)
    rep.problems = problems + rep.problems
    for p in problems:
        log(f"problem: {p.path}: {p.problem} -> {p.action}")
    from .ingest import write_problems

    write_problems(Path(data) / "reports" / "ingest-problems.csv", rep.problems)
    return rep
