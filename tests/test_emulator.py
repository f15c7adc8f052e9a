"""The firmware, unmodified, on the emulated board: camera frames in, KPU in the nncase simulator,
LCD PNGs and UART lines out; the board's refusals and errors reproduced."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pokedex_host.boards import get_board, load_board_file
from pokedex_host.device import protocol as proto
from pokedex_host.emulator.host import emulate
from pokedex_host.pixels import G628, RB528

pytestmark = pytest.mark.toolchain


def _frames(folder: Path, n: int, size=(320, 240), seed=0) -> Path:
    """Frames whose colours are exact in RGB565 as MaixPy expands it, so the sensor's quantisation
    changes nothing."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = size[1], size[0]
        r5 = rng.integers(0, 32, (h // 8, w // 8)).repeat(8, 0).repeat(8, 1)
        g6 = rng.integers(0, 64, (h // 8, w // 8)).repeat(8, 0).repeat(8, 1)
        b5 = rng.integers(0, 32, (h // 8, w // 8)).repeat(8, 0).repeat(8, 1)
        a = np.stack([RB528[r5], G628[g6], RB528[b5]], -1).astype(np.uint8)  # MaixPy's 5/6 -> 8 bit tables
        Image.fromarray(a).save(folder / f"f{i:03d}.png")
    return folder


EXACT = {
    "camera": {"framesize": "QVGA", "window": [64, 64], "resize": False, "hmirror": False, "vflip": False},
    "card": None,
    "smoothing": 0.0,
    "threshold": 0.0,
}


def test_canmv_app_predictions_equal_the_simulator(tiny_build, tmp_path):
    from pokedex_host.toolchain import Worker

    frames = _frames(tmp_path / "frames", 4)
    res = emulate(
        get_board("maix-bit-canmv"),
        tiny_build / "model.kmodel",
        frames,
        tmp_path / "emu",
        config_overrides=EXACT,
        log=lambda m: None,
    )
    assert res.exit_code == 0, res.console
    assert res.frames == 4 and res.lcd_frames == 4 and len(res.uart_lines) == 4
    assert not res.warnings
    x = np.stack(
        [np.asarray(Image.open(f))[0:64, 0:64].transpose(2, 0, 1) for f in sorted(frames.iterdir())]
    )  # set_windowing: top-left
    with Worker() as w:
        logits = w.simulate(tiny_build / "model.kmodel", x, tmp_path)
    expected = [int(i) + 1 for i in logits.argmax(1)]
    got = [int(line.split("\t")[2]) for line in res.uart_lines]
    assert got == expected
    png = Image.open(res.out / "lcd_0000.png")
    assert png.size == (320, 240)


def test_maixpy_adapter_refuses_v5_like_the_board(tiny_build, tmp_path):
    res = emulate(
        get_board("maix-bit"),
        tiny_build / "model.kmodel",
        _frames(tmp_path / "f", 2),
        tmp_path / "emu",
        log=lambda m: None,
    )
    assert res.exit_code == 0  # the app survives and shows the error
    assert "ERR_KMODEL_VERSION" in res.console and "load error:2002" in res.console
    assert res.lcd_frames == 2 and not res.uart_lines


def test_model_too_big_for_the_heap(tiny_build, tmp_path):
    # 100 kB left once the camera has its 384,000 B
    text = get_board("maix-bit-canmv").path.read_text().replace('model_ram = "3.5MB"', 'model_ram = "484kB"')
    (tmp_path / "small.toml").write_text(text.replace('name = "maix-bit-canmv"', 'name = "small"'))
    board = load_board_file(tmp_path / "small.toml")
    frames = _frames(tmp_path / "f", 1)
    res = emulate(board, tiny_build / "model.kmodel", frames, tmp_path / "emu", log=lambda m: None)
    assert "needs" in res.console and "100000 B free" in res.console  # the app's own check, before kpu.load
    # a config without the model's size (written before the app checked): kpu.load refuses it itself
    res = emulate(
        board,
        tiny_build / "model.kmodel",
        frames,
        tmp_path / "emu2",
        config_overrides={"model_runtime": None},
        log=lambda m: None,
    )
    assert "ERR_NO_MEM" in res.console and "2006" in res.console


def test_missing_model_and_short_labels_show_on_the_lcd(tiny_build, tmp_path):
    frames = _frames(tmp_path / "f", 1)
    res = emulate(
        get_board("maix-bit-canmv"),
        tiny_build / "model.kmodel",
        frames,
        tmp_path / "e1",
        config_overrides={"model": "/sd/nothing.kmodel"},
        log=lambda m: None,
    )
    assert "ERR_READ_FILE" in res.console and res.lcd_frames == 1
    short = tmp_path / "classes.txt"
    short.write_text("0001\tBulbasaur\tBulbasaur\n")
    res = emulate(
        get_board("maix-bit-canmv"),
        tiny_build / "model.kmodel",
        frames,
        tmp_path / "e2",
        labels=short,
        config_overrides={"outputs": 1025},
        log=lambda m: None,
    )
    assert "has 1 labels; the model has 1025 outputs" in res.console
    lcd = np.asarray(Image.open(tmp_path / "e2" / "lcd_0000.png"))
    assert (lcd[..., 0] > 200).any()  # the red error title is drawn


def test_utf8_names_on_uart_ascii_on_lcd_and_odd_frames(tiny_build, tmp_path):
    labels = tmp_path / "classes.txt"
    labels.write_text("".join(f"{i:04d}\tFlabébé\tFlabebe\n" for i in range(1, 1026)), encoding="utf-8")
    frames = _frames(tmp_path / "f", 2, size=(500, 300))
    res = emulate(
        get_board("maix-bit-canmv"),
        tiny_build / "model.kmodel",
        frames,
        tmp_path / "emu",
        labels=labels,
        config_overrides={**EXACT, "camera": {**EXACT["camera"]}},
        log=lambda m: None,
    )
    assert res.exit_code == 0
    assert all(line.split("\t")[3] == "Flabébé" for line in res.uart_lines)
    assert not [w for w in res.warnings if "non-ASCII" in w]
    assert any("496x296" in w and "320x240" in w for w in res.warnings)  # other sizes are converted, and said so


def test_firmware_cannot_call_what_maixpy_lacks(tmp_path):
    fw = tmp_path / "fw"
    fw.mkdir()
    (fw / "main.py").write_text("import sensor\nsensor.reset()\nsensor.set_auto_magic(1)\n")
    res = emulate(get_board("maix-bit-canmv"), None, None, tmp_path / "emu", firmware=fw, log=lambda m: None)
    assert res.exit_code == 3 and "AttributeError" in res.console and "set_auto_magic" in res.console


def test_bench_server_over_a_pty_survives_garbage(tiny_build, tmp_path):
    import serial

    link = tmp_path / "board-uart"
    out: dict = {}
    stop = threading.Event()
    t = threading.Thread(
        target=lambda: out.setdefault(
            "res",
            emulate(
                get_board("maix-bit-canmv"),
                tiny_build / "model.kmodel",
                None,
                tmp_path / "emu",
                script="bench.py",
                uart_link=link,
                timeout=120,
                stop=stop,
                log=lambda m: None,
            ),
        )
    )
    t.start()
    for _ in range(200):
        if link.exists():
            break
        time.sleep(0.05)
    port = serial.Serial(str(link), 115200, timeout=0.2)
    dec = proto.Decoder()
    seen = []

    def ask(frame: bytes, want: int, seconds=30.0):
        port.write(frame)
        end = time.time() + seconds
        while time.time() < end:
            for f in dec.feed(port.read(4096)):
                seen.append(f)
                if f.type in (want, proto.ERROR):
                    return f
        raise AssertionError("no answer")

    hello = ask(b"\x00garbage\xa5\x5a\x07" + proto.encode(proto.HELLO, 1), proto.HELLO_OK)
    assert hello.seq == 1 and b'"proto": 2' in hello.payload
    corrupt = bytearray(proto.encode(proto.PING, 2, b"abc"))
    corrupt[-1] ^= 0xFF  # bad CRC: the board NAKs it (seq 2) and carries on
    oversize = proto.encode(proto.PING, 3, b"")[:6] + (10**9).to_bytes(4, "little")  # length over the maximum
    pong = ask(bytes(corrupt) + oversize + proto.encode(proto.PING, 4, b"xyz"), proto.PONG)
    assert (pong.seq, pong.payload) == (4, b"xyz")
    assert [f.seq for f in seen if f.type == proto.NAK] == [2]
    img = np.random.default_rng(0).integers(0, 256, (3, 64, 64), dtype=np.uint8)
    r = ask(proto.encode(proto.INFER, 5, proto.infer_payload(img.tobytes(), 64, 64, 3)), proto.RESULT, 120)
    res = proto.parse_result(r.payload)
    assert r.seq == 5 and len(res.top) == 3 and res.kpu_us > 0 and res.total_us >= res.kpu_us
    bad = ask(proto.encode(proto.INFER, 6, proto.infer_payload(bytes(3 * 32 * 32), 32, 32)), proto.RESULT)
    assert bad.type == proto.ERROR and proto.parse_error(bad.payload)[0] == 2
    port.close()
    stop.set()
    t.join(30)
    assert out["res"].exit_code == 0  # stopped cleanly by the host


def test_frames_from_a_video_file(tiny_build, tmp_path):
    import cv2

    video = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (320, 240))
    for i in range(3):
        w.write(np.full((240, 320, 3), 40 * i, np.uint8))
    w.release()
    res = emulate(get_board("maix-bit-canmv"), tiny_build / "model.kmodel", video, tmp_path / "emu", log=lambda m: None)
    assert res.exit_code == 0 and res.frames == 3 and len(res.uart_lines) == 3


def _run_script(tmp_path, code: str, **kw):
    import shutil

    from pokedex_host.paths import firmware_dir

    fw = tmp_path / "fw"
    fw.mkdir(exist_ok=True)
    shutil.copyfile(firmware_dir() / "pk_app.py", fw / "pk_app.py")  # the app's helpers, as on the board
    (fw / "main.py").write_text(code)
    return emulate(get_board("maix-bit"), None, None, tmp_path / "emu", firmware=fw, log=lambda m: None, **kw)


def test_image_stand_in_is_rgb565_and_pix_to_ai_returns_none(tmp_path):
    res = _run_script(
        tmp_path,
        (
            "import image\n"
            "img = image.Image(size=(2, 1))\n"
            "img.set_pixel(0, 0, (255, 3, 7))\n"
            "img.set_pixel(1, 0, (100, 130, 200))\n"
            "print('PIX', img.get_pixel(0, 0), img.get_pixel(1, 0), img.pix_to_ai())\n"
        ),
    )
    assert res.exit_code == 0, res.console
    # 5/6/5 bits through MaixPy's rounding tables and back: g 3 -> 1 -> 4, b 7 -> 1 -> 8, b 200 -> 24 -> 197
    assert "PIX (255, 4, 8) (99, 130, 197) None" in res.console


def test_uart_stand_in_waits_timeout_char_and_unrouted_uart1_sends_nothing(tmp_path):
    res = _run_script(
        tmp_path,
        (
            "import time\n"
            "from machine import UART\n"
            "u = UART(UART.UART1, 115200, 8, 0, 1, timeout=1000, read_buf_len=64)\n"  # no fm.register
            "u.write(b'lost')\n"
            "h = UART(UART.UARTHS, 115200, 8, 0, 1, timeout=1000, read_buf_len=64)\n"
            "t = time.ticks_ms()\n"
            "r = h.read(16)\n"
            "print('READ', r, time.ticks_diff(time.ticks_ms(), t) < 500)\n"
        ),
    )
    assert res.exit_code == 0, res.console
    assert "READ None True" in res.console  # returns None after timeout_char, not after timeout=1000
    assert any("fm.register" in w for w in res.warnings)
    assert b"lost" not in (tmp_path / "emu" / "uart.log").read_bytes()


def test_print_shares_the_wire_once_the_app_talks_over_uarths(tmp_path):
    import serial

    link = tmp_path / "wire"
    got = bytearray()
    done = threading.Event()

    def reader():
        for _ in range(200):
            if link.exists():
                break
            time.sleep(0.05)
        port = serial.Serial(str(link), 115200, timeout=0.1)
        try:
            while not done.is_set():
                got.extend(port.read(4096))
        except serial.SerialException:  # the emulated board ended: its end of the wire is gone
            pass
        port.close()

    th = threading.Thread(target=reader)
    th.start()
    res = _run_script(
        tmp_path,
        (
            "import time\nfrom machine import UART\n"
            "time.sleep_ms(300)\n"
            "u = UART(UART.UARTHS, 115200)\n"
            "u.write(b'FRAME')\n"
            "print('pokedex bench: ready')\n"
            "time.sleep_ms(300)\n"
        ),
        uart_link=link,
    )
    done.set()
    th.join()
    assert res.exit_code == 0, res.console
    assert b"FRAME" in got and b"pokedex bench: ready\r\n" in got


def test_gc_heap_accounts_the_big_allocations_and_raises_memoryerror(tmp_path):
    # the 224 px bench plan: one upload buffer, one image and its pix_ai fit the 512 KB heap ...
    res = _run_script(
        tmp_path,
        (
            "import gc, image\n"
            "free0 = gc.mem_free()\n"
            "up = bytearray(3 * 224 * 224)\n"
            "img = image.Image(size=(224, 224))\n"
            "img.pix_to_ai()\n"
            "print('PLAN', free0 - gc.mem_free())\n"
            "try:\n"
            "    more = [bytearray(3 * 224 * 224), bytearray(3 * 224 * 224)]  # the payload twice more: no\n"
            "    print('NO ERROR')\n"
            "except MemoryError as e:\n"
            "    print('MEMORYERROR', e)\n"
            "del up, img\n"
            "gc.collect()\n"
            "print('BACK', gc.mem_free() == free0)\n"
        ),
    )
    assert res.exit_code == 0, res.console
    plan = 150528 + 224 * 224 * 2 + 256 * 224 * 3  # upload + RGB565 image + pix_ai with w rounded up to 64
    assert f"PLAN {plan}" in res.console
    assert "MEMORYERROR memory allocation failed, allocating 150528 bytes" in res.console
    assert "BACK True" in res.console


def test_kpu_forward_fmap_slice_is_a_tuple(tiny_v3_build, tmp_path):
    fw = tmp_path / "fw"
    fw.mkdir()
    (fw / "main.py").write_text(
        "import KPU as kpu, image\n"
        "t = kpu.load('/sd/model.kmodel')\n"
        "img = image.Image(size=(128, 128))\n"
        "img.pix_to_ai()\n"
        "out = kpu.forward(t, img)[:]\n"
        "print('FMAP', type(out).__name__, len(out))\n"
    )
    res = emulate(
        get_board("maix-bit"), tiny_v3_build / "model.kmodel", None, tmp_path / "emu", firmware=fw, log=lambda m: None
    )
    assert res.exit_code == 0, res.console
    assert "FMAP tuple 1025" in res.console


def test_lcd_integer_colours_are_maixpys_byte_swapped_rgb565(tmp_path):
    from PIL import Image as PILImage

    res = _run_script(
        tmp_path,
        (
            "import lcd\n"
            "import pk_app\n"
            "lcd.init()\n"
            "lcd.clear(pk_app.LCD_RED)\n"
            "lcd.clear((0, 0, 255))\n"  # py_lcd_clear takes a tuple too
            "lcd.clear(lcd.YELLOW)\n"
            "try:\n"
            "    lcd.draw_string(0, 0, 'x', (255, 0, 0), 0)\n"
            "except TypeError:\n"
            "    print('TUPLE REFUSED')\n"
        ),
    )
    assert res.exit_code == 0, res.console
    assert "TUPLE REFUSED" in res.console
    shots = sorted((tmp_path / "emu").glob("lcd_*.png"))
    px = [tuple(np.asarray(PILImage.open(p))[120, 160]) for p in shots[:3]]
    assert px == [(255, 0, 0), (0, 0, 255), (255, 255, 0)]  # lcd.RED is red, pk_app's constant too


def test_canmv_load_kmodel_from_an_address_needs_the_size(tmp_path):
    fw = tmp_path / "fw"
    fw.mkdir()
    (fw / "main.py").write_text(
        "from maix import KPU\n"
        "try:\n"
        "    KPU().load_kmodel(0x300000)\n"
        "except TypeError as e:\n"
        "    print('NEEDS SIZE', e)\n"
    )
    res = emulate(get_board("maix-bit-canmv"), None, None, tmp_path / "emu", firmware=fw, log=lambda m: None)
    assert res.exit_code == 0 and "NEEDS SIZE" in res.console, res.console


def test_a_config_naming_a_flash_address_carries_the_model_size():
    from pokedex_host.boardconfig import make_config
    from pokedex_host.errors import PokedexError

    b = get_board("maix-bit-canmv")
    cfg = make_config(b, input_size=128, outputs=1025, model=0x300000, model_size=2_675_136)
    assert cfg["model_size"] == 2_675_136
    with pytest.raises(PokedexError, match="size"):
        make_config(b, input_size=128, outputs=1025, model=0x300000)


def test_smoothing_is_a_moving_average_of_the_softmax(tiny_build, tmp_path):
    """The app's default smoothing (0.6): each answer is the top of 0.6 x the previous average +
    0.4 x this frame's softmax, the first frame's softmax as it is."""
    from pokedex_host.toolchain import Worker

    frames = _frames(tmp_path / "frames", 4, seed=5)
    res = emulate(
        get_board("maix-bit-canmv"),
        tiny_build / "model.kmodel",
        frames,
        tmp_path / "emu",
        config_overrides={**EXACT, "smoothing": 0.6},
        log=lambda m: None,
    )
    assert res.exit_code == 0, res.console
    x = np.stack([np.asarray(Image.open(f))[0:64, 0:64].transpose(2, 0, 1) for f in sorted(frames.iterdir())])
    with Worker() as w:
        logits = w.simulate(tiny_build / "model.kmodel", x, tmp_path).astype(np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    avg = p[0]
    for i, line in enumerate(res.uart_lines):
        if i:
            avg = 0.6 * avg + 0.4 * p[i]
        f = line.split("\t")
        # the logits are dequantised bytes, so classes tie; any of the tied best is the answer
        assert avg[int(f[2]) - 1] == pytest.approx(avg.max(), rel=1e-9)
        assert float(f[4]) == pytest.approx(avg.max(), abs=6e-4)  # printed with 3 decimals


def test_the_app_s_softmax_smoothing_and_top_k():
    """pk_app's per-frame arithmetic on logits where averaging changes the answer."""
    import importlib.util

    from pokedex_host.paths import firmware_dir

    spec = importlib.util.spec_from_file_location("pk_app_under_test", firmware_dir() / "pk_app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    frames = [[4.0, 1.0, 0.0, 3.5], [0.0, 1.0, 0.0, 4.2], [0.0, 0.0, 2.0, 0.0]]
    probs, avg = [0.0] * 4, [0.0] * 4
    want = None
    for i, logits in enumerate(frames):
        inv = 1.0 / app.exp_into(logits, probs)
        p = np.exp(np.array(logits) - max(logits))
        p /= p.sum()
        assert np.allclose(np.array(probs) * inv, p)
        app.smooth_into(avg, probs, inv, 0.0 if i == 0 else 0.6)
        want = p if want is None else 0.6 * want + 0.4 * p
        assert np.allclose(avg, want)
        top = app.topk(avg, 3)
        assert [t[0] for t in top] == list(np.argsort(-want)[:3])
    assert app.topk(avg, 1)[0][0] == 3  # frame 3 alone says class 2: the average still says class 3
    assert app.exp_into(frames[0] + [99.0], probs) == pytest.approx(float(np.exp(np.array(frames[0]) - 4).sum()))


def test_the_app_averages_the_mirror_image_s_logits():
    """exp_into with the mirrored crop's logits: the softmax of the mean logits, shifted by the
    mean's own maximum (the board's float32 exp underflows to 0 below about -104)."""
    import importlib.util

    from pokedex_host.paths import firmware_dir

    spec = importlib.util.spec_from_file_location("pk_app_mirror", firmware_dir() / "pk_app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    a, b = [4.0, 1.0, 0.0, 3.5, 9.0], [0.0, 3.0, 0.0, 4.2, -9.0]
    probs = [0.0] * 4  # the model has one output more than the labels: it is ignored
    inv = 1.0 / app.exp_into(a, probs, b)
    mean = (np.array(a[:4]) + np.array(b[:4])) / 2
    want = np.exp(mean - mean.max())
    assert np.allclose(np.array(probs) * inv, want / want.sum())
    assert int(np.argmax(probs)) == 3 and int(np.argmax(a[:4])) == 0  # the average changed the answer
    big = [300.0, 0.0, 0.0, 0.0]  # the two looks disagree completely: the mean's maximum is 150
    inv = 1.0 / app.exp_into(big, probs, [0.0, 0.0, 0.0, 300.0])
    assert np.allclose(np.array(probs) * inv, [0.5, 0.0, 0.0, 0.5]) and max(probs) == 1.0  # exp(0), not exp(-150)
