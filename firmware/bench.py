# pokedex-k210 bench server: receives images over the UART in the framed protocol
# (docs/specs/wire-protocol.md), runs the KPU, answers with top-k and timings.
# MaixPy-v1 / CanMV, MicroPython 1.11 syntax.
import gc
import time

import image
import lcd

try:
    import ujson as json
except ImportError:
    import json

import pk_app
import pk_proto


def make_image(fmt, w, h, data):
    if fmt != 0:
        return None
    img = image.Image(size=(w, h))
    plane = w * h
    for y in range(h):
        row = y * w
        for x in range(w):
            p = row + x
            img.set_pixel(x, y, (data[p], data[plane + p], data[2 * plane + p]))
    return img


class Upload:
    """The pixels of the next INFER, sent in CHUNK frames (each acknowledged on its own, so a
    damaged chunk costs one chunk, not the image). One buffer, reused while the size stays."""

    def __init__(self):
        self.buf = None
        self.total = 0

    def chunk(self, payload):
        if len(payload) < 8:
            return None
        off, total = pk_proto.chunk_header(payload)
        n = len(payload) - 8
        if total > pk_proto.MAX_PAYLOAD or off + n > total:
            return None
        if self.buf is None or self.total != total:
            self.buf = None
            gc.collect()
            self.buf = bytearray(total)
            self.total = total
        self.buf[off:off + n] = memoryview(payload)[8:]
        return off, off + n


def handle(kpu, cfg, ftype, seq, payload, send, upload=None):
    if ftype == pk_proto.CHUNK:
        got = upload.chunk(payload) if upload is not None else None
        if got is None:
            send(pk_proto.ERROR, seq, pk_proto.error_payload(pk_proto.E_FRAME, "bad CHUNK"))
        else:
            send(pk_proto.CHUNK_OK, seq, pk_proto.chunk_ok_payload(got[0], got[1]))
        return
    if ftype == pk_proto.HELLO:
        info = {"proto": pk_proto.VERSION, "api": cfg["api"], "input": cfg["input"], "outputs": cfg["outputs"],
                "model": cfg["model"]}
        send(pk_proto.HELLO_OK, seq, json.dumps(info).encode("utf-8"))
    elif ftype == pk_proto.PING:
        send(pk_proto.PONG, seq, payload)
    elif ftype == pk_proto.INFER:
        t0 = time.ticks_us()
        if len(payload) < 6:
            send(pk_proto.ERROR, seq, pk_proto.error_payload(pk_proto.E_FRAME, "short INFER payload"))
            return
        fmt = payload[0]
        w = payload[1] | (payload[2] << 8)
        h = payload[3] | (payload[4] << 8)
        k = payload[5]
        if [w, h] != list(cfg["input"]):
            send(pk_proto.ERROR, seq, pk_proto.error_payload(
                pk_proto.E_SIZE, "image %dx%d, model input %dx%d" % (w, h, cfg["input"][0], cfg["input"][1])))
            return
        if len(payload) == 6:
            if upload is None or upload.total != 3 * w * h:
                send(pk_proto.ERROR, seq, pk_proto.error_payload(
                    pk_proto.E_UPLOAD, "no %d-byte upload for a %dx%d image" % (3 * w * h, w, h)))
                return
            pixels = memoryview(upload.buf)  # sent before in CHUNK frames
        elif len(payload) == 6 + 3 * w * h:
            pixels = memoryview(payload)[6:]
        else:
            pixels = None
        if fmt != 0 or pixels is None:
            send(pk_proto.ERROR, seq, pk_proto.error_payload(pk_proto.E_FORMAT, "format %d with %d bytes" % (fmt, len(payload))))
            return
        img = make_image(fmt, w, h, pixels)
        img.pix_to_ai()
        t1 = time.ticks_us()
        try:
            out = kpu.run(img)
        except Exception as e:
            send(pk_proto.ERROR, seq, pk_proto.error_payload(pk_proto.E_KPU, str(e)))
            return
        t2 = time.ticks_us()
        top = pk_app.topk(out, max(1, min(k, 10)))
        del img
        send(pk_proto.RESULT, seq, pk_proto.result_payload(top, time.ticks_diff(t2, t1), time.ticks_diff(time.ticks_us(), t0)))
    else:
        send(pk_proto.ERROR, seq, pk_proto.error_payload(pk_proto.E_FRAME, "unknown frame type %d" % ftype))


def run():
    lcd.init()
    print("pokedex bench: start, " + pk_app.memory_line())
    try:
        cfg, path = pk_app.load_config()
        kpu = pk_app.KPUAdapter(cfg["api"], cfg["model"], cfg["model_size"])
    except pk_app.AppError as e:
        lcd.draw_string(4, 4, "bench error", pk_app.LCD_RED, pk_app.LCD_BLACK)
        lcd.draw_string(4, 24, str(e)[:40], pk_app.LCD_WHITE, pk_app.LCD_BLACK)
        print("pokedex bench: %s" % e)
        return
    uart = pk_app.open_uart(cfg, 8192)
    parser = pk_proto.Parser()
    lcd.draw_string(4, 4, "pokedex bench ready", pk_app.LCD_YELLOW, pk_app.LCD_BLACK)
    print("pokedex bench: ready, " + pk_app.memory_line())

    def send(ftype, seq, payload):
        uart.write(pk_proto.encode(ftype, seq, payload))

    upload = Upload()
    last = time.ticks_ms()
    while True:
        data = uart.read(4096)
        if not data:
            # a frame cut short by a lost byte would wait forever: after 200 ms of silence drop it
            # and NAK it, so the host resends at once instead of waiting out its timeout
            if parser.pending() and time.ticks_diff(time.ticks_ms(), last) > 200:
                seq = parser.reset()
                if seq is not None:
                    send(pk_proto.NAK, seq, b"")
            time.sleep_ms(1)
            continue
        last = time.ticks_ms()
        frames = parser.feed(data)
        for seq in parser.take_naks():  # arrived whole but damaged: ask for it again now
            send(pk_proto.NAK, seq, b"")
        for ftype, seq, payload in frames:
            handle(kpu, cfg, ftype, seq, payload, send, upload)
            gc.collect()


run()
