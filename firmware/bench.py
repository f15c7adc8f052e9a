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


def handle(kpu, cfg, ftype, seq, payload, send):
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
        if fmt != 0 or len(payload) != 6 + 3 * w * h:
            send(pk_proto.ERROR, seq, pk_proto.error_payload(pk_proto.E_FORMAT, "format %d with %d bytes" % (fmt, len(payload))))
            return
        img = make_image(fmt, w, h, memoryview(payload)[6:])
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
        kpu = pk_app.KPUAdapter(cfg["api"], cfg["model"])
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

    last = time.ticks_ms()
    while True:
        data = uart.read(4096)
        if not data:
            # a frame cut short by a lost byte would wait forever: drop it after 500 ms of silence
            if parser.pending() and time.ticks_diff(time.ticks_ms(), last) > 500:
                parser.reset()
            time.sleep_ms(1)
            continue
        last = time.ticks_ms()
        for ftype, seq, payload in parser.feed(data):
            handle(kpu, cfg, ftype, seq, payload, send)
            gc.collect()


run()
