"""Host version of MaixPy's ``fpioa_manager``: pin function routing, recorded. UART1/2 send and
receive only once their TX/RX functions are routed to a pin (machine.UART checks ``routed``)."""

from pokedex_host.emulator.state import board as _board


class _Fpioa:
    # fpioa function numbers of the K210 SDK (fpioa.h), as MaixPy exposes them
    UARTHS_RX = 18
    UARTHS_TX = 19
    UART1_RX = 64
    UART1_TX = 65
    UART2_RX = 66
    UART2_TX = 67
    GPIOHS0 = 24


class _FM:
    fpioa = _Fpioa()

    def __init__(self):
        self.pins = {}  # pin -> function

    def register(self, pin, function, force=True):
        self.pins[int(pin)] = int(function)
        _board().event("fpioa", pin=pin, function=function)

    def unregister(self, pin):
        self.pins.pop(int(pin), None)

    def routed(self, function):
        return int(function) in self.pins.values()


fm = _FM()
