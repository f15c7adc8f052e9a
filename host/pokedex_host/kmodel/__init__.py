"""kmodel file formats (like esptool's ``bin_image``): detection here; ``v3`` (reader),
``write_v3``, ``kpu`` + ``interp`` (the v3 interpreter), ``v5`` (reader), ``sched`` (nncase 1.9's
schedule files: buffers and memory layout) and ``from_nncase`` (an nncase 1.9 v5 build re-emitted
as v3). Nothing here imports the build pipeline (``compile/``): the formats sit below it.

- v3 (nncase 0.1, what every MaixPy-v1 build loads): starts with the u32 3, arch 0.
- v4 / v5 (nncase 0.2 / 1.x): start with ``LDMK`` (the C constant 'KMDL' stored little-endian),
  then the u32 version.
"""

from __future__ import annotations

import struct
from pathlib import Path

from ..errors import PokedexError


class KmodelFormatError(PokedexError):
    """A kmodel file that cannot be what it claims; carries the byte offset at fault."""

    def __init__(self, offset: int, reason: str, path: str | None = None):
        where = f"{path}: " if path else ""
        super().__init__(
            f"{where}bad kmodel at offset {offset} (0x{offset:X}): {reason}",
            "the file is truncated, corrupt or not a kmodel; rebuild or re-download it",
        )
        self.offset = offset
        self.reason = reason


def detect_version(data: bytes) -> int:
    """3, 4 or 5; raises :class:`KmodelFormatError` for anything else."""
    if len(data) < 8:
        raise KmodelFormatError(0, f"{len(data)} bytes is too short for a kmodel header")
    if data[:4] == b"LDMK":
        (v,) = struct.unpack_from("<I", data, 4)
        if v in (4, 5):
            return v
        raise KmodelFormatError(4, f"'KMDL' kmodel with unknown version {v}")
    (v,) = struct.unpack_from("<I", data, 0)
    if v == 3:
        return 3
    raise KmodelFormatError(0, f"neither a v3 header (u32 3) nor 'KMDL' magic (first bytes {data[:8].hex()})")


def detect_file_version(path: Path | str) -> int:
    with open(path, "rb") as f:
        head = f.read(8)
    try:
        return detect_version(head)
    except KmodelFormatError as e:
        raise KmodelFormatError(e.offset, e.reason, str(path)) from None
