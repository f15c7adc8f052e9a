"""The emulated board, shared by the module shims: settings, file systems, outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path


class EmulatorDone(BaseException):
    """Raised when the camera has no more frames (BaseException: firmware's `except Exception` lets it through)."""


class Board:
    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.out = Path(cfg["out"])
        self.sd = Path(cfg["sd"]) if cfg.get("sd") else None
        self.flash_fs = Path(cfg["flash_fs"]) if cfg.get("flash_fs") else None
        self.flash_map = {int(k): v for k, v in (cfg.get("flash_map") or {}).items()}
        self.model_ram = int(cfg["model_ram"])
        self.kmodel_versions = tuple(cfg["kmodel_versions"])
        self.gc_heap = int(cfg.get("gc_heap_size") or 512 * 1024)
        src = Path(cfg["frames"]) if cfg.get("frames") else None
        self.video = None
        if src is not None and src.is_file():  # a video file: frames decoded one by one
            import cv2

            self.video = cv2.VideoCapture(str(src))
            if not self.video.isOpened():
                raise OSError(f"cannot open video {src}")
            self.frames = []
        else:
            self.frames = sorted(p for p in src.iterdir() if p.is_file()) if src is not None else []
        self.frame_index = 0
        self.max_frames = cfg.get("max_frames")
        self.lcd_count = 0
        self.warnings: list[str] = []
        self.uart_log = open(self.out / "uart.log", "ab")
        self.uart_fd = cfg.get("uart_fd")
        self.nncase = cfg.get("nncase")
        self.worker = None
        self.events = open(self.out / "events.jsonl", "a", encoding="utf-8")

    def event(self, kind: str, **data) -> None:
        self.events.write(json.dumps({"event": kind, **data}) + "\n")
        self.events.flush()

    def warn(self, msg: str) -> None:
        if msg not in self.warnings:
            self.warnings.append(msg)
            self.event("warning", message=msg)

    def host_path(self, path: str) -> Path:
        """Map a board path (/sd/..., /flash/...) to the host folder that stands in for it."""
        if not isinstance(path, str) or not path.startswith("/"):
            raise OSError(2, "ENOENT", path)
        for prefix, root in (("/sd/", self.sd), ("/flash/", self.flash_fs)):
            if path.startswith(prefix) and root is not None:
                p = (root / path[len(prefix):]).resolve()
                if root.resolve() not in p.parents and p != root.resolve():
                    raise OSError(2, "ENOENT", path)
                return p
        raise OSError(2, "ENOENT", path)

    def open(self, path, mode="r", *args, **kwargs):
        p = self.host_path(path)
        if "b" not in mode:
            kwargs.setdefault("encoding", "utf-8")
        try:
            return open(p, mode, *args, **kwargs)
        except FileNotFoundError:
            raise OSError(2, "ENOENT", path) from None

    def simulator(self):
        if self.worker is None:
            from ..toolchain import Worker

            self.worker = Worker(self.nncase).start()
        return self.worker


_BOARD: Board | None = None


def board() -> Board:
    if _BOARD is None:
        raise RuntimeError("emulator not started")
    return _BOARD


def start(cfg: dict) -> Board:
    global _BOARD
    _BOARD = Board(cfg)
    return _BOARD


def config_from_env() -> dict:
    return json.loads(Path(os.environ["POKEDEX_EMULATOR_CONFIG"]).read_text())
