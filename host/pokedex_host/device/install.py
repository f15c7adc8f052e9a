"""``pokedex-host install``: the camera app (or the bench server), its config, labels and model
onto the board's /sd or /flash over MicroPython's raw REPL."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..artifact import BuildArtifact
from ..boards import Board
from ..errors import PokedexError


def install_files(board: Board, art: BuildArtifact, dest: str, bench_app: bool, config: Path) -> list[tuple[Path, str]]:
    """(host file, board path) pairs, in copy order: the app of the board's firmware family, its
    pokedex.json, classes.txt, the model."""
    from ..families import app_family
    from ..paths import firmware_dir

    fam = app_family(board.firmware.family, board.name)
    fw = firmware_dir()
    return (
        [(fw / ("bench.py" if bench_app else "main.py"), f"{dest}/main.py")]
        + [(fw / f, f"{dest}/{f}") for f in fam.app_files]
        + [
            (config, f"{dest}/pokedex.json"),
            (art.classes_file, f"{dest}/classes.txt"),
            (art.kmodel, f"{dest}/model.kmodel"),
        ]
    )


def _print(msg: str, nl: bool = True) -> None:
    print(msg, end="\n" if nl else "", flush=True)


def install(
    board: Board, kmodel: Path, port: str | None, dest: str, bench_app: bool, dry_run: bool, echo=_print, transport=None
) -> bool:
    """Copy everything; returns False on a dry run (nothing copied). ``echo(msg, nl=True)``;
    ``transport``: an open link to use instead of the serial port (tests)."""
    from ..boardconfig import app_settings, make_config, write_config
    from ..families import app_support
    from .flash_plan import check_kmodel
    from .ports import pick_port
    from .repl import RawRepl
    from .transport import SerialTransport

    kmodel = Path(kmodel)
    if not kmodel.is_file():
        raise PokedexError(f"kmodel {kmodel} does not exist", "pass the model.kmodel of a build-kmodel output folder")
    for w in check_kmodel(board, kmodel, kmodel.read_bytes())[1] + app_support(board, bench_app):
        echo(f"WARNING: {w}")
    art = BuildArtifact.load(kmodel)
    if not art.classes_file.is_file():
        raise PokedexError(f"{art.classes_file} is missing", "pass the model.kmodel of a build-kmodel output folder")
    with tempfile.TemporaryDirectory() as tmp:
        app = app_settings(kmodel)
        cfg = make_config(
            board,
            input_size=art.input_size,
            outputs=len(art.classes),
            model=f"{dest}/model.kmodel",
            labels=f"{dest}/classes.txt",
            threshold=app["threshold"],
            mirror=app["mirror"],
            smoothing=app["smoothing"],
            model_runtime=art.runtime_bytes or None,
            locator=app["locator"],
        )
        write_config(Path(tmp) / "pokedex.json", cfg)
        files = install_files(board, art, dest, bench_app, Path(tmp) / "pokedex.json")
        for src, dst in files:
            echo(f"{src} -> {dst} ({src.stat().st_size:,} B)")
        if dry_run:
            return False
        t = transport or SerialTransport(pick_port(port), board.firmware.uart_baud)
        try:
            repl = RawRepl(t)
            for src, dst in files:
                repl.put(src, dst, progress=lambda a, n: echo(f"\r  {a:,}/{n:,} B", nl=False))
                echo("")
            repl.exit()
        finally:
            t.close()
    return True
