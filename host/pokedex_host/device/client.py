"""Request/response over the bench protocol: sequence numbers, timeouts, retries, resync."""

from __future__ import annotations

import json
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
    retries: int = 0
    timeouts: int = 0
    stale: int = 0


class BenchClient:
    def __init__(self, transport: Transport, timeout: float = 10.0, retries: int = 3):
        self.t = transport
        self.timeout = timeout
        self.retries = retries
        self.seq = 0
        self.decoder = proto.Decoder()
        self.stats = Stats()
        self.info: dict | None = None

    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFF
        return self.seq

    def request(self, ftype: int, payload: bytes, want: int, timeout: float | None = None) -> proto.Frame:
        """Send and wait for the reply with the same sequence number; resend on timeout."""
        seq = self._next_seq()
        frame = proto.encode(ftype, seq, payload)
        last_error = None
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
            self.t.write(frame)
            self.stats.sent += 1
            import time

            end = time.monotonic() + (timeout or self.timeout)
            while time.monotonic() < end:
                data = self.t.read(65536, min(0.05, max(0.0, end - time.monotonic())))
                if not data:
                    continue
                for f in self.decoder.feed(data):
                    if f.seq != seq:
                        self.stats.stale += 1  # an answer to an earlier try: already handled or abandoned
                        continue
                    if f.type == proto.ERROR:
                        code, msg = proto.parse_error(f.payload)
                        raise BoardError(code, msg)
                    if f.type == want:
                        return f
                    last_error = f"unexpected frame type 0x{f.type:02X}"
            self.stats.timeouts += 1
            last_error = last_error or f"no answer within {timeout or self.timeout:.1f} s"
        raise TransportError(f"{self.t.name}: {last_error} after {self.retries + 1} tries",
                             "check the board runs bench.py, the port and the baud rate")

    def hello(self) -> dict:
        f = self.request(proto.HELLO, b"", proto.HELLO_OK)
        self.info = json.loads(f.payload.decode("utf-8"))
        if self.info.get("proto") != proto.VERSION:
            raise TransportError(f"board speaks protocol {self.info.get('proto')}, this host speaks {proto.VERSION}",
                                 "update firmware/ on the board")
        return self.info

    def infer(self, planar_rgb: bytes, width: int, height: int, topk: int = 5, timeout: float | None = None) -> proto.Result:
        f = self.request(proto.INFER, proto.infer_payload(planar_rgb, width, height, topk), proto.RESULT, timeout)
        return proto.parse_result(f.payload)
