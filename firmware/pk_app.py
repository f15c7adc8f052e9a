# pokedex-k210 firmware helpers: config, labels, the KPU adapter, scoring.
# Runs on MaixPy-v1 and CanMV (MicroPython 1.11 syntax: no f-strings, no annotations).
import gc
import math

try:
    import ujson as json
except ImportError:
    import json

CONFIG_PATHS = ("/sd/pokedex.json", "/flash/pokedex.json")

# the keys pokedex.json must hold: the host writes every one (host/pokedex_host/boardconfig.py,
# docs/specs/board-config.md); the app reads them as written and has no defaults of its own
APP_KEYS = ("version", "api", "model", "model_size", "model_runtime", "labels", "outputs", "input", "camera",
            "threshold", "mirror", "smoothing", "topk", "uart", "gc_heap_size", "card")
CAMERA_KEYS = ("framesize", "window", "resize", "hmirror", "vflip")
UART_KEYS = ("baud", "tx", "rx")
# the card locator's (pk_card.py); "card" is null when the app classifies the camera window
CARD_KEYS = ("art", "margin", "centre", "scale", "rect_threshold", "mask_threshold", "aspect", "min_height",
             "mask_scale", "strip", "desk_k", "desk_margin", "chroma_k", "art_look", "art_outside",
             "no_card_threshold", "max_cos", "side_ratio", "blob_look", "blob_from", "blob_density", "texture",
             "loose")

# lcd.draw_string takes integer colours (a tuple is a TypeError on MaixPy-v1), in MaixPy's
# byte-swapped RGB565: these are lcd.h's WHITE, BLACK, RED, YELLOW (lcd.RED == 0x00F8)
LCD_WHITE = 0xFFFF
LCD_BLACK = 0x0000
LCD_RED = 0x00F8
LCD_YELLOW = 0xE0FF


# Image methods the app calls, by what they serve (host/pokedex_host/families.py APP_IMAGE_CALLS
# holds the same lists): the app cannot run without APP_CALLS; without the locator's it classifies
# the fixed centre window, without the mirror's it runs the KPU once per frame. MaixPy-v1's
# minimum build has none of the last two (boards/firmware/maixpy.toml).
APP_CALLS = ("width", "height", "copy", "resize", "pix_to_ai", "draw_string", "draw_line", "draw_rectangle")
LOCATOR_CALLS = ("find_rects", "find_blobs", "get_statistics", "binary", "gaussian")
MIRROR_CALLS = ("replace",)

# sensor.set_framesize(QVGA) mallocs the RGB565 frame and its RGB888 copy for the KPU from the
# system heap, where kpu.load puts the model too (omv/sensor.c)
CAMERA_BYTES = 320 * 240 * 2 + 320 * 240 * 3


class AppError(Exception):
    pass


def image_lacks(names):
    """The ones of ``names`` this firmware's images do not have (asked of a small image)."""
    import image

    img = image.Image(size=(8, 8))
    out = [n for n in names if not hasattr(img, n)]
    del img
    return out


def heap_free():
    """Free system heap (where kpu.load puts the model), or None when the firmware cannot say."""
    try:
        from Maix import utils
    except ImportError:
        return None
    if not hasattr(utils, "heap_free"):
        return None
    return utils.heap_free()


def check_model_room(cfg):
    """Before kpu.load: raise AppError when the model's run-time size (pokedex.json
    "model_runtime", written by the host from the build) is more than the free system heap,
    saying what is needed, what is free and what to change. Returns why it could not check, or
    None."""
    need = cfg["model_runtime"]
    if not need:
        return "no model_runtime in pokedex.json: the model's size is not checked before kpu.load"
    free = heap_free()
    if free is None:
        return "no Maix.utils.heap_free() on this firmware: the model's size is not checked before kpu.load"
    if need <= free:
        return None
    gc.collect()
    gc_total = gc.mem_free() + gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0
    fix = "a smaller model"
    if not image_lacks(LOCATOR_CALLS):  # not the minimum build yet (it has none of them)
        fix += "; the minimum firmware (no card locator)"
    if gc_total > 256 * 1024:
        fix += "; or a smaller GC heap (%d B now): Maix.utils.gc_heap_size(262144), reset" % gc_total
    raise AppError("model %s needs %d B, system heap has %d B free (camera's %d B taken). Fix: %s"
                   % (cfg["model"], need, free, CAMERA_BYTES, fix))


def wrap(text, width):
    """``text`` as lines of at most ``width`` characters, broken at spaces where it can be."""
    lines = []
    line = ""
    for word in text.split(" "):
        while len(word) > width:
            if line:
                lines.append(line)
                line = ""
            lines.append(word[:width])
            word = word[width:]
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = line + " " + word if line else word
    if line:
        lines.append(line)
    return lines


def check_keys(cfg, path):
    """AppError naming the first key the host writes that ``cfg`` lacks (an older host's file)."""
    for keys, d, where in ((APP_KEYS, cfg, ""), (CAMERA_KEYS, cfg.get("camera"), "camera."),
                           (UART_KEYS, cfg.get("uart"), "uart."), (CARD_KEYS, cfg.get("card"), "card.")):
        if d is None and where == "card.":
            continue
        if not isinstance(d, dict):
            raise AppError("%s: %s is not an object" % (path, where[:-1] or "the file"))
        for key in keys:
            if key not in d:
                raise AppError("%s: missing %s%s (written by an older pokedex-host: install again)"
                               % (path, where, key))


