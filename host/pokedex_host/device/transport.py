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


def _io_errors() -> tuple[type[BaseException], ...]:
    """What a vanished port raises through pyserial: OSError (EIO), SerialException and, on Unix,
    termios.error (tcdrain / tcflush on a port whose cable was pulled)."""
    import serial

    errs: list[type[BaseException]] = [OSError, serial.SerialException]
    try:
        import termios  # Unix only; imported here, not at module import

        errs.append(termios.error)
    except ImportError:
        pass
    return tuple(errs)


class SerialTransport:
    """pyserial on a real port (/dev/ttyUSB0, COM3) or a pty (the emulator)."""

    def __init__(self, port: str, baud: int = 115200):
        import serial

        self._errors = _io_errors()
        self.name = port
        self.baud = baud
        try:
            self.ser = serial.Serial(port, baud, timeout=0)
        except (serial.SerialException, OSError) as e:
            raise TransportError(
                f"cannot open {port}: {e}", "check the port name, the cable, and that nothing else holds the port"
            ) from e

    def write(self, data: bytes) -> None:
        try:
            self.ser.write(data)
            self.ser.flush()
        except self._errors as e:
            raise TransportError(f"write to {self.name} failed: {e}", "is the board still plugged in?") from e

    def read(self, max_bytes: int, timeout: float) -> bytes:
        end = time.monotonic() + timeout
        while True:
            try:
                n = self.ser.in_waiting
                if n:
                    return self.ser.read(min(n, max_bytes))
            except self._errors as e:
                raise TransportError(f"read from {self.name} failed: {e}", "is the board still plugged in?") from e
            if time.monotonic() >= end:
                return b""
            time.sleep(0.002)

    def drain_input(self) -> None:
        try:
            self.ser.reset_input_buffer()
        except self._errors:
            pass

    def close(self) -> None:
        try:
            self.ser.close()
        except self._errors:
            pass


REPL_NOISE = (
    b"[MAIXPY]kpu: load model ok\r\n",
    b"MicroPython v0.6.2 on 2021-01-01; Sipeed_M1 with kendryte-k210\r\n",
    b">>> ",
    b"gc: 123456 bytes free\r\n",
)


class FaultyTransport:
    """Wraps a transport and damages the link, deterministically by seed. Per chunk written or
    read: lose (``drop``) or flip (``corrupt``) one byte; per byte: flip or lose it with
    probability ``byte_out`` (host -> board) / ``byte_in`` (board -> host); per read, insert a
    line of REPL text with probability ``text_in``; go silent for a while (``silent_after``
    writes). For fault tests and the noisy-line benchmark."""

    def __init__(
        self,
        inner: Transport,
        seed: int = 0,
        drop: float = 0.0,
        corrupt: float = 0.0,
        silent_after: int | None = None,
        silent_for: float = 0.0,
        byte_in: float = 0.0,
        byte_out: float = 0.0,
        text_in: float = 0.0,
    ):
        self.inner = inner
        self.name = f"faulty({inner.name})"
        self.baud = getattr(inner, "baud", None)
        self.rng = random.Random(seed)
        self.drop, self.corrupt = drop, corrupt
        self.byte_in, self.byte_out, self.text_in = byte_in, byte_out, text_in
        self.silent_after, self.silent_for = silent_after, silent_for
        self.writes = 0
        self.silent_until = 0.0
        self.damaged = 0

    def _bytes(self, data: bytes, rate: float) -> bytes:
        """Each byte flipped (one bit) or lost with probability ``rate``, half and half."""
        if not rate or not data:
            return data
        out = bytearray()
        i = 0
        n = len(data)
        while i < n:
            gap = int(self.rng.expovariate(rate)) if rate < 1 else 0  # bytes until the next fault
            if i + gap >= n:
                out += data[i:]
                break
            out += data[i : i + gap]
            i += gap
            self.damaged += 1
            if self.rng.random() < 0.5:
                out.append(data[i] ^ (1 << self.rng.randrange(8)))
            i += 1  # a lost byte is just not appended
        return bytes(out)

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
        self.inner.write(self._bytes(self._damage(data), self.byte_out))

    def read(self, max_bytes: int, timeout: float) -> bytes:
        data = self.inner.read(max_bytes, timeout)
        if time.monotonic() < self.silent_until:
            return b""
        data = self._bytes(self._damage(data), self.byte_in)
        if data and self.text_in and self.rng.random() < self.text_in:
            at = self.rng.randrange(len(data) + 1)
            data = data[:at] + self.rng.choice(REPL_NOISE) + data[at:]
        return data

    def drain_input(self) -> None:
        self.inner.drain_input()

    def close(self) -> None:
        self.inner.close()
