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
        # the GC heap's big blocks (images, pix_ai buffers, large bytearrays) are accounted; the
        # firmware's own small objects are a fixed share (an approximation: a board's figure differs)
        self.heap_base = self.gc_heap // 8
        self.heap_live = 0
        self.heap_peak = 0
        self.bytearray_type = bytearray  # run.py gives the firmware one that takes heap
        # the system heap (Maix.utils.heap_free(); malloc: camera buffers, KPU models): at boot the
        # profile's model_ram, the free heap after boot the build's budget is
        self.sys_heap = self.model_ram
        self.sys_used = 0
        self.build = cfg.get("build") or {}  # boards/firmware/<family>.toml: banner, image_lacks
        self.image_lacks = tuple(self.build.get("image_lacks", ()))
        self.flash_size = int(cfg.get("flash_size") or 16 * 2**20)
        self.firmware_image = self._firmware_stand_in()
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

    def heap_free(self) -> int:
        return self.gc_heap - self.heap_base - self.heap_live

    def heap_alloc(self, owner, nbytes: int, what: str) -> None:
        """Take ``nbytes`` of the GC heap for ``owner`` until it is garbage; MemoryError (as
        MicroPython words it) when the heap has not that much free."""
        import weakref

        if nbytes > self.heap_free():
            self.event("memory_error", bytes=nbytes, what=what, free=self.heap_free())
            raise MemoryError("memory allocation failed, allocating %d bytes" % nbytes)
        self.heap_live += nbytes
        self.heap_peak = max(self.heap_peak, self.heap_live)
        weakref.finalize(owner, self._heap_release, nbytes)

    def _heap_release(self, nbytes: int) -> None:
        self.heap_live -= nbytes

    def system_free(self) -> int:
        return self.sys_heap - self.sys_used

    def system_alloc(self, nbytes: int, what: str) -> bool:
        """malloc ``nbytes`` of the system heap; False (and an event) when it has not that much."""
        if nbytes > self.system_free():
            self.event("system_heap_short", bytes=nbytes, what=what, free=self.system_free())
            return False
        self.sys_used += nbytes
        self.event("system_alloc", bytes=nbytes, what=what, free=self.system_free())
        return True

    def system_release(self, nbytes: int, what: str) -> None:
        self.sys_used = max(0, self.sys_used - nbytes)
        self.event("system_free", bytes=nbytes, what=what, free=self.system_free())

    def _firmware_stand_in(self) -> bytes:
        """What the flash holds at the firmware address: kflash's header (no AES, u32 length) and,
        as the body, the build's banner repeated (the emulator has no firmware binary)."""
        import struct

        body = ((self.build.get("banner") or "MicroPython firmware") + "\n").encode() * 64
        return b"\x00" + struct.pack("<I", len(body)) + body

    def flash_read(self, addr: int, n: int) -> bytes:
        """Bytes of the emulated SPI flash as Maix.utils.flash_read gives them: the driver sends a
        24-bit address (w25qxx.c) and a chip ignores the address bits above its size, so reads
        wrap at the profile's flash size. The firmware stand-in at 0, the flashed models at their
        addresses, 0xFF (erased) elsewhere."""
        regions = [(0, self.firmware_image)]
        for at, path in self.flash_map.items():
            regions.append((at, Path(path).read_bytes()))
        out = bytearray()
        for i in range(n):
            a = ((addr + i) & 0xFFFFFF) % self.flash_size
            b = 0xFF
            for start, data in regions:
                if start <= a < start + len(data):
                    b = data[a - start]
                    break
            out.append(b)
        return bytes(out)

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
                p = (root / path[len(prefix) :]).resolve()
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


def heap_alloc(owner, nbytes: int, what: str) -> None:
    """Account GC heap on the running board (stand-ins used outside an emulator run, as in unit
    tests of the image module, account nothing)."""
    if _BOARD is not None:
        _BOARD.heap_alloc(owner, nbytes, what)


def start(cfg: dict) -> Board:
    global _BOARD
    _BOARD = Board(cfg)
    return _BOARD


def config_from_env() -> dict:
    return json.loads(Path(os.environ["POKEDEX_EMULATOR_CONFIG"]).read_text())
