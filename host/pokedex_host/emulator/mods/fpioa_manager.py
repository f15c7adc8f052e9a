"""Host version of MaixPy's ``fpioa_manager`` (pin function routing: recorded, no effect)."""

from pokedex_host.emulator.state import board as _board


class _Fpioa:
    UART1_TX = 18
    UART1_RX = 19
    UART2_TX = 20
    UART2_RX = 21
    UARTHS_TX = 4
    UARTHS_RX = 5
    GPIOHS0 = 24


class _FM:
    fpioa = _Fpioa()

    def register(self, pin, function, force=False):
        _board().event("fpioa", pin=pin, function=function)

    def unregister(self, pin):
        pass


fm = _FM()
