"""Wiring for ``pokedex-host bench``: a port or an emulated board, the harness, the report."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from ..artifact import BuildArtifact
from ..boards import Board
from ..errors import PokedexError
from .bench_report import build_report, host_reference
from .client import BenchClient
from .harness import link_seconds_per_image, load_done, run_bench, select_items
from .transport import SerialTransport


def read_classes(kmodel: Path) -> list[int]:
    art = BuildArtifact.load(kmodel)
    if not art.classes_file.is_file():
        raise PokedexError(f"{art.classes_file} is missing", "pass the model.kmodel of a build-kmodel output folder")
    return art.classes


def model_size(kmodel: Path) -> int:
    return BuildArtifact.load(kmodel).input_size


@contextlib.contextmanager
def emulated_board(board: Board, kmodel: Path, out: Path, log=print):
    """An emulated board running bench.py behind a pty; yields the port path."""
    import tty  # Unix-only: imported only when the emulator is used

    from ..emulator.host import emulate

    master, slave = os.openpty()
    tty.setraw(slave)
    tty.setraw(master)
    stop = threading.Event()
    result: dict = {}
    t = threading.Thread(
        target=lambda: result.setdefault(
            "r", emulate(board, kmodel, None, out / "emulator", script="bench.py", uart_fd=master, stop=stop, log=log)
        ),
        daemon=True,
    )
    t.start()
    try:
        yield os.ttyname(slave)
    finally:
        stop.set()
        t.join(30)
        os.close(master)
        os.close(slave)


def bench(
    board: Board,
    kmodel: Path,
    data: Path,
    out: Path,
    *,
    port: str | None,
    emulate: bool,
    baud: int | None,
    count: int | None,
    resume: bool,
    timeout: float,
    topk: int = 5,
    transport_wrap=None,
    log=print,
) -> dict:
    kmodel, out = Path(kmodel), Path(out)
    if not kmodel.is_file():
        raise PokedexError(f"kmodel {kmodel} does not exist")
    classes, size = read_classes(kmodel), model_size(kmodel)
    items = select_items(Path(data), count)
    baud = baud or board.firmware.uart_baud
    log(f"link: {link_seconds_per_image(size, baud):.2f} s per {size}x{size} image at {baud} baud")
    out.mkdir(parents=True, exist_ok=True)
    ctx = emulated_board(board, kmodel, out, log) if emulate else contextlib.nullcontext(port)
    with ctx as dev:
        if dev is None:
            from .ports import pick_port

            dev = pick_port(None)
        t = SerialTransport(dev, baud)
        if transport_wrap is not None:
            t = transport_wrap(t)
        try:
            run_bench(
                BenchClient(t, timeout=timeout),
                Path(data),
                items,
                classes,
                size,
                out,
                kmodel=kmodel,
                resume=resume,
                topk=topk,
                log=log,
            )
        finally:
            t.close()
    rows = list(load_done(out / "results.jsonl").values())
    order = {i.file: n for n, i in enumerate(items)}
    rows.sort(key=lambda r: order.get(r["file"], 1 << 30))
    ref = host_reference(rows, Path(data), kmodel, classes, size, out)
    figures = build_report(out, rows, ref, baud, link_seconds_per_image(size, baud))
    log(f"bench report: {out}/report.md")
    return figures
