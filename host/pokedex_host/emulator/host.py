"""``pokedex-host emulate``: lay out the emulated SD card from a build artifact and the board
profile, start the firmware in a child process, collect LCD PNGs, UART lines and events."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import termios
import tty
from dataclasses import dataclass
from pathlib import Path

from .. import paths
from ..boardconfig import app_settings, make_config, write_config
from ..boards import Board
from ..errors import PokedexError
from .output import fresh_output


@dataclass
class EmulateResult:
    out: Path
    exit_code: int
    frames: int
    lcd_frames: int
    uart_lines: list[str]
    warnings: list[str]
    console: str


firmware_dir = paths.firmware_dir  # one definition (install must not import this module: termios)


def _kmodel_input(kmodel: Path) -> int:
    from ..artifact import BuildArtifact

    art = BuildArtifact.find(kmodel)
    if art is not None:
        return art.input_size
    from ..kmodel import KmodelFormatError, detect_file_version, v3

    try:
        shape = v3.read(kmodel).input_shape if kmodel.is_file() and detect_file_version(kmodel) == 3 else None
        if shape:  # a v3 says it itself
            return shape[1]
    except KmodelFormatError:
        pass
    raise PokedexError(
        f"{kmodel} has no manifest.json beside it to say its input size",
        "pass a model.kmodel from a build-kmodel output folder, or --input-size",
    )


def build_settings(board: Board) -> dict:
    """What the emulated firmware build says about itself and lacks (boards/firmware/*.toml)."""
    b = board.firmware.build
    if b is None:
        return {}
    return {
        "banner": b.banner,
        "platform": b.platform,
        "release": b.release,
        "git_tag": b.git_tag,
        "build_date": b.build_date,
        "board_name": b.board_name,
        "mcu_name": b.mcu_name,
        "image_lacks": list(b.image_lacks),
    }


def stand_ins(board: Board) -> list[str] | None:
    """The modules of emulator/mods the board's firmware family has (the others do not import);
    None: no MicroPython family, nothing refused."""
    from ..families import family

    return list(family(board.firmware.family).emulator_modules) or None


def emulate(
    board: Board,
    kmodel: Path | None,
    frames: Path | None,
    out: Path,
    *,
    script: str | None = "main.py",
    labels: Path | None = None,
    input_size: int | None = None,
    uart_link: Path | None = None,
    threshold: float | None = None,
    smoothing: float | None = None,
    max_frames: int | None = None,
    timeout: float | None = None,
    config_overrides: dict | None = None,
    firmware: Path | None = None,
    uart_fd: int | None = None,
    stop=None,
    repl: bool = False,
    log=print,
) -> EmulateResult:
    """Run one firmware script on the emulated board until its frames run out, ``timeout``
    passes or ``stop`` (a threading.Event) is set. ``threshold`` and ``smoothing`` default to the
    kmodel's release settings (``boardconfig.app_settings``). ``uart_fd``: the master side of a pty the
    caller owns (it survives this run: a board reset is a second run on the same link).
    ``script=None``: no script; ``repl``: the board's REPL on the UART once the script is done
    (emulator/repl.py), until ``stop``."""
    out = fresh_output(out)  # refuses a non-empty folder the emulator did not write
    sd = out / "sd"
    sd.mkdir()
    outputs, runtime = 0, None
    if kmodel is not None:
        kmodel = Path(kmodel)
        if not kmodel.is_file():
            raise PokedexError(f"kmodel {kmodel} does not exist", "run `make kmodel` or pass --kmodel FILE")
        shutil.copyfile(kmodel, sd / "model.kmodel")
        from ..artifact import BuildArtifact

        art = BuildArtifact.find(kmodel)
        runtime = (art.runtime_bytes or None) if art is not None else None  # pokedex.json model_runtime
        if labels is None and art is not None and art.classes_file.is_file():
            labels = art.classes_file
        input_size = input_size or _kmodel_input(kmodel)
    if labels is not None and Path(labels).is_file():
        from ..species import read_classes_txt

        shutil.copyfile(labels, sd / "classes.txt")
        outputs = len(read_classes_txt(labels))
    if frames is not None and not Path(frames).exists():
        raise PokedexError(f"frames {frames} do not exist", "pass a folder of images or a video file")
    app = app_settings(kmodel)
    cfg = make_config(
        board,
        input_size=input_size or 224,
        outputs=outputs,
        model="/sd/model.kmodel",
        labels="/sd/classes.txt",
        threshold=app["threshold"] if threshold is None else threshold,
        smoothing=app["smoothing"] if smoothing is None else smoothing,
        mirror=app["mirror"],
        model_runtime=runtime,
        locator=app["locator"],
    )
    cfg.update(config_overrides or {})
    write_config(sd / "pokedex.json", cfg)
    run_cfg = {
        "out": str(out.resolve()),
        "sd": str(sd.resolve()),
        "flash_fs": None,
        "flash_map": {},
        "frames": str(Path(frames).resolve()) if frames else None,
        "firmware": str(Path(firmware or firmware_dir()).resolve()),
        "script": script,
        "model_ram": board.firmware.model_ram,
        "kmodel_versions": list(board.firmware.kmodel_versions),
        "gc_heap_size": board.firmware.gc_heap_size,
        "nncase": board.nncase,
        "max_frames": max_frames,
        "model_input": [input_size or 224] * 2,
        "repl": repl,
        "flash_size": board.flash_size,
        "build": build_settings(board),
        "modules": stand_ins(board),
    }
    master = slave = None
    pass_fds: tuple[int, ...] = ()
    if uart_fd is not None:
        run_cfg["uart_fd"] = uart_fd
        pass_fds = (uart_fd,)
    elif uart_link is not None:
        master, slave = os.openpty()
        tty.setraw(slave)
        attrs = termios.tcgetattr(master)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(master, termios.TCSANOW, attrs)
        run_cfg["uart_fd"] = master
        pass_fds = (master,)
        if uart_link.exists() or uart_link.is_symlink():
            uart_link.unlink()
        uart_link.symlink_to(os.ttyname(slave))
        log(f"emulated board UART at {uart_link} -> {os.ttyname(slave)}")
    (out / "emulator.json").write_text(json.dumps(run_cfg, indent=2))
    env = {**os.environ, "POKEDEX_EMULATOR_CONFIG": str(out / "emulator.json"), "PYTHONUNBUFFERED": "1"}
    root = paths.repo_root()
    if root is not None:
        env["PYTHONPATH"] = str(root / "host") + os.pathsep + env.get("PYTHONPATH", "")
    import tempfile
    import time as _time

    console_file = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pokedex_host.emulator.run"],
        env=env,
        pass_fds=pass_fds,
        stdout=console_file,
        stderr=subprocess.STDOUT,
    )
    start = _time.monotonic()
    try:
        while proc.poll() is None:
            if (stop is not None and stop.is_set()) or (timeout is not None and _time.monotonic() - start > timeout):
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                break
            _time.sleep(0.05)
        code = proc.returncode if proc.returncode is not None and proc.returncode >= 0 else 124
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for fd in (master, slave):
            if fd is not None:
                os.close(fd)
        if uart_link is not None and uart_link.is_symlink():
            uart_link.unlink()
    console_file.seek(0)
    console = console_file.read().decode("utf-8", "replace")
    console_file.close()
    (out / "console.log").write_text(console)
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    uart = (out / "uart.log").read_bytes().decode("utf-8", "replace") if (out / "uart.log").exists() else ""
    lines = [line for line in uart.splitlines() if line.startswith("R\t")]
    return EmulateResult(
        out, code, summary.get("frames", 0), summary.get("lcd_frames", 0), lines, summary.get("warnings", []), console
    )
