"""Host version of MaixPy's ``fpioa_manager``: pin function routing, recorded. UART1/2 send and
receive only once their TX/RX functions are routed to a pin (machine.UART checks ``routed``)."""

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

    def __init__(self):
        self.pins = {}  # pin -> function

    def register(self, pin, function, force=False):
        self.pins[int(pin)] = int(function)
        _board().event("fpioa", pin=pin, function=function)

    def unregister(self, pin):
        self.pins.pop(int(pin), None)

    def routed(self, function):
        return int(function) in self.pins.values()


fm = _FM()
