"""Host version of MaixPy's ``uos`` (``import os`` on the board; standard_lib/uos/moduos.c): the
firmware build's ``uname()``, and ``stat`` / ``listdir`` on the emulated /sd and /flash."""

import os as _os

from pokedex_host.emulator.state import board as _board


class _Uname(tuple):
    """uname()'s attrtuple: the fields by name, printed as MicroPython prints an attrtuple."""

    _FIELDS = ("sysname", "nodename", "release", "version", "machine")

    def __getattr__(self, name):
        if name in self._FIELDS:
            return self[self._FIELDS.index(name)]
        raise AttributeError("'tuple' object has no attribute '%s'" % name)

    def __repr__(self):
        return "(" + ", ".join("%s=%r" % (k, v) for k, v in zip(self._FIELDS, self)) + ")"


def uname():
    """sysname and nodename MICROPY_PY_SYS_PLATFORM, release MAJOR.MINOR.DEV, version
    "<git tag> on <build date>", machine "<board> with <mcu>" (moduos.c)."""
    b = _board().build
    return _Uname(
        (
            b.get("platform", ""),
            b.get("platform", ""),
            b.get("release", ""),
            "%s on %s" % (b.get("git_tag", ""), b.get("build_date", "")),
            "%s with %s" % (b.get("board_name", ""), b.get("mcu_name", "")),
        )
    )


def stat(path):
    """A 10-tuple, size at [6] (MicroPython's stat)."""
    try:
        st = _os.stat(_board().host_path(path))
    except FileNotFoundError:
        raise OSError(2, "ENOENT") from None
    return (st.st_mode, 0, 0, 0, 0, 0, st.st_size, int(st.st_mtime), int(st.st_mtime), int(st.st_mtime))


def listdir(path="/"):
    b = _board()
    if path.rstrip("/") == "":
        return [name for name, root in (("flash", b.flash_fs), ("sd", b.sd)) if root is not None]
    return sorted(_os.listdir(b.host_path(path.rstrip("/") + "/")))
