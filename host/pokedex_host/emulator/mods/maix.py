"""Host version of CanMV's ``maix`` module: ``maix.KPU`` (load_kmodel / run_with_output) for kmodel v5."""

from _gpio import GPIO  # noqa: F401  (maix.GPIO)

from pokedex_host.emulator import kpu_backend as _kb
from pokedex_host.emulator.state import board as _board


def _err(code, text):
    return ValueError("kpu: load error:%d, %s" % (code, text))


class KPU:
    __slots__ = ("_m",)

    def __init__(self):
        self._m = None

    def load_kmodel(self, path_or_addr, size=None):
        """A path, or a flash address and the model's size (py_kpu_load_kmodel reads ``size``
        bytes from flash: an address alone is an error)."""
        if isinstance(path_or_addr, int) and size is None:
            raise TypeError("kpu: load_kmodel(address, size): a flash address needs the model size in bytes")
        versions = tuple(v for v in _board().kmodel_versions if v == 5)
        self.deinit()  # a second load replaces the first model
        self._m = _kb.load(path_or_addr, versions, _err)
        return True

    def run_with_output(self, img, get_feature=False, getlist=False):
        if self._m is None:
            raise ValueError("kpu: load a kmodel first")
        return _kb.run(self._m, img)

    def deinit(self):
        if self._m is not None:
            _kb.release(self._m)
        self._m = None