def load_config():
    for path in CONFIG_PATHS:
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        try:
            cfg = json.loads(text)
        except ValueError:
            raise AppError("%s is not valid JSON" % path)
        check_keys(cfg, path)
        return cfg, path
    raise AppError("no pokedex.json on /sd or /flash")


def load_labels(path, outputs):
    dex = []
    names = []
    asciis = []
    try:
        f = open(path)
    except OSError:
        raise AppError("labels file %s is missing" % path)
    try:
        n = 0
        for line in f:
            n += 1
            line = line.rstrip("\r\n")
            if not line:
                continue
            parts = line.split("\t")
            if len(parts) != 3:
                raise AppError("%s line %d: expected dex<TAB>name<TAB>ascii" % (path, n))
            dex.append(int(parts[0]))
            names.append(parts[1])
            asciis.append(parts[2])
    finally:
        f.close()
    if len(names) < outputs:
        raise AppError("%s has %d labels; the model has %d outputs" % (path, len(names), outputs))
    return dex, names, asciis


class KPUAdapter:
    """One interface over MaixPy's KPU module (kmodel v3) and CanMV's maix.KPU (kmodel v5)."""

    def __init__(self, api, model, size=None):
        self.api = api
        self.task = None
        self.k = None
        if api == "maixpy":
            import KPU as kpu
            self.kpu = kpu
            try:
                self.task = kpu.load(model)
            except Exception as e:
                raise AppError("model %s: %s" % (model, e))
        elif api == "canmv":
            from maix import KPU
            self.k = KPU()
            try:
                if isinstance(model, int):  # a flash address: CanMV needs the size too
                    self.k.load_kmodel(model, size)
                else:
                    self.k.load_kmodel(model)
            except Exception as e:
                raise AppError("model %s: %s" % (model, e))
        else:
            raise AppError("unknown api %s (maixpy or canmv)" % api)

    def run(self, img):
        if self.api == "maixpy":
            fmap = self.kpu.forward(self.task, img)
            return fmap[:]
        return self.k.run_with_output(img, getlist=True)

    def deinit(self):
        if self.task is not None:
            self.kpu.deinit(self.task)
            self.task = None
        if self.k is not None:
            self.k.deinit()
            self.k = None
        gc.collect()


def exp_into(logits, out, other=None):
    """exp(logit - max) of the first len(out) logits into the list ``out`` (no allocation per
    frame); returns their sum, so out[i] / sum is the softmax. One interpreted loop: the maximum
    runs in C (the builtin), and the division is left to whoever reads the values.

    With ``other`` (the logits of the mirrored crop) the exponent is the mean of the two logits
    less the mean's maximum (a second loop: the board's single-precision exp is 0 below about
    -104, so shifting by anything larger could leave every term 0)."""
    n = len(out)
    exp = math.exp
    total = 0.0
    if other is None:
        m = max(logits) if len(logits) == n else max(logits[:n])
        for i in range(n):
            e = exp(logits[i] - m)
            out[i] = e
            total += e
        return total
    for i in range(n):
        out[i] = logits[i] + other[i]
    m = max(out)
    for i in range(n):
        e = exp(0.5 * (out[i] - m))
        out[i] = e
        total += e
    return total


def smooth_into(avg, values, scale, weight):
    """Exponential moving average of scale * values: avg = weight * avg + (1 - weight) * scale * values."""
    w1 = (1.0 - weight) * scale
    for i in range(len(avg)):
        avg[i] = weight * avg[i] + w1 * values[i]


def topk(values, k):
    """[(index, value)] of the k largest, best first."""
    best = []
    for i in range(len(values)):
        v = values[i]
        if len(best) < k:
            best.append((i, v))
            best.sort(key=lambda t: -t[1])
        elif v > best[-1][1]:
            best[-1] = (i, v)
            best.sort(key=lambda t: -t[1])
    return best


def open_uart(cfg, read_buf_len):
    """UART1 on the pins pokedex.json names (routed with fm.register first: without it UART1
    sends nothing), else UARTHS, which is also the REPL (print() shares the wire). ``read``
    waits at most timeout_char (10 ms) and returns None when nothing came: callers poll."""
    from machine import UART
    u = cfg["uart"]
    baud = u["baud"]
    if u["tx"] is not None and u["rx"] is not None:
        from fpioa_manager import fm
        fm.register(u["tx"], fm.fpioa.UART1_TX, force=True)
        fm.register(u["rx"], fm.fpioa.UART1_RX, force=True)
        return UART(UART.UART1, baud, 8, 0, 1, read_buf_len=read_buf_len)
    return UART(UART.UARTHS, baud, 8, 0, 1, read_buf_len=read_buf_len)


def memory_line():
    gc.collect()
    line = "gc free %d" % gc.mem_free()
    try:
        from Maix import utils  # MaixPy-v1 has no top-level utils
        line += ", heap free %d" % utils.heap_free()
    except (ImportError, AttributeError):
        pass
    return line
