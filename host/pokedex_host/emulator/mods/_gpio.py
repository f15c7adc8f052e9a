"""The minimal pin object of ``Maix.GPIO`` (MaixPy-v1) and ``maix.GPIO`` (CanMV)."""


class GPIO:
    GPIOHS0 = 24
    IN = 0
    OUT = 3

    def __init__(self, pin, mode, pull=None, value=0):
        self._v = value

    def value(self, v=None):
        if v is None:
            return self._v
        self._v = v
