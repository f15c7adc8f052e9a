"""Bench wire protocol v2, host side, written from docs/specs/wire-protocol.md (the firmware has
its own implementation of the same text; they share nothing else)."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

MAGIC = b"\xa5\x5a"
VERSION = 2
HEADER = struct.Struct("<2sBBHI")
MAX_PAYLOAD = 262_144

HELLO, HELLO_OK, INFER, RESULT, PING, PONG, ERROR = 0x01, 0x81, 0x02, 0x82, 0x03, 0x83, 0x7F
CHUNK, CHUNK_OK, NAK = 0x04, 0x84, 0x7E
CHUNK_MAX = 4096  # bytes of pixels per CHUNK frame
E_FRAME, E_SIZE, E_KPU, E_FORMAT, E_MODEL, E_UPLOAD = 1, 2, 3, 4, 5, 6
FORMAT_RGB_PLANAR = 0


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes


def encode(ftype: int, seq: int, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes is over the protocol's {MAX_PAYLOAD}")
    head = HEADER.pack(MAGIC, VERSION, ftype, seq & 0xFFFF, len(payload))
    return head + payload + struct.pack("<I", zlib.crc32(head + payload) & 0xFFFFFFFF)


class Decoder:
    """Incremental decoder: garbage, bad CRCs, wrong versions and oversize lengths are skipped
    (resynchronising on the next magic) and counted; nothing is allocated for a bad length."""

    def __init__(self, max_payload: int = MAX_PAYLOAD):
        self.buf = bytearray()
        self.max_payload = max_payload
        self.skipped = 0
        self.bad = 0
        self.damaged: list[int] = []  # sequence numbers of frames that arrived whole but failed their CRC

    def drop_partial(self) -> None:
        self.skipped += len(self.buf)
        self.buf.clear()

    def take_damaged(self) -> list[int]:
        out, self.damaged = self.damaged, []
        return out

    def feed(self, data: bytes) -> list[Frame]:
        self.buf += data
        out = []
        while True:
            i = self.buf.find(MAGIC)
            if i < 0:
                keep = 1 if self.buf.endswith(MAGIC[:1]) else 0
                self.skipped += len(self.buf) - keep
                del self.buf[: len(self.buf) - keep]
                return out
            if i:
                self.skipped += i
                del self.buf[:i]
            if len(self.buf) < HEADER.size:
                return out
            _, ver, ftype, seq, length = HEADER.unpack_from(self.buf)
            if ver != VERSION or length > self.max_payload:
                self.bad += 1
                del self.buf[:1]
                continue
            total = HEADER.size + length + 4
            if len(self.buf) < total:
                return out
            (crc,) = struct.unpack_from("<I", self.buf, HEADER.size + length)
            if zlib.crc32(self.buf[: HEADER.size + length]) & 0xFFFFFFFF != crc:
                self.bad += 1
                self.damaged.append(seq)
                del self.buf[:1]
                continue
            out.append(Frame(ftype, seq, bytes(self.buf[HEADER.size : HEADER.size + length])))
            del self.buf[:total]


def infer_payload(planar_rgb: bytes | None, width: int, height: int, topk: int = 5) -> bytes:
    """INFER: the image header, then the pixels -- or nothing, when they were sent in CHUNKs."""
    head = struct.pack("<BHHB", FORMAT_RGB_PLANAR, width, height, topk)
    if planar_rgb is None:
        return head
    if len(planar_rgb) != 3 * width * height:
        raise ValueError("expected %d bytes of planar RGB, got %d" % (3 * width * height, len(planar_rgb)))
    return head + planar_rgb


def chunk_payload(data: bytes, offset: int, total: int) -> bytes:
    return struct.pack("<II", offset, total) + data


def parse_chunk_ok(payload: bytes) -> tuple[int, int]:
    return struct.unpack_from("<II", payload)


@dataclass(frozen=True)
class Result:
    top: list[tuple[int, float]]
    kpu_us: int
    total_us: int


def parse_result(payload: bytes) -> Result:
    k = payload[0]
    need = 1 + 6 * k + 8
    if len(payload) != need:
        raise ValueError(f"RESULT payload is {len(payload)} bytes, expected {need} for k={k}")
    top = [struct.unpack_from("<Hf", payload, 1 + 6 * i) for i in range(k)]
    kpu_us, total_us = struct.unpack_from("<II", payload, 1 + 6 * k)
    return Result([(int(a), float(b)) for a, b in top], kpu_us, total_us)


def parse_error(payload: bytes) -> tuple[int, str]:
    (code,) = struct.unpack_from("<H", payload)
    return code, payload[2:].decode("utf-8", "replace")
