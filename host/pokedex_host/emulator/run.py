"""Child process of ``pokedex-host emulate``: installs the module shims and runs one firmware
script unmodified (then, with ``repl`` set and a UART, the board's REPL: emulator/repl.py).
Invoked as ``python -m pokedex_host.emulator.run`` with POKEDEX_EMULATOR_CONFIG pointing at a
JSON settings file."""

from __future__ import annotations

import binascii
import gc as _real_gc
import importlib.abc
import importlib.machinery
import json
import struct
import sys
import time as _real_time
import traceback
import types
from pathlib import Path

from . import state

MODS = Path(__file__).with_name("mods")


def _time_module() -> types.ModuleType:
    m = types.ModuleType("time")
    for k in dir(_real_time):
        if not k.startswith("__"):
            setattr(m, k, getattr(_real_time, k))
    m.ticks_ms = lambda: int(_real_time.monotonic() * 1000) & 0x3FFFFFFF
    m.ticks_us = lambda: int(_real_time.monotonic() * 1_000_000) & 0x3FFFFFFF
    m.ticks_diff = lambda a, b: ((a - b + 0x20000000) & 0x3FFFFFFF) - 0x20000000
    m.ticks_add = lambda a, b: (a + b) & 0x3FFFFFFF
    m.sleep_ms = lambda ms: _real_time.sleep(ms / 1000.0)
    m.sleep_us = lambda us: _real_time.sleep(us / 1e6)
    return m


def _gc_module(board) -> types.ModuleType:
    m = types.ModuleType("gc")
    for k in ("collect", "enable", "disable", "isenabled"):
        setattr(m, k, getattr(_real_gc, k))
    m.mem_free = lambda: max(0, board.heap_free())
    m.mem_alloc = lambda: board.heap_base + board.heap_live
    m.threshold = lambda *a: -1
    return m


class _FamilyGate(importlib.abc.MetaPathFinder):
    """The stand-ins of another firmware family do not import (MaixPy-v1 has ``KPU`` and ``Maix``,
    no ``maix``; CanMV has ``maix``, no ``KPU``): ImportError in MicroPython 1.11's words."""

    def __init__(self, allowed):
        stand_ins = {p.stem for p in MODS.glob("*.py") if not p.stem.startswith("_")}  # _*: helpers
        self.refused = stand_ins - set(allowed) - {"uos"}  # every family has uos

    def find_spec(self, name, path=None, target=None):
        if path is None and name in self.refused:
            raise ImportError("no module named '%s'" % name)
        return None


class _FirmwareFinder(importlib.abc.MetaPathFinder):
    """Import firmware modules from the firmware folder with the board's ``open``."""

    def __init__(self, folder: Path, board):
        self.folder = folder
        self.board = board

    def find_spec(self, name, path=None, target=None):
        f = self.folder / f"{name}.py"
        if path is None and f.is_file():
            loader = _FirmwareLoader(name, str(f), self.board)
            return importlib.machinery.ModuleSpec(name, loader, origin=str(f))
        return None


class _FirmwareLoader(importlib.machinery.SourceFileLoader):
    def __init__(self, name, path, board):
        super().__init__(name, path)
        self.board = board

    def exec_module(self, module):
        module.open = self.board.open
        module.bytearray = self.board.bytearray_type
        super().exec_module(module)


def _heap_bytearray(board):
    """The firmware's ``bytearray``: a large one (1 KiB or more when made) takes GC heap, as on the
    board (an upload buffer, a frame's bytes); growth by extend is not counted."""

    class bytearray_(bytearray):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            if len(self) >= 1024:
                board.heap_alloc(self, len(self), "bytearray")

    bytearray_.__name__ = bytearray_.__qualname__ = "bytearray"
    return bytearray_


def _on_term(signum, frame):
    raise state.EmulatorDone("stopped by the host")


def main() -> int:
    import signal

    signal.signal(signal.SIGTERM, _on_term)
    cfg = state.config_from_env()
    board = state.start(cfg)
    sys.modules["time"] = sys.modules["utime"] = _time_module()
    sys.modules["gc"] = _gc_module(board)
    sys.modules["ujson"] = json
    sys.modules["ustruct"] = struct
    sys.modules["ubinascii"] = binascii
    sys.path.insert(0, str(MODS))
    firmware = Path(cfg["firmware"])
    board.bytearray_type = _heap_bytearray(board)  # the firmware's bytearray (one class, every module)
    sys.meta_path.insert(0, _FirmwareFinder(firmware, board))
    if cfg.get("modules") is not None:
        sys.meta_path.insert(0, _FamilyGate(cfg["modules"]))
    name = cfg.get("script", "main.py")  # None: no main.py, the board starts in its REPL
    script = firmware / name if name else None
    rc = 0
    try:
        if script is not None:
            code = compile(script.read_text(encoding="utf-8"), str(script), "exec")
            exec(
                code,
                {
                    "__name__": "__main__",
                    "__file__": str(script),
                    "open": board.open,
                    "bytearray": board.bytearray_type,
                },
            )
        if cfg.get("repl") and board.uart_fd is not None:  # as MaixPy does when main.py returns
            from .repl import serve

            serve(board)
        board.event("exit", reason="script returned")
    except state.EmulatorDone as e:
        board.event("exit", reason=str(e))
    except KeyboardInterrupt:
        board.event("exit", reason="interrupted")
    except Exception as e:  # the firmware crashed: that is a finding, not an emulator error
        traceback.print_exc()
        board.event("exit", reason="firmware raised %s: %s" % (type(e).__name__, e))
        rc = 3
    finally:
        summary = {
            "frames": board.frame_index,
            "lcd_frames": board.lcd_count,
            "warnings": board.warnings,
            "exit_code": rc,
        }
        (board.out / "summary.json").write_text(json.dumps(summary, indent=2))
        if board.worker is not None:
            board.worker.close()
    return rc


if __name__ == "__main__":
    sys.exit(main())
