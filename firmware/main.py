# pokedex-k210 camera app: camera -> KPU -> LCD (name, dex, confidence, top-3, fps) + a result
# line on the UART. MaixPy-v1 / CanMV, MicroPython 1.11 syntax (no f-strings, no annotations).
import gc
import time

import lcd
import sensor

import pk_app
import pk_card

WHITE = (255, 255, 255)
GREEN = (0, 220, 90)
YELLOW = (255, 220, 0)
GREY = (160, 160, 160)
RED = (255, 64, 64)
BLACK = (0, 0, 0)


def setup_camera(cam):
    sensor.reset()
    sensor.set_pixformat(sensor.RGB565)
    sensor.set_framesize(sensor.QVGA)
    w = cam["window"]
    if w:
        sensor.set_windowing((w[0], w[1]))
    sensor.set_hmirror(1 if cam["hmirror"] else 0)
    sensor.set_vflip(1 if cam["vflip"] else 0)
    sensor.run(1)
    sensor.skip_frames(10)


def show_error(message):
    """Keep showing the camera with the error on top, so the board stays usable."""
    print("pokedex: " + message)
    try:
        setup_camera({"window": (224, 224), "hmirror": False, "vflip": False})
        camera = True
    except Exception:
        camera = False
    lines = pk_app.wrap(message, 36)  # 8 px characters (the board cuts a line at 39 on 320 px)
    while True:
        if camera:
            img = sensor.snapshot()
            img.draw_rectangle(0, 0, img.width(), 30 + 12 * len(lines), color=BLACK, fill=True)
            img.draw_string(4, 4, "pokedex error:", color=RED, scale=2)
            y = 28
            for line in lines:
                img.draw_string(4, y, line, color=WHITE, scale=1)
                y += 12
            lcd.display(img)
        else:
            lcd.clear(pk_app.LCD_BLACK)
            lcd.draw_string(4, 4, "pokedex error", pk_app.LCD_RED, pk_app.LCD_BLACK)
            y = 24
            for line in lines:
                lcd.draw_string(4, y, line, pk_app.LCD_WHITE, pk_app.LCD_BLACK)
                y += 14
            time.sleep_ms(1000)


