"""Board + firmware profiles, read from ``boards/*.toml`` into one frozen :class:`Board`.

One file per board/firmware pairing (``maix-bit`` = Maix Bit with stock MaixPy full firmware).
Every question about the device — RAM left for a model, which kmodel versions load, flash
addresses, baud, camera window — is answered from this object, never from constants in code.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .errors import PokedexError
from .sizes import parse_size


@dataclass(frozen=True)
class FirmwareBuild:
    """One firmware build as its source defines it (``boards/firmware/<family>.toml``): what the
    REPL says about itself and which image functions it leaves out."""

    family: str
    flavour: str
    platform: str  # sys.platform / os.uname().sysname
    board_name: str  # MICROPY_HW_BOARD_NAME
    mcu_name: str  # MICROPY_HW_MCU_NAME
    kpu_module: str  # "KPU" (import KPU) or "maix.KPU" (from maix import KPU)
    git_tag: str
    release: str
    build_date: str
    config: str  # where the source says what the flavour leaves out
    image_lacks: tuple[str, ...]  # Image methods this build does not have
    path: Path

    @property
    def banner(self) -> str:
        """The friendly REPL's first line (pyexec.c: MICROPY_GIT_TAG, MICROPY_BUILD_DATE, board, MCU)."""
        return f"MicroPython {self.git_tag} on {self.build_date}; {self.board_name} with {self.mcu_name}"

    def lacks(self, names) -> list[str]:
        """The ones of ``names`` this build does not have, in the order given."""
        return [n for n in names if n in self.image_lacks]


@dataclass(frozen=True)
class FirmwareProfile:
    family: str  # "maixpy" | "canmv" | "baremetal": selects the firmware KPU adapter
    flavour: str
    image: str
    source: str
    kmodel_versions: tuple[int, ...]
    default_format: str  # "v3" | "v5"
    gc_heap_size: int
    # the free system heap after boot (Maix.utils.heap_free() before the app allocates anything: the
    # GC heap is already out of it), which the model and the app's camera buffers share
    model_ram: int
    model_ram_source: str  # where that figure comes from (shown in build reports and errors)
    uart_baud: int
    runtime_nncase: str | None = None
    build: FirmwareBuild | None = None  # boards/firmware/<family>.toml [flavours.<flavour>]; None: no MicroPython


@dataclass(frozen=True)
class FlashMap:
    firmware_address: int
    model_address: int
    model_region_end: int
    filesystem: tuple[int, int] | None
    baud: tuple[int, ...]


# sensor.c's frame sizes (MaixPy-v1 components/micropython/port/src/omv/sensor.c `resolution`),
# by the name sensor.<NAME> has in MicroPython
FRAMESIZES = {
    "QQCIF": (88, 72),
    "QCIF": (176, 144),
    "CIF": (352, 288),
    "QQSIF": (88, 60),
    "QSIF": (176, 120),
    "SIF": (352, 240),
    "QQQQVGA": (40, 30),
    "QQQVGA": (80, 60),
    "QQVGA": (160, 120),
    "QVGA": (320, 240),
    "VGA": (640, 480),
    "HQQQVGA": (60, 40),
    "HQQVGA": (120, 80),
    "HQVGA": (240, 160),
    "WVGA": (720, 480),
    "WVGA2": (752, 480),
    "SVGA": (800, 600),
    "SXGA": (1280, 1024),
    "UXGA": (1600, 1200),
}


def camera_buffer_bytes(width: int, height: int, dual_buff: bool = False) -> int:
    """What ``sensor.set_framesize`` mallocs from the system heap for a ``width`` x ``height``
    frame (sensor.c): the RGB565 frame, rounded up to 128 B, and the planar RGB888 copy the KPU
    reads, rounded up to 64 B; two such pairs after ``sensor.reset(dual_buff=True)``."""
    pair = (width * height * 2 + 127) // 128 * 128 + (width * height * 3 + 63) // 64 * 64
    return 2 * pair if dual_buff else pair


