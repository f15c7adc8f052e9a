"""Host version of MaixPy's ``Maix.utils`` (there is no top-level ``utils`` on the board:
``from Maix import utils``; src/Maix/Maix_utils.c)."""

from pokedex_host.emulator.state import board as _board


def gc_heap_size(size=None):
    """The GC heap size stored in /flash's config (it takes effect at the next reset)."""
    b = _board()
    if size is None:
        return b.gc_heap
    b.event("gc_heap_size", size=size)
    return None


def heap_free():
    """Free system heap: the profile's model_ram at boot (the GC heap already out of it), less the
    camera buffers sensor.set_framesize took and the models kpu.load holds."""
    return max(0, _board().system_free())


def flash_read(addr, length):
    """``length`` bytes of SPI flash from ``addr`` (py_flash_read: the driver's 24-bit address)."""
    return _board().flash_read(int(addr), int(length))
