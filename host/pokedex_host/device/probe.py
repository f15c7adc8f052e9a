"""``pokedex-host probe``: ask a board over the raw REPL what firmware it runs and how much memory
it has, then name the board profile that matches and the largest model that would fit.

What is asked: the banner (Ctrl-B), ``os.uname()``, ``gc.mem_free()`` / ``gc.mem_alloc()``,
``Maix.utils.heap_free()`` (free system heap, where kpu.load puts a model) and ``gc_heap_size()``,
which KPU module imports, whether an Image has each method the app calls (families.APP_IMAGE_CALLS),
and the flash size where ``Maix.utils.flash_read`` exists: the driver sends 24-bit addresses and a
chip ignores the address bits above its size, so the first power of two at which the flash reads
what it holds at 0 is its size (16 MiB when none does, the most 24 bits reach)."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..boards import Board
from ..errors import PokedexError
from ..families import APP_IMAGE_CALLS
from .repl import RawRepl, ReplExecError

IMAGE_CALLS = tuple(dict.fromkeys(n for calls in APP_IMAGE_CALLS.values() for n in calls))

# MicroPython 1.11 (MaixPy-v1) and CPython (the emulator) both run it: no f-strings.
PROBE_CODE = """\
import gc
try:
    import ujson as json
except ImportError:
    import json
r = {}
gc.collect()
r['gc_free'] = gc.mem_free()
r['gc_alloc'] = gc.mem_alloc() if hasattr(gc, 'mem_alloc') else None
try:
    import os
    u = os.uname()
    r['uname'] = [u.sysname, u.release, u.version, u.machine]
except Exception:
    r['uname'] = None
try:
    from Maix import utils
except ImportError:
    utils = None
r['heap_free'] = utils.heap_free() if utils is not None and hasattr(utils, 'heap_free') else None
r['gc_heap_size'] = utils.gc_heap_size() if utils is not None and hasattr(utils, 'gc_heap_size') else None
def _flash_size(utils):
    if utils is None or not hasattr(utils, 'flash_read'):
        return None
    head = utils.flash_read(0, 64)
    if head == b'\\xff' * 64:
        return None
    n = 1 << 20
    while n < (1 << 24):
        if utils.flash_read(n, 64) == head:
            return n
        n <<= 1
    return n
r['flash_size'] = _flash_size(utils)
kpu = []
try:
    import KPU
    kpu.append('KPU')
except ImportError:
    pass
try:
    from maix import KPU
    kpu.append('maix.KPU')
except ImportError:
    pass
