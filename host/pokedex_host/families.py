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
        "maixpy",
        "maixpy",
        (3,),
        "import KPU as kpu; kpu.load(path or flash address); kpu.forward(task, img); fmap[:]",
        _APP,
        (*_MAIXPY_MODS, "KPU"),
        "MaixPy-v1's KPU library (binary; kmodel v3 like kpu.c of the K210 SDK, "
        "with a fused multiply-add in DEQUANTIZE and x (1/k) in GLOBAL_AVERAGE_POOL2D)",
        "maixpy",
    ),
    "canmv": FirmwareFamily(
        "canmv",
        "canmv",
        (5,),
        "from maix import KPU; KPU().load_kmodel(path); run_with_output(img, getlist=True)",
        _APP,
        (*_MAIXPY_MODS, "maix"),
        "nncase's runtime compiled into CanMV (feat/kpu)",
        None,
    ),
    "baremetal": FirmwareFamily(
        "baremetal",
        None,
        (3, 5),
        "C: kpu_load_kmodel / kpu_run_kmodel (K210 SDK) or nncase's runtime",
        (),
        (),
        "your own C program (kpu.c of the K210 SDK for v3)",
        "sdk",
    ),
}


# The Image methods the MicroPython apps call, by what they serve (firmware/pk_app.py keeps the
# same lists and asks hasattr): without "camera app" (or "bench server") that app cannot run;
# without the others the camera app does without the feature. What a firmware build lacks is in
# boards/firmware/<family>.toml.
APP_IMAGE_CALLS: dict[str, tuple[str, ...]] = {
    "camera app": ("width", "height", "copy", "resize", "pix_to_ai", "draw_string", "draw_line", "draw_rectangle"),
    "bench server": ("set_pixel", "pix_to_ai"),
    "card locator": ("find_rects", "find_blobs", "get_statistics", "binary", "gaussian"),
    "mirror image": ("replace",),
}
_WITHOUT = {
    "card locator": "classifies the fixed centre window of the frame (hold the card in the yellow box)",
    "mirror image": "runs the KPU once per frame (no mirror average)",
}


def app_support(board, bench_app: bool = False) -> list[str]:
    """Whether the app runs on ``board``'s firmware build: raises when the build lacks what it
    cannot do without; returns a warning per feature it will run without."""
    build = board.firmware.build
    if build is None:
        return []
    app = "bench server" if bench_app else "camera app"
    where = f"{build.path} [flavours.{build.flavour}]"
    missing = build.lacks(APP_IMAGE_CALLS[app])
    if missing:
        raise PokedexError(
            f"{board.name}: the {app} calls img.{', img.'.join(missing)}, which {where} says this "
            "firmware does not have",
            "pick a profile whose firmware has them (maix-bit: MaixPy-v1 full)",
        )
    if bench_app:
        return []
    out = []
    for feature, without in _WITHOUT.items():
        missing = build.lacks(APP_IMAGE_CALLS[feature])
        if missing:
            out.append(
                f"{board.name}'s firmware ({build.family} {build.flavour}, {where}) "
                f"has no img.{', img.'.join(missing)}: "
                f"the app runs without its {feature} and {without}; the full firmware (profile maix-bit) has it"
            )
    return out


def family(name: str) -> FirmwareFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise PokedexError(
            f"unknown firmware family {name!r}", f"[firmware] family in a board profile is one of {', '.join(FAMILIES)}"
        ) from None


def app_family(name: str, board: str) -> FirmwareFamily:
    """The family, when it runs the MicroPython camera app."""
    f = family(name)
    if f.api is None:
        raise PokedexError(
            f"{board}: firmware family {name!r} does not run the MicroPython app",
            "pick a MaixPy or CanMV profile (boards/*.toml) for the camera app",
        )
    return f
