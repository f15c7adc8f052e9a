# pokedex-k210 bench wire protocol, version 2 (docs/specs/wire-protocol.md).
# MicroPython 1.11 syntax: no f-strings, no annotations. Shared by spec with the host harness.
try:
    import ustruct as struct
except ImportError:
    import struct

try:
    from ubinascii import crc32 as _crc32
except ImportError:
    try:
        from binascii import crc32 as _crc32
    except ImportError:
        _crc32 = None

MAGIC0 = 0xA5
MAGIC1 = 0x5A
VERSION = 2
HEADER = 10
MAX_PAYLOAD = 262144

HELLO = 0x01
HELLO_OK = 0x81
INFER = 0x02
RESULT = 0x82
PING = 0x03
PONG = 0x83
CHUNK = 0x04
CHUNK_OK = 0x84
NAK = 0x7E
ERROR = 0x7F
CHUNK_MAX = 4096

E_FRAME = 1
E_SIZE = 2
E_KPU = 3
E_FORMAT = 4
E_MODEL = 5
E_UPLOAD = 6

_TABLE = None


def _table():
    global _TABLE
    if _TABLE is None:
        t = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
            t.append(c)
        _TABLE = t
    return _TABLE


def crc32(data, crc=0):
    if _crc32 is not None:
        return _crc32(data, crc) & 0xFFFFFFFF
    t = _table()
    crc = crc ^ 0xFFFFFFFF
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def encode(ftype, seq, payload=b""):
    head = struct.pack("<BBBBHI", MAGIC0, MAGIC1, VERSION, ftype, seq & 0xFFFF, len(payload))
    crc = crc32(payload, crc32(head))
    return head + payload + struct.pack("<I", crc)


class Parser:
    """Feed bytes in any pieces; frames come out whole. Garbage, bad versions, bad CRCs and
    lengths over MAX_PAYLOAD are skipped by searching for the next magic (counted in .dropped)."""

    def __init__(self, max_payload=MAX_PAYLOAD):
        self.buf = bytearray()
        self.max_payload = max_payload
        self.dropped = 0
        self.bad_frames = 0
        self.naks = []  # sequence numbers of frames that arrived whole but damaged (CRC)

    def reset(self):
        """Drop a partial frame; returns its sequence number when its header was whole (to NAK)."""
        seq = self.pending_seq()
        self.dropped += len(self.buf)
        self.buf = bytearray()
        return seq

    def pending_seq(self):
        buf = self.buf
        if len(buf) >= HEADER and buf[0] == MAGIC0 and buf[1] == MAGIC1:
            ver, ftype, seq, length = struct.unpack_from("<BBHI", buf, 2)
            if ver == VERSION and length <= self.max_payload:
                return seq
        return None

    def take_naks(self):
        out = self.naks
        self.naks = []
        return out

    def feed(self, data):
        if data:
            self.buf.extend(data)
        frames = []
        while True:
            f = self._one()
            if f is None:
                return frames
            frames.append(f)

    def pending(self):
        return len(self.buf)

    def _skip(self, n):
        self.dropped += n
        self.buf = self.buf[n:]

    def _one(self):
        buf = self.buf
        while True:
            i = 0
            n = len(buf)
            while i + 1 < n and not (buf[i] == MAGIC0 and buf[i + 1] == MAGIC1):
                i += 1
            if i:
                self._skip(i if (i + 1 < n or buf[n - 1] == MAGIC0) else n)
                buf = self.buf
            if len(buf) < HEADER:
                return None
            ver, ftype, seq, length = struct.unpack_from("<BBHI", buf, 2)
            if ver != VERSION or length > self.max_payload:
                self.bad_frames += 1
                self._skip(1)
                buf = self.buf
                continue
            total = HEADER + length + 4
            if len(buf) < total:
                return None
            body = bytes(buf[:HEADER + length])
            (crc,) = struct.unpack_from("<I", buf, HEADER + length)
            if crc32(body) != crc:
                self.bad_frames += 1
                self.naks.append(seq)
                self._skip(1)
                buf = self.buf
                continue
            self.buf = buf[total:]
            return ftype, seq, body[HEADER:]


def result_payload(top, kpu_us, total_us):
    out = struct.pack("<B", len(top))
    for idx, score in top:
        out += struct.pack("<Hf", idx, score)
    return out + struct.pack("<II", kpu_us & 0xFFFFFFFF, total_us & 0xFFFFFFFF)


def error_payload(code, message):
    return struct.pack("<H", code) + message.encode("utf-8")


def chunk_header(payload):
    """(offset, total) of a CHUNK payload: u32 offset, u32 total, then the bytes."""
    return struct.unpack_from("<II", payload, 0)


def chunk_ok_payload(start, end):
    return struct.pack("<II", start, end)
