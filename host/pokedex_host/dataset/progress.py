"""A small progress line on stderr (no dependency), quiet when stderr is not a terminal."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, what: str, total: int, stream=None):
        self.what, self.total, self.n = what, total, 0
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = self.last = time.time()

    def step(self, k: int = 1) -> None:
        self.n += k
        now = time.time()
        if self.tty and (now - self.last > 0.25 or self.n == self.total):
            self.last = now
            rate = self.n / max(now - self.t0, 1e-9)
            self.stream.write(f"\r{self.what}: {self.n}/{self.total} ({rate:.0f}/s)")
            self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
