"""Host version of MaixPy's ``machine.UART``: writes go to OUT/uart.log and, when the emulator
was given a pseudo-terminal, to its other end, so a host program talks to the emulated board
exactly as over USB."""

import os as _os
import select as _select

from pokedex_host.emulator.state import board as _board


class UART:
    UART1 = 1
    UART2 = 2
    UART3 = 3
    UARTHS = 0

    def __init__(self, uart, baudrate=115200, bits=8, parity=None, stop=1, timeout=0, read_buf_len=128,
                 timeout_char=None):
        if uart not in (0, 1, 2, 3):
            raise ValueError("UART(%s) does not exist" % uart)
        self._timeout = timeout
        self._fd = _board().uart_fd
        _board().event("uart_open", uart=uart, baud=baudrate)

    def write(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
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
        r, _, _ = _select.select([self._fd], [], [], self._timeout / 1000.0 if self._timeout else 0)
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
