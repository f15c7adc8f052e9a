"""Host version of MaixPy's ``Maix.utils`` (there is no top-level ``utils`` on the board:
``from Maix import utils``)."""

from pokedex_host.emulator.state import board as _board


def gc_heap_size(size=None):
    b = _board()
    if size is None:
        return b.gc_heap
    b.event("gc_heap_size", size=size)
    return size


def heap_free():
    return max(0, _board().model_ram)
