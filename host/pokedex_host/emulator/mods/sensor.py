"""Host version of MaixPy's ``sensor``: frames from an image folder, as the OV2640 would give them.

Each file becomes a QVGA (320x240) frame: scaled to cover and centre-cropped, reduced to RGB565
precision (5/6/5 bits), then windowed like MaixPy-v1's ``set_windowing``: the top-left w x h.
"""

import image as _image
import numpy as _np
from PIL import Image as _PIL

from pokedex_host.boards import camera_buffer_bytes as _camera_buffer_bytes
from pokedex_host.emulator.state import EmulatorDone
from pokedex_host.emulator.state import board as _board
from pokedex_host.pixels import to_rgb565 as _to_rgb565

RGB565 = 2
GRAYSCALE = 1
QQVGA = 1
QVGA = 2
VGA = 3
_SIZES = {QQVGA: (160, 120), QVGA: (320, 240), VGA: (640, 480)}
_state = {
    "reset": False,
    "format": None,
    "size": QVGA,
    "window": None,
    "hmirror": 0,
    "vflip": 0,
    "run": 0,
    "buffers": 0,
    "dual": False,
}


def _buffers(size):
    """What sensor_set_framesize mallocs from the system heap for a frame size: the RGB565 frame
    and the RGB888 copy the KPU reads, twice after reset(dual_buff=True) (boards.camera_buffer_bytes)."""
    return _camera_buffer_bytes(*_SIZES[size], dual_buff=_state["dual"])


def _free_buffers():
    if _state["buffers"]:
        _board().system_release(_state["buffers"], "camera buffers")
        _state["buffers"] = 0


def reset(freq=None, dual_buff=False):
    """sensor_reset: frees the frame buffers (sensor_init_fb); set_framesize allocates them again,
    two pairs with ``dual_buff``."""
    _free_buffers()
    _state.update(
        {"reset": True, "format": None, "size": QVGA, "window": None, "hmirror": 0, "vflip": 0, "dual": bool(dual_buff)}
    )


def _need_reset():
    if not _state["reset"]:
        raise OSError("sensor: call sensor.reset() first")


def set_pixformat(fmt):
    _need_reset()
    if fmt not in (RGB565, GRAYSCALE):
        raise ValueError("sensor: unsupported pixformat")
    _state["format"] = fmt


def set_framesize(size):
    _need_reset()
    if size not in _SIZES:
        raise ValueError("sensor: unsupported framesize")
    need = _buffers(size)
    if need != _state["buffers"]:  # sensor.c reallocates only when the size changes
        _free_buffers()
        if not _board().system_alloc(need, "camera buffers"):
            raise OSError(12, "ENOMEM")  # py_sensor_set_framesize: mp_raise_OSError(ENOMEM)
        _state["buffers"] = need
    _state["size"] = size
    _state["window"] = None


def set_windowing(roi):
    """MaixPy-v1 (omv/sensor.c sensor_set_windowing): the OV2640 driver has no windowing hook,
    only the DVP image size changes, so the frame is the sensor's top-left w x h — not the centre
    (upstream issue sipeed/MaixPy-v1#191); w and h must be multiples of 8."""
    _need_reset()
    w, h = roi[-2], roi[-1]
    fw, fh = _SIZES[_state["size"]]
    if w > fw or h > fh:
        raise ValueError("sensor: window %dx%d is larger than the frame %dx%d" % (w, h, fw, fh))
    if w % 8 or h % 8:
        raise ValueError("sensor: window %dx%d: width and height must be multiples of 8" % (w, h))
    _state["window"] = (w, h)


def set_hmirror(enable):
    _state["hmirror"] = 1 if enable else 0


def set_vflip(enable):
    _state["vflip"] = 1 if enable else 0


def run(enable):
    _need_reset()
    _state["run"] = enable


def skip_frames(n=None, time=None):
    _need_reset()


def width():
    return (_state["window"] or _SIZES[_state["size"]])[0]


def height():
    return (_state["window"] or _SIZES[_state["size"]])[1]


def _frame(src, fw, fh):
    b = _board()
    if isinstance(src, _PIL.Image):
        im, name = src, "video"
    else:
        im, name = _PIL.open(src), src.name
        im.load()
    if im.size != (fw, fh):
        b.warn(
            "frame %s is %dx%d; the sensor gives %dx%d: scaled to cover and centre-cropped"
            % (name, im.size[0], im.size[1], fw, fh)
        )
    rgb = im.convert("RGB")
    s = max(fw / rgb.width, fh / rgb.height)
    nw, nh = max(fw, round(rgb.width * s)), max(fh, round(rgb.height * s))
    rgb = rgb.resize((nw, nh), _PIL.BILINEAR)
    left, top = (nw - fw) // 2, (nh - fh) // 2
    a = _np.asarray(rgb.crop((left, top, left + fw, top + fh)), dtype=_np.uint8)
    # RGB565: 5 bits red, 6 green, 5 blue; the KPU path expands them back to 8 bits
    return _to_rgb565(a)


def snapshot():
    _need_reset()
    if _state["format"] is None:
        raise OSError("sensor: set_pixformat first")
    b = _board()
    if b.max_frames is not None and b.frame_index >= b.max_frames:
        raise EmulatorDone("frame limit reached")
    if b.video is not None:
        ok, bgr = b.video.read()
        if not ok:
            raise EmulatorDone("end of video")
        path = _PIL.fromarray(bgr[..., ::-1].copy())
        name = "video#%d" % b.frame_index
    else:
        if b.frame_index >= len(b.frames):
            raise EmulatorDone("no more frames")
        path = b.frames[b.frame_index]
        name = path.name
    b.frame_index += 1
    fw, fh = _SIZES[_state["size"]]
    a = _frame(path, fw, fh)
    # the OV2640 mirrors / flips in the sensor (REG04), before the DVP takes its window
    if _state["hmirror"]:
        a = a[:, ::-1]
    if _state["vflip"]:
        a = a[::-1]
    if _state["window"]:  # the top-left corner (see set_windowing)
        w, h = _state["window"]
        a = a[:h, :w]
    if _state["format"] == GRAYSCALE:
        g = (a.astype(_np.uint16).sum(-1) // 3).astype(_np.uint8)
        a = _np.stack([g, g, g], -1)
    b.event("frame", index=b.frame_index - 1, file=name)
    return _image.Image._from_array(a, ai=True, heap=False)  # the frame buffer, not the GC heap
