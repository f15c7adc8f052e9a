"""Run the firmware in ``firmware/`` unmodified under CPython, with host versions of the MaixPy
modules it imports (``emulator/mods``). See docs/firmware.md."""
