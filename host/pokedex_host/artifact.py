"""The build folder that ``build-kmodel`` writes, and the only code that reads or writes it.

A build (or release) folder holds ``model.kmodel`` (the file the board loads), optionally
``model.v5.kmodel`` (what a v3 file was re-emitted from), ``model.onnx`` (the float graph that was
compiled), ``classes.txt`` (one line per output, docs/specs/classes-txt.md), ``manifest.json``
(what was built, for which board, memory, verification) and ``report.md`` / ``budget.png``.

Consumers take a :class:`BuildArtifact` (``BuildArtifact.load(folder_or_file)``) and use its typed
fields; nothing else indexes ``manifest.json`` or parses ``classes.txt``. Folders of every
manifest version the project has written load (release v0's included). :func:`write_manifest`
is the one writer of the file; the build pipeline (``compile/manifest.py``) supplies what goes in.

Why here, at the top of the package and not in ``compile/`` or ``kmodel/``: the folder is a
format shared by the pipeline that writes it and by the emulator, the device commands, evaluate
and the release step that read it, so it sits below all of them (like ``species`` and
``fsutil``, which it uses). It is not a kmodel format: the kmodel is one file in it, beside the
class list and the manifest, so ``kmodel/`` (the file formats the board loads) is not its place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import PokedexError
from .fsutil import atomic_write_text

MANIFEST = "manifest.json"
FORMAT = "pokedex-k210/kmodel-artifact"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class BuildArtifact:
    folder: Path
    input_size: int  # the model's square input (pixels)
    input_range: tuple[float, float]  # the float range model.onnx takes: (0, 255) once the /255 is folded in
    classes: list[int]  # dex number of each output
    names: list[str]  # species name of each output
    kmodel_version: int
    board: str
    runtime_bytes: int  # run-time RAM on the board (file + main memory + input + output)
    source: Path | None  # the model it was built from, as given to build-kmodel
    verification: dict | None = None
    manifest: dict = field(default_factory=dict, repr=False)  # the whole document, for reports

    # -- the files ------------------------------------------------------------------------------
    @property
    def kmodel(self) -> Path:
        return self.folder / "model.kmodel"

    @property
    def v5_kmodel(self) -> Path | None:
        p = self.folder / "model.v5.kmodel"
        return p if p.is_file() else None

    @property
    def onnx(self) -> Path | None:
        p = self.folder / "model.onnx"
        return p if p.is_file() else None

    @property
    def classes_file(self) -> Path:
        return self.folder / "classes.txt"

    @property
    def float_model(self) -> Path | None:
        """The float checkpoint: a release's own model.pt, else the source the build names."""
        own = self.folder / "model.pt"
        if own.is_file():
            return own
        return self.source if self.source is not None and self.source.is_file() else None

    # -- reading --------------------------------------------------------------------------------
    @staticmethod
    def folder_of(path: Path) -> Path:
        path = Path(path)
        return path if path.is_dir() else path.parent

    @classmethod
    def exists(cls, path: Path) -> bool:
        return (cls.folder_of(path) / MANIFEST).is_file()

    @classmethod
    def load(cls, path: Path) -> "BuildArtifact":
        """The artifact of ``path`` (the folder, or any file in it such as its model.kmodel)."""
        from .species import read_classes_txt

        folder = cls.folder_of(path)
        mf = folder / MANIFEST
        if not mf.is_file():
            raise PokedexError(
                f"{folder} has no {MANIFEST}: not a build-kmodel output folder",
                "pass the model.kmodel of a build-kmodel (or release) folder, with the files beside it",
            )
        try:
            m = json.loads(mf.read_text(encoding="utf-8"))
            shape = m["input"]["shape"]
            input_size = int(shape[2])
            version = int(m["kmodel"]["version"])
        except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
            raise PokedexError(
                f"{mf} is damaged or not a build manifest ({type(e).__name__}: {e})",
                "rebuild the folder with pokedex-host build-kmodel",
            ) from e
        if m.get("format", FORMAT) != FORMAT:
            raise PokedexError(
                f"{mf} is a {m.get('format')!r} document, not a build manifest", "pass a build-kmodel output folder"
            )
        cf = folder / "classes.txt"
        if cf.is_file():
            rows = read_classes_txt(cf)
        else:  # outputs numbered 1..N
            rows = [(i + 1, f"#{i + 1:04d}") for i in range(int(m.get("classes") or 0))]
        folded = bool((m.get("export") or {}).get("scale_folded"))
        src = (m.get("source") or {}).get("path") if isinstance(m.get("source"), dict) else None
        return cls(
            folder=folder,
            input_size=input_size,
            input_range=(0.0, 255.0) if folded else (0.0, 1.0),
            classes=[d for d, _ in rows],
            names=[n for _, n in rows],
            kmodel_version=version,
            board=str((m.get("board") or {}).get("name", "")),
            runtime_bytes=int((m.get("memory") or {}).get("runtime_total", 0)),
            source=Path(src) if src else None,
            verification=m.get("verification"),
            manifest=m,
        )

    @classmethod
    def find(cls, path: Path) -> "BuildArtifact | None":
        """The artifact around ``path`` when there is one (a bare .kmodel has none)."""
        return cls.load(path) if cls.exists(path) else None


def write_manifest(folder: Path, document: dict) -> Path:
    """``folder/manifest.json`` from ``document`` (the build's figures), stamped with this format's
    name and version first; written atomically."""
    manifest = {"format": FORMAT, "version": MANIFEST_VERSION, **document}
    return atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