@dataclass(frozen=True)
class CameraProfile:
    pixformat: str
    framesize: str
    window: tuple[int, int]

    @property
    def size(self) -> tuple[int, int]:
        return FRAMESIZES[self.framesize]

    @property
    def buffer_bytes(self) -> int:
        """The app's camera buffers in the system heap: one pair at the frame size (firmware/main.py
        calls sensor.reset() without dual_buff); set_windowing crops without reallocating."""
        return camera_buffer_bytes(*self.size)


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    chip: str
    kflash_board: str
    general_sram: int
    kpu_sram: int
    flash_size: int
    lcd: tuple[int, int]
    camera_sensor: str
    usb_serial: tuple[str, ...]
    firmware: FirmwareProfile
    nncase: str  # compiler release this profile is built and verified with
    flash: FlashMap
    camera: CameraProfile
    path: Path

    def loads(self, kmodel_version: int) -> bool:
        return kmodel_version in self.firmware.kmodel_versions

    @property
    def model_room(self) -> int:
        """Run-time RAM left for a model once the app's camera buffers are out of the free heap."""
        return self.firmware.model_ram - self.camera.buffer_bytes


_FORMATS = ("v3", "v5")


def _need(table: dict, key: str, where: str):
    if key not in table:
        raise PokedexError(f"{where}: missing key {key!r}", "compare with boards/maix-bit.toml")
    return table[key]


def firmware_builds_dir() -> Path:
    return paths.boards_dir() / "firmware"


def load_firmware_build(family: str, flavour: str, where: str = "") -> FirmwareBuild | None:
    """The build ``family`` / ``flavour`` from ``boards/firmware/<family>.toml``; None when the
    family has no such file (bare metal: no MicroPython)."""
    path = firmware_builds_dir() / f"{family}.toml"
    if not path.is_file():
        return None
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise PokedexError(f"firmware table {path} is not valid TOML: {e}", "fix the line named") from e
    flavours = raw.get("flavours") or {}
    if flavour not in flavours:
        raise PokedexError(
            f"{where or 'a profile'}: firmware flavour {flavour!r} is not in {path}",
            f'use one of {", ".join(flavours)} or add [flavours."{flavour}"] to {path.name}',
        )
    fl = flavours[flavour]
    here = f"{path} [flavours.{flavour}]"
    try:
        return FirmwareBuild(
            family=family,
            flavour=flavour,
            platform=_need(raw, "platform", str(path)),
            board_name=_need(raw, "board_name", str(path)),
            mcu_name=_need(raw, "mcu_name", str(path)),
            kpu_module=_need(raw, "kpu_module", str(path)),
            git_tag=_need(raw, "git_tag", str(path)),
            release=_need(raw, "release", str(path)),
            build_date=_need(raw, "build_date", str(path)),
            config=_need(fl, "config", here),
            image_lacks=tuple(str(n) for n in _need(fl, "image_lacks", here)),
            path=path,
        )
    except TypeError as e:
        raise PokedexError(
            f"{here} has a value of the wrong type: {e}", "compare with boards/firmware/maixpy.toml"
        ) from e