def run():
    lcd.init()
    print("pokedex: start, " + pk_app.memory_line())
    try:
        cfg, path = pk_app.load_config()
        n = cfg["outputs"]
        dex, names, asciis = pk_app.load_labels(cfg["labels"], n)
        lacks = pk_app.image_lacks(pk_app.APP_CALLS)
        if lacks:
            raise pk_app.AppError("this firmware has no img.%s: the app cannot run on it; flash MaixPy-v1 full"
                                  % ", img.".join(lacks))
    except pk_app.AppError as e:
        show_error(str(e))
        return
    cam = cfg["camera"]
    try:  # the camera's buffers first: they share the system heap with the model
        setup_camera(cam)
    except Exception as e:
        show_error("camera: %s" % e)
        return
    try:
        note = pk_app.check_model_room(cfg)
        if note:
            print("pokedex: " + note)
        kpu = pk_app.KPUAdapter(cfg["api"], cfg["model"], cfg["model_size"])
    except pk_app.AppError as e:
        show_error(str(e))
        return
    print("pokedex: model loaded (%s), %s" % (cfg["api"], pk_app.memory_line()))
    uart = pk_app.open_uart(cfg, 4096)
    in_w, in_h = cfg["input"][0], cfg["input"][1]
    resize = cam["resize"]
    threshold = cfg["threshold"]
    weight = cfg["smoothing"]
    k = min(cfg["topk"], 5)
    card_cfg = cfg["card"]
    centre = card_cfg["centre"] if card_cfg else 0
    locator = False
    if card_cfg:
        lacks = pk_app.image_lacks(pk_app.LOCATOR_CALLS)
        locator = not lacks
        if lacks:  # e.g. MaixPy-v1's minimum build
            print("pokedex: this firmware has no img.%s: no card locator, the centre %dx%d of the frame is classified"
                  % (", img.".join(lacks), centre, centre))
    mirror = cfg["mirror"]  # also classify the crop's mirror image, average the logits
    if mirror and pk_app.image_lacks(pk_app.MIRROR_CALLS):
        print("pokedex: this firmware has no img.replace: no mirror image, one KPU run per frame")
        mirror = False
    probs = [0.0] * n
    avg = [0.0] * n if weight > 0 else None
    frame = 0
    fps = 0.0
    last = time.ticks_ms()
    while True:
        img = sensor.snapshot()
        fw = img.width()
        fh = img.height()
        corners = None
        if card_cfg:
            # locate the card, then classify the art window (or the centre when no card is found
            # or the firmware has no locator)
            corners = pk_card.find_card(img, card_cfg) if locator else None
            if corners:
                box = pk_card.art_box(corners, card_cfg, fw, fh)
            else:
                box = pk_card.centre_box(fw, fh, centre)
            x = img.copy(roi=box).resize(in_w, in_h)
        else:
            box = (0, 0, fw, fh)
            x = img.resize(in_w, in_h) if resize else img
        mirrored = None
        x.pix_to_ai()
        try:
            logits = kpu.run(x)
            if mirror and x is not img:  # the crop's mirror image too (never the frame the LCD shows)
                try:
                    x.replace(x, hmirror=True)
                except Exception as e:  # no replace(hmirror=), or no memory for its copy
                    print("pokedex: no mirror image (%s): one KPU run per frame" % e)
                    mirror = False
                else:
                    x.pix_to_ai()
                    mirrored = kpu.run(x)
        except Exception as e:
            img.draw_string(4, 4, "KPU error", color=RED, scale=2)
            lcd.display(img)
            print("pokedex: KPU error: %s" % e)
            continue
        if len(logits) < n:
            show_error("model gave %d outputs, config says %d" % (len(logits), n))
            return
        inv = 1.0 / pk_app.exp_into(logits, probs, mirrored)  # softmax = probs[i] * inv
        if weight > 0:
            pk_app.smooth_into(avg, probs, inv, 0.0 if frame == 0 else weight)
            top = pk_app.topk(avg, k)
        else:  # no smoothing: rank the exponentials, scale only the k kept
            top = [(i, v * inv) for i, v in pk_app.topk(probs, k)]
        now = time.ticks_ms()
        dt = time.ticks_diff(now, last)
        last = now
        if dt > 0:
            fps = 1000.0 / dt if fps == 0 else 0.8 * fps + 200.0 / dt
        best, conf = top[0]
        # no card in sight: the centre crop is a guess, named only when the model is very sure
        thr = max(threshold, card_cfg["no_card_threshold"]) if locator and not corners else threshold
        if corners:
            for i in range(4):
                a = corners[i]
                b = corners[(i + 1) % 4]
                img.draw_line(int(a[0]), int(a[1]), int(b[0]), int(b[1]), color=GREEN, thickness=2)
            img.draw_rectangle(box[0], box[1], box[2], box[3], color=YELLOW, thickness=1)
        elif locator:
            img.draw_rectangle(box[0], box[1], box[2], box[3], color=GREY, thickness=1)
            img.draw_string(fw - 76, 4, "no card", color=GREY, scale=1)
        elif card_cfg:  # no locator on this firmware: hold the card in the box
            img.draw_rectangle(box[0], box[1], box[2], box[3], color=YELLOW, thickness=1)
            img.draw_string(fw - 100, 4, "centre only", color=GREY, scale=1)
        if conf >= thr:
            img.draw_string(4, 4, asciis[best], color=YELLOW, scale=2)
            img.draw_string(4, 26, "#%04d  %d%%" % (dex[best], int(conf * 100 + 0.5)), color=WHITE, scale=2)
        else:
            img.draw_string(4, 4, "unknown", color=GREY, scale=2)
            img.draw_string(4, 26, "(%d%%)" % int(conf * 100 + 0.5), color=GREY, scale=2)
        y = img.height() - 14 * (len(top) + 1)
        for i, c in top:
            img.draw_string(4, y, "%s %d%%" % (asciis[i], int(c * 100 + 0.5)), color=WHITE, scale=1)
            y += 14
        img.draw_string(4, y, "%.1f fps" % fps, color=GREY, scale=1)
        lcd.display(img)
        line = "R\t%d\t%d\t%s\t%.3f\t%s\t%.1f\t%s\t%d,%d,%d,%d\t%s\n" % (
            frame,
            dex[best] if conf >= thr else 0,
            names[best] if conf >= thr else "unknown",
            conf,
            ",".join(["%d:%.3f" % (dex[i], c) for i, c in top]),
            fps,
            "card" if corners else ("none" if locator else "off"),
            box[0], box[1], box[2], box[3],
            ";".join(["%d,%d" % (int(p[0]), int(p[1])) for p in corners]) if corners else "-",
        )
        uart.write(line.encode("utf-8"))
        frame += 1
        if frame % 50 == 0:
            gc.collect()


run()
