"""Firmware families: one row per family, everything the host knows about it in one table.

A board profile (``boards/*.toml``) names its family in ``[firmware] family``; what that family
loads, which app files go onto the board, how the app reaches the KPU, and which MaixPy-style
modules the emulator provides for it are here. A new family is a new row (plus its branch in
``firmware/pk_app.KPUAdapter`` on the board side and its stand-ins under ``emulator/mods``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import PokedexError


@dataclass(frozen=True)
class FirmwareFamily:
    name: str
    api: str | None  # pokedex.json "api": the KPUAdapter branch of firmware/pk_app.py; None = no app
    kmodel_versions: tuple[int, ...]  # what its KPU runtime loads
    kpu_calls: str  # how the app talks to the KPU
    app_files: tuple[str, ...]  # firmware/ files install copies (main.py is the camera app or bench.py)
    emulator_modules: tuple[str, ...]  # stand-ins under emulator/mods the app imports on this family
    runtime: str  # whose KPU runtime, for the docs and error messages
    v3_runtime: str | None  # the v3 interpreter's mode that matches it (kmodel/interp.RUNTIMES); None: no v3


_APP = ("pk_app.py", "pk_proto.py", "pk_card.py")
_MAIXPY_MODS = ("sensor", "image", "lcd", "machine", "fpioa_manager", "Maix")

FAMILIES: dict[str, FirmwareFamily] = {
    "maixpy": FirmwareFamily(
        "maixpy", "maixpy", (3,), "import KPU as kpu; kpu.load(path or flash address); kpu.forward(task, img); fmap[:]",
        _APP, (*_MAIXPY_MODS, "KPU"), "MaixPy-v1's KPU library (binary; kmodel v3 like kpu.c of the K210 SDK, "
        "with a fused multiply-add in DEQUANTIZE and x (1/k) in GLOBAL_AVERAGE_POOL2D)", "maixpy"),
    "canmv": FirmwareFamily(
        "canmv", "canmv", (5,), "from maix import KPU; KPU().load_kmodel(path); run_with_output(img, getlist=True)",
        _APP, (*_MAIXPY_MODS, "maix"), "nncase's runtime compiled into CanMV (feat/kpu)", None),
    "baremetal": FirmwareFamily(
        "baremetal", None, (3, 5), "C: kpu_load_kmodel / kpu_run_kmodel (K210 SDK) or nncase's runtime", (), (),
        "your own C program (kpu.c of the K210 SDK for v3)", "sdk"),
}


def family(name: str) -> FirmwareFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise PokedexError(f"unknown firmware family {name!r}",
                           f"[firmware] family in a board profile is one of {', '.join(FAMILIES)}") from None


def app_family(name: str, board: str) -> FirmwareFamily:
    """The family, when it runs the MicroPython camera app."""
    f = family(name)
    if f.api is None:
        raise PokedexError(f"{board}: firmware family {name!r} does not run the MicroPython app",
                           "pick a MaixPy or CanMV profile (boards/*.toml) for the camera app")
    return f
