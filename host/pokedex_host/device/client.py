"""Request/response over the bench protocol: sequence numbers, timeouts, retries, resync."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from . import protocol as proto
from .transport import Transport, TransportError


class BoardError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(f"board error {code}: {message}")
        self.code = code
        self.message = message


@dataclass
class Stats:
    sent: int = 0
    retries: int = 0  # resends after a timeout
    timeouts: int = 0
    naks: int = 0  # resends at once: the board NAKed the frame, or its answer arrived damaged or cut short
    stale: int = 0
    chunks: int = 0


class BenchClient:
    """``timeout``: how long an answer may take once the request is on the wire (the transfer
    time at the transport's baud rate is added). A frame the board NAKs, an answer that arrives
    damaged, or bytes that stop (``silence``) without making an answer are resent at once; only a
    link that stays quiet costs the timeout."""

    def __init__(
        self,
        transport: Transport,
        timeout: float = 10.0,
        retries: int = 3,
        chunk: int = proto.CHUNK_MAX,
        silence: float = 0.25,
        max_naks: int = 20,
    ):
        self.t = transport
        self.timeout = timeout
        self.retries = retries
        self.chunk = chunk
        self.silence = silence
        self.max_naks = max_naks
        self.seq = 0
        self.decoder = proto.Decoder()
        self.stats = Stats()
        self.info: dict | None = None

    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFF
        return self.seq

    def _wire_seconds(self, n: int) -> float:
        baud = getattr(self.t, "baud", None)
        return n * 10 / baud if baud else 0.0

    def request(self, ftype: int, payload: bytes, want: int, timeout: float | None = None) -> proto.Frame:
        """Send and wait for the reply with the same sequence number; resend at once on a NAK or
        a damaged answer, after the timeout otherwise."""
        seq = self._next_seq()
        frame = proto.encode(ftype, seq, payload)
        wait = (timeout or self.timeout) + self._wire_seconds(len(frame) + 64)
        last_error = None
        timeouts = naks = 0
        while True:
            self.t.write(frame)
            self.stats.sent += 1
            end = time.monotonic() + wait
            heard = None  # when the last byte arrived, once any has since this send
            resend = False
            while not resend and time.monotonic() < end:
                data = self.t.read(65536, min(0.02, max(0.0, end - time.monotonic())))
                now = time.monotonic()
                if data:
                    heard = now
                    for f in self.decoder.feed(data):
                        if f.seq != seq:
                            self.stats.stale += 1  # an answer to an earlier try: already handled or abandoned
                            continue
                        if f.type == proto.NAK:
                            resend = True
                            last_error = "the board received it damaged"
                            break
                        if f.type == proto.ERROR:
                            code, msg = proto.parse_error(f.payload)
                            raise BoardError(code, msg)
                        if f.type == want:
                            return f
                        last_error = f"unexpected frame type 0x{f.type:02X}"
                    if seq in self.decoder.take_damaged():
                        resend, last_error = True, "its answer arrived damaged"
                elif heard is not None and now - heard > self.silence:
                    # bytes came, then nothing for a while, and no answer: it was cut short by a
                    # lost byte or its header was damaged (the board writes an answer in one go)
                    self.decoder.drop_partial()
                    resend, last_error = True, "its answer arrived cut short or damaged"
            if resend:
                naks += 1
                self.stats.naks += 1
                if naks > self.max_naks:
                    break
                continue
            self.stats.timeouts += 1
            timeouts += 1
            last_error = f"no answer within {wait:.1f} s"
            if timeouts > self.retries:
                break
            self.stats.retries += 1
        raise TransportError(
            f"{self.t.name}: {last_error} ({timeouts} timeouts, {naks} resends)",
            "check the board runs bench.py, the port and the baud rate",
        )

    def hello(self) -> dict:
        f = self.request(proto.HELLO, b"", proto.HELLO_OK)
        self.info = json.loads(f.payload.decode("utf-8"))
        if self.info.get("proto") != proto.VERSION:
            raise TransportError(
                f"board speaks protocol {self.info.get('proto')}, this host speaks {proto.VERSION}",
                "update firmware/ on the board",
            )
        return self.info

    def upload(self, data: bytes) -> None:
        """The pixels in CHUNK frames, each acknowledged (and resent) on its own."""
        for off in range(0, len(data), self.chunk):
            part = data[off : off + self.chunk]
            f = self.request(proto.CHUNK, proto.chunk_payload(part, off, len(data)), proto.CHUNK_OK, timeout=1.0)
            if proto.parse_chunk_ok(f.payload) != (off, off + len(part)):
                raise TransportError(
                    f"{self.t.name}: the board acknowledged another chunk than {off}", "update firmware/ on the board"
                )
            self.stats.chunks += 1

    def infer(
        self, planar_rgb: bytes, width: int, height: int, topk: int = 5, timeout: float | None = None
    ) -> proto.Result:
        if len(planar_rgb) <= self.chunk:
            f = self.request(proto.INFER, proto.infer_payload(planar_rgb, width, height, topk), proto.RESULT, timeout)
            return proto.parse_result(f.payload)
        for attempt in range(2):
            self.upload(planar_rgb)
            try:
                f = self.request(proto.INFER, proto.infer_payload(None, width, height, topk), proto.RESULT, timeout)
                return proto.parse_result(f.payload)
            except BoardError as e:  # the board lost the upload (it was reset in between): once more
                if e.code != proto.E_UPLOAD or attempt:
                    raise
        raise AssertionError("unreachable")