def load_board_file(path: Path) -> Board:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise PokedexError(f"cannot read board profile {path}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise PokedexError(f"board profile {path} is not valid TOML: {e}", "fix the line named") from e
    where = str(path)
    try:
        b = _need(raw, "board", where)
        fw = _need(raw, "firmware", where)
        fl = _need(raw, "flash", where)
        cam = _need(raw, "camera", where)
        comp = _need(raw, "compiler", where)
        default_format = _need(fw, "default_format", where)
        fam_name = _need(fw, "family", where)
        from .families import FAMILIES

        if fam_name not in FAMILIES:
            raise PokedexError(
                f"{where}: firmware family {fam_name!r} is not one of {', '.join(FAMILIES)}",
                "families are the rows of host/pokedex_host/families.py",
            )
        fam = FAMILIES[fam_name]
        versions = tuple(int(v) for v in _need(fw, "kmodel_versions", where))
        if not set(versions) <= set(fam.kmodel_versions):
            raise PokedexError(
                f"{where}: kmodel_versions {list(versions)} but {fam_name} firmware loads {list(fam.kmodel_versions)}",
                "fix [firmware] kmodel_versions",
            )
        if default_format not in _FORMATS:
            raise PokedexError(f"{where}: default_format {default_format!r} is not one of {_FORMATS}")
        fs = tuple(fl.get("filesystem") or ()) or None
        if not str(fw.get("model_ram_source", "")).strip():
            raise PokedexError(
                f"{where}: [firmware] model_ram has no model_ram_source",
                'add model_ram_source = "...": where the free-heap figure comes from (a board\'s '
                "`pokedex-host probe`, an issue, Sipeed's docs); see docs/boards.md",
            )
        framesize = _need(cam, "framesize", where)
        if framesize not in FRAMESIZES:
            raise PokedexError(
                f"{where}: [camera] framesize {framesize!r} is not a sensor frame size",
                "use one of " + ", ".join(FRAMESIZES) + " (MaixPy's sensor.<NAME>)",
            )
        return Board(
            name=_need(raw, "name", where),
            description=raw.get("description", ""),
            chip=_need(b, "chip", where),
            kflash_board=_need(b, "kflash_board", where),
            general_sram=parse_size(_need(b, "general_sram", where), what=f"{where} general_sram"),
            kpu_sram=parse_size(_need(b, "kpu_sram", where), what=f"{where} kpu_sram"),
            flash_size=parse_size(_need(b, "flash_size", where), what=f"{where} flash_size"),
            lcd=tuple(_need(b, "lcd", where)),
            camera_sensor=b.get("camera", "ov2640"),
            usb_serial=tuple(b.get("usb_serial", ())),
            firmware=FirmwareProfile(
                family=fam_name,
                flavour=_need(fw, "flavour", where),
                image=_need(fw, "image", where),
                source=fw.get("source", ""),
                kmodel_versions=versions,
                default_format=default_format,
                gc_heap_size=parse_size(fw.get("gc_heap_size", 0), what=f"{where} gc_heap_size", allow_zero=True),
                model_ram=parse_size(_need(fw, "model_ram", where), what=f"{where} model_ram"),
                model_ram_source=str(fw["model_ram_source"]).strip(),
                uart_baud=int(fw.get("uart_baud", 115200)),
                runtime_nncase=fw.get("runtime_nncase"),
                build=load_firmware_build(fam_name, _need(fw, "flavour", where), where),
            ),
            nncase=_need(comp, "nncase", where),
            flash=FlashMap(
                firmware_address=int(_need(fl, "firmware_address", where)),
                model_address=int(_need(fl, "model_address", where)),
                model_region_end=int(_need(fl, "model_region_end", where)),
                filesystem=fs,  # type: ignore[arg-type]
                baud=tuple(int(x) for x in _need(fl, "baud", where)),
            ),
            camera=CameraProfile(
                pixformat=_need(cam, "pixformat", where),
                framesize=framesize,
                window=tuple(_need(cam, "window", where)),  # type: ignore[arg-type]
            ),
            path=path,
        )
    except (TypeError, ValueError) as e:
        raise PokedexError(f"board profile {path} has a value of the wrong type: {e}") from e


def available_boards() -> dict[str, Path]:
    d = paths.boards_dir()
    return {p.stem: p for p in sorted(d.glob("*.toml"))}


def get_board(name_or_path: str) -> Board:
    """Look a profile up by name (``maix-bit``) or load it from a ``.toml`` path."""
    p = Path(name_or_path)
    if p.suffix == ".toml" and p.is_file():
        return load_board_file(p)
    boards = available_boards()
    if name_or_path not in boards:
        raise PokedexError(
            f"unknown board {name_or_path!r}",
            "choose one of: " + ", ".join(boards) + " (or pass a path to a profile .toml)",
        )
    board = load_board_file(boards[name_or_path])
    if board.name != name_or_path:
        raise PokedexError(f"{boards[name_or_path]}: name = {board.name!r} differs from its file name")
    return board