r['kpu'] = kpu
import image
img = image.Image(size=(8, 8))
r['image'] = [n for n in %r if hasattr(img, n)]
del img
print('PROBE ' + json.dumps(r))
""" % (list(IMAGE_CALLS),)


@dataclass(frozen=True)
class Probe:
    """What the board said."""

    port: str
    banner: str
    uname: tuple[str, str, str, str] | None  # sysname, release, version, machine
    gc_free: int
    gc_heap: int | None  # mem_free + mem_alloc: the GC heap it runs with
    gc_heap_setting: int | None  # Maix.utils.gc_heap_size(): what the next reset will use
    heap_free: int | None  # Maix.utils.heap_free(): free system heap
    flash_size: int | None
    kpu_modules: tuple[str, ...]
    image_has: frozenset[str]

    @property
    def platform(self) -> str | None:
        return self.uname[0] if self.uname else None

    @property
    def image_lacks(self) -> list[str]:
        return [n for n in IMAGE_CALLS if n not in self.image_has]


def read_probe(repl: RawRepl) -> Probe:
    """Run the probe on the board behind ``repl``."""
    banner = repl.banner()
    try:
        out = repl.exec(PROBE_CODE, timeout=30).decode("utf-8", "replace")
    except ReplExecError as e:
        raise PokedexError(
            f"the probe's code failed on the board: {e.message}",
            "send the output with a bug report: the firmware answers differently from MaixPy-v1",
        ) from e
    finally:
        repl.exit()
    line = next((x for x in out.splitlines() if x.startswith("PROBE ")), None)
    if line is None:
        raise PokedexError(
            f"{repl.t.name}: the probe printed no result (got {out[-120:]!r})",
            "is a MicroPython board on this port? Close any serial monitor or IDE.",
        )
    r = json.loads(line[len("PROBE ") :])
    gc_heap = r["gc_free"] + r["gc_alloc"] if r.get("gc_alloc") is not None else None
    return Probe(
        port=repl.t.name,
        banner=banner,
        uname=tuple(r["uname"]) if r.get("uname") else None,
        gc_free=int(r["gc_free"]),
        gc_heap=gc_heap,
        gc_heap_setting=r.get("gc_heap_size"),
        heap_free=r.get("heap_free"),
        flash_size=r.get("flash_size"),
        kpu_modules=tuple(r.get("kpu") or ()),
        image_has=frozenset(r.get("image") or ()),
    )


@dataclass(frozen=True)
class Match:
    board: Board
    notes: tuple[str, ...]  # where the board differs from the profile, and what to do
    room: int  # bytes of run-time RAM left for a model with the app's camera running
    room_source: str
    heap: int  # the free system heap after boot the room was taken from (a build's --budget)


def _differences(p: Probe, b: Board) -> tuple[int, int, int]:
    """(family differs, image methods that differ, GC heap difference) of ``p`` against ``b``."""
    build = b.firmware.build
    family = 0 if (build.platform == p.platform if p.platform else build.kpu_module in p.kpu_modules) else 1
    expected = set(build.lacks(IMAGE_CALLS))
    flavour = len(expected ^ set(p.image_lacks))
    gc = abs(b.firmware.gc_heap_size - p.gc_heap) if p.gc_heap is not None else 0
    return family, flavour, gc


def match_profile(p: Probe, boards: list[Board]) -> Match:
    """The profile whose firmware build answers as this board did: same platform, the same image
    methods missing, then the nearest GC heap."""
    from ..families import FAMILIES

    cands = [b for b in boards if b.firmware.build is not None and FAMILIES[b.firmware.family].api is not None]
    if not cands:
        raise PokedexError(
            "no board profile describes a MicroPython firmware", "add one to boards/ (see boards/maix-bit.toml)"
        )
    best = min(cands, key=lambda b: _differences(p, b))
    family, flavour, gc = _differences(p, best)
    build = best.firmware.build
    notes = []
    if family:
        notes.append(f"no profile is for {p.platform or 'this firmware'} ({p.banner}); {best.name} is the nearest")
    if flavour:
        notes.append(
            f"its images lack {', '.join(p.image_lacks) or 'nothing the app calls'}, {best.name}'s build "
            f"({build.path} [flavours.{build.flavour}]) lacks {', '.join(build.lacks(IMAGE_CALLS)) or 'none'}"
        )
    if gc and p.gc_heap is not None:
        notes.append(
            f"GC heap {p.gc_heap:,} B, {best.name} expects {best.firmware.gc_heap_size:,} B: "
            f"`from Maix import utils; utils.gc_heap_size({best.firmware.gc_heap_size})`, then reset"
        )
    camera = best.camera.buffer_bytes
    if p.heap_free is not None:
        heap = p.heap_free
        source = f"system heap free {heap:,} B less the app's {best.camera.framesize} camera buffers ({camera:,} B)"
    else:
        heap = best.firmware.model_ram
        source = f"no Maix.utils.heap_free() on this firmware: {best.name}'s figure less the camera's {camera:,} B"
    return Match(best, tuple(notes), max(0, heap - camera), source, heap)


def release_that_fits(board: Board, room: int) -> tuple[Path | None, int, int]:
    """(the newest release in models/releases/ whose kmodel the profile's firmware loads and
    whose run-time RAM fits ``room``, or None; how many releases it loads; how many fit)."""
    from ..artifact import BuildArtifact
    from ..paths import releases

    loads = fits = 0
    newest = None
    for d in releases():  # oldest first
        art = BuildArtifact.find(d / "model.kmodel")
        if art is None or not art.runtime_bytes or not board.loads(art.kmodel_version):
            continue
        loads += 1
        if art.runtime_bytes <= room:
            fits += 1
            newest = d
    return newest, loads, fits


def report(p: Probe, m: Match) -> list[str]:
    def mib(n):
        return f"{n / 2**20:g} MiB"

    lines = [f"firmware: {p.banner}"]
    if p.uname:
        lines.append(f"  os.uname(): {p.uname[0]} {p.uname[1]} ({p.uname[2]}), {p.uname[3]}")
    lines.append(f"  KPU: {' and '.join(p.kpu_modules) or 'no KPU module'}")
    gc = f"GC heap {p.gc_heap:,} B" if p.gc_heap is not None else "GC heap"
    gc += (
        f" ({p.gc_free:,} B free"
        + (f", {p.gc_heap_setting:,} B after a reset" if p.gc_heap_setting not in (None, p.gc_heap) else "")
        + ")"
    )
    heap = f"system heap {p.heap_free:,} B free" if p.heap_free is not None else "no Maix.utils.heap_free()"
    lines.append(f"memory: {gc}; {heap}")
    lines.append("flash: " + (f"{mib(p.flash_size)} (address mirroring)" if p.flash_size else "size not readable"))
    lacks = p.image_lacks
    without = [feature for feature, calls in APP_IMAGE_CALLS.items() if any(n in lacks for n in calls)]
    lines.append(
        "image functions the app calls: "
        + ("all present" if not lacks else f"missing {', '.join(lacks)}: no {', no '.join(without)}")
    )
    lines.append(f"profile: {m.board.name} ({m.board.description})" + ("" if not m.notes else ", with differences:"))
    lines += [f"  {n}" for n in m.notes]
    lines.append(
        f"largest model: {m.room:,} B of run-time RAM ({m.room_source}; the profile says "
        f"{m.board.firmware.model_ram:,} B)"
    )
    newest, loads, fits = release_that_fits(m.board, m.room)
    fmts = "/".join(f"v{v}" for v in m.board.firmware.kmodel_versions)
    if newest is not None:
        lines.append(f"  {fits} of the {loads} releases fit; the newest: {newest}/model.kmodel")
    elif loads:
        lines.append(
            f"  none of the {loads} releases fits: build a smaller model "
            f"(pokedex-host shrink --board {m.board.name} --budget {m.heap}: the free heap, of which the "
            "build counts the camera's share itself)"
        )
    else:
        lines.append(
            f"  no release is a kmodel {fmts}, which this firmware loads: "
            f"pokedex-host build-kmodel --board {m.board.name}"
        )
    return lines


def probe(transport) -> Probe:
    repl = RawRepl(transport)
    return read_probe(repl)


@contextlib.contextmanager
def emulated_repl(board: Board, out: Path, log=print):
    """An emulated board with no main.py, sitting in its REPL behind a pty; yields the port path."""
    import os
    import threading
    import tty  # Unix-only: imported only when the emulator is used

    from ..emulator.host import emulate

    master, slave = os.openpty()
    tty.setraw(slave)
    tty.setraw(master)
    stop = threading.Event()
    failed: list[BaseException] = []

    def run():
        try:
            emulate(board, None, None, out, script=None, uart_fd=master, stop=stop, repl=True, log=log)
        except Exception as e:  # raised again below: it is why the probe got no answer
            failed.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield os.ttyname(slave)
    finally:
        stop.set()
        t.join(30)
        os.close(master)
        os.close(slave)
        if failed:
            raise failed[0]
