"""A small progress line on stderr (no dependency): count, rate and ETA. On a terminal it redraws
one line; otherwise (a log file, CI) it writes a line every ``every`` seconds."""

from __future__ import annotations

import sys
import time


def _hms(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    def __init__(self, what: str, total: int, stream=None, every: float = 60.0, unit: str = ""):
        self.what, self.total, self.n, self.unit = what, total, 0, unit
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every = 0.25 if self.tty else every
        self.t0 = self.last = time.time()
        self.extra = ""

    def line(self) -> str:
        el = time.time() - self.t0
        rate = self.n / max(el, 1e-9)
        eta = (self.total - self.n) / rate if rate > 0 else 0
        return (
            f"{self.what}: {self.n}/{self.total} ({rate:.1f}{self.unit}/s, "
            f"{_hms(el)} elapsed, ETA {_hms(eta)}){self.extra}"
        )

    def step(self, k: int = 1, extra: str | None = None) -> None:
        self.n += k
        if extra is not None:
            self.extra = " " + extra
        now = time.time()
        if now - self.last > self.every or (self.tty and self.n == self.total):
            self.last = now
            self.stream.write(("\r" if self.tty else "") + self.line() + ("" if self.tty else "\n"))
            self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
