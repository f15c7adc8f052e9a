"""A board on a wire (after mpremote's ``Transport``): one small interface, a pyserial
implementation that also opens the emulator's pseudo-terminal, and a fault injector for tests."""

from __future__ import annotations

import random
import time
from typing import Protocol

from ..errors import PokedexError


class TransportError(PokedexError):
    pass


class Transport(Protocol):
    name: str

    def write(self, data: bytes) -> None: ...

    def read(self, max_bytes: int, timeout: float) -> bytes: ...

    def drain_input(self) -> None: ...

    def close(self) -> None: ...


class SerialTransport:
    """pyserial on a real port (/dev/ttyUSB0, COM3) or a pty (the emulator)."""

    def __init__(self, port: str, baud: int = 115200):
        import serial

        self.name = port
        self.baud = baud
        try:
            self.ser = serial.Serial(port, baud, timeout=0)
        except (serial.SerialException, OSError) as e:
            raise TransportError(f"cannot open {port}: {e}",
                                 "check the port name, the cable, and that nothing else holds the port") from e

    def write(self, data: bytes) -> None:
        try:
            self.ser.write(data)
            self.ser.flush()
        except OSError as e:
            raise TransportError(f"write to {self.name} failed: {e}", "is the board still plugged in?") from e

    def read(self, max_bytes: int, timeout: float) -> bytes:
        end = time.monotonic() + timeout
        while True:
            try:
                n = self.ser.in_waiting
                if n:
                    return self.ser.read(min(n, max_bytes))
            except OSError as e:
                raise TransportError(f"read from {self.name} failed: {e}", "is the board still plugged in?") from e
            if time.monotonic() >= end:
                return b""
            time.sleep(0.002)

    def drain_input(self) -> None:
        try:
            self.ser.reset_input_buffer()
        except OSError:
            pass

    def close(self) -> None:
        self.ser.close()


class FaultyTransport:
    """Wraps a transport and damages the link, deterministically by seed: loses or flips a byte
    in a share of the chunks written and read, and goes silent for a while. For fault tests."""

    def __init__(self, inner: Transport, seed: int = 0, drop: float = 0.0, corrupt: float = 0.0,
                 silent_after: int | None = None, silent_for: float = 0.0):
        self.inner = inner
        self.name = f"faulty({inner.name})"
        self.rng = random.Random(seed)
        self.drop, self.corrupt = drop, corrupt
        self.silent_after, self.silent_for = silent_after, silent_for
        self.writes = 0
        self.silent_until = 0.0
        self.damaged = 0

    def _damage(self, data: bytes) -> bytes:
        """With probability ``drop`` lose one byte of this chunk; with ``corrupt`` flip one bit."""
        if not data:
            return data
        out = bytearray(data)
        r = self.rng.random()
        if r < self.drop:
            del out[self.rng.randrange(len(out))]
            self.damaged += 1
        elif r < self.drop + self.corrupt:
            out[self.rng.randrange(len(out))] ^= 1 << self.rng.randrange(8)
            self.damaged += 1
        return bytes(out)

    def write(self, data: bytes) -> None:
        self.writes += 1
        if self.silent_after is not None and self.writes == self.silent_after:
            self.silent_until = time.monotonic() + self.silent_for
        if time.monotonic() < self.silent_until:
            return  # the link is dead: nothing arrives
        self.inner.write(self._damage(data))

    def read(self, max_bytes: int, timeout: float) -> bytes:
        data = self.inner.read(max_bytes, timeout)
        if time.monotonic() < self.silent_until:
            return b""
        return self._damage(data)

    def drain_input(self) -> None:
        self.inner.drain_input()

    def close(self) -> None:
        self.inner.close()
