"""Host version of MaixPy's ``machine.UART``: writes go to OUT/uart.log and, when the emulator
was given a pseudo-terminal, to its other end, so a host program talks to the emulated board
exactly as over USB."""

import os as _os
import select as _select

from pokedex_host.emulator.state import board as _board


class _Tee:
    """print() on a board whose app talks over UARTHS: the REPL's output shares the wire."""

    def __init__(self, inner, fd):
        self.inner, self.fd = inner, fd

    def write(self, text):
        self.inner.write(text)
        try:
            _os.write(self.fd, text.replace("\n", "\r\n").encode("utf-8", "replace"))
        except OSError:
            pass
        return len(text)

    def flush(self):
        self.inner.flush()


class UART:
    """machine_uart.c: ``read`` waits at most ``timeout_char`` ms (10 by default) for bytes and
    returns what arrived, or None; ``timeout`` does not make it wait longer. UART1/2 carry
    nothing until fm.register routed their TX/RX pins. UARTHS is also the REPL: print() and
    tracebacks go out on the same wire."""

    UART1 = 0  # machine_uart.c's numbering (the SDK's UART_DEVICE_1..3, then UARTHS)
    UART2 = 1
    UART3 = 2
    UARTHS = 4

    def __init__(
        self, uart, baudrate=115200, bits=8, parity=None, stop=1, timeout=0, read_buf_len=128, timeout_char=10
    ):
        import sys

        if uart not in (0, 1, 2, 4):
            raise ValueError("UART(%s) does not exist" % uart)
        self._timeout_char = max(0, int(timeout_char))
        self._uart = uart
        self._dead = False  # a UART whose pins were never routed: nothing leaves the chip
        self._fd = _board().uart_fd
        if uart in (UART.UART1, UART.UART2):
            from fpioa_manager import fm

            tx, rx = (
                (fm.fpioa.UART1_TX, fm.fpioa.UART1_RX) if uart == UART.UART1 else (fm.fpioa.UART2_TX, fm.fpioa.UART2_RX)
            )
            if not (fm.routed(tx) and fm.routed(rx)):
                _board().warn(
                    "UART%d created before fm.register routed its TX/RX pins: it sends and receives "
                    "nothing on a board" % uart
                )
                self._fd, self._dead = None, True
        if uart == UART.UARTHS and self._fd is not None and not isinstance(sys.stdout, _Tee):
            sys.stdout = _Tee(sys.stdout, self._fd)
            sys.stderr = _Tee(sys.stderr, self._fd)
        _board().event("uart_open", uart=uart, baud=baudrate)

    def write(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        if self._dead:
            return len(data)
        b = _board()
        b.uart_log.write(data)
        b.uart_log.flush()
        if self._fd is not None:
            view = memoryview(data)
            while view:
                n = _os.write(self._fd, view)
                view = view[n:]
        return len(data)

    def any(self):
        if self._fd is None:
            return 0
        r, _, _ = _select.select([self._fd], [], [], 0)
        return 1 if r else 0

    def read(self, n=-1):
        if self._fd is None:
            return None
        r, _, _ = _select.select([self._fd], [], [], self._timeout_char / 1000.0)
        if not r:
            return None
        try:
            data = _os.read(self._fd, 4096 if n is None or n < 0 else n)
        except OSError:
            return None
        return data or None

    def readline(self):
        return self.read()

    def deinit(self):
        pass
