"""The serial bench harness against the emulated board over a pty, including a damaged link."""

from __future__ import annotations

import json
import os
import threading
import time
import tty
import types
from pathlib import Path

import pytest
from conftest import make_dataset

from pokedex_host.boards import get_board
from pokedex_host.device import protocol as proto
from pokedex_host.device.bench import bench, read_classes
from pokedex_host.device.client import BenchClient
from pokedex_host.device.harness import link_seconds_per_image, load_done, run_bench, select_items
from pokedex_host.device.transport import FaultyTransport, SerialTransport
from pokedex_host.emulator.host import emulate
from pokedex_host.errors import PokedexError

pytestmark = pytest.mark.toolchain


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_build):
    """The tiny build (``tiny / "out"``) and a test split of generated images (``tiny / "test"``)."""
    d = tiny_build.parent
    if not (d / "test").exists():
        make_dataset(d / "test", species=5, per_species=3, seed=7)
    return d


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_protocol_codec_round_trip_and_resync():
    frames = proto.encode(proto.PING, 1, b"a") + b"\x00\xa5junk" + proto.encode(proto.PONG, 2, b"bc")
    dec = proto.Decoder()
    got = []
    for i in range(0, len(frames), 3):  # arrives in small pieces
        got += dec.feed(frames[i : i + 3])
    assert [(f.type, f.seq, f.payload) for f in got] == [(proto.PING, 1, b"a"), (proto.PONG, 2, b"bc")]
    huge = bytearray(proto.encode(proto.PING, 3))
    huge[6:10] = (proto.MAX_PAYLOAD + 1).to_bytes(4, "little")
    assert dec.feed(bytes(huge) + proto.encode(proto.PING, 4)) == [proto.Frame(proto.PING, 4, b"")]
    assert dec.bad >= 1 and len(dec.buf) == 0
    with pytest.raises(ValueError):
        proto.encode(proto.INFER, 1, bytes(proto.MAX_PAYLOAD + 1))


def test_link_time_figure():
    assert link_seconds_per_image(224, 115200) == pytest.approx((10 + 6 + 3 * 224 * 224 + 4) * 10 / 115200)


def test_bench_on_the_emulator_matches_the_simulator(tiny, tmp_path):
    out = tmp_path / "b"
    f = bench(
        get_board("maix-bit-canmv"),
        tiny / "out" / "model.kmodel",
        tiny / "test",
        out,
        port=None,
        emulate=True,
        baud=None,
        count=10,
        resume=False,
        timeout=10,
        log=lambda m: None,
    )
    rows = _rows(out)
    assert len(rows) == 10 and len({r["file"] for r in rows}) == 10
    assert f["device_vs_simulator_top1_agreement"] == 100.0
    assert f["device"] == f["simulator"]
    assert all(r["kpu_us"] > 0 and r["total_us"] >= r["kpu_us"] for r in rows)
    for name in ("report.md", "report.json", "bench.png"):
        assert (out / name).stat().st_size > 0
    assert "| top-1 |" in (out / "report.md").read_text()


class _Board:
    """An emulated board on a pty that the test can reset (stop and start again on the same link)."""

    def __init__(self, kmodel: Path, out: Path):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tty.setraw(self.master)
        self.kmodel, self.out, self.runs = kmodel, out, 0
        self.stop = threading.Event()
        self.thread = None

    @property
    def port(self) -> str:
        return os.ttyname(self.slave)

    def start(self):
        self.stop = threading.Event()
        self.runs += 1
        out = self.out / f"run{self.runs}"
        self.thread = threading.Thread(
            target=emulate,
            args=(get_board("maix-bit-canmv"), self.kmodel, None, out),
            kwargs=dict(script="bench.py", uart_fd=self.master, stop=self.stop, log=lambda m: None),
            daemon=True,
        )
        self.thread.start()

    def reset(self, down: float = 1.0):
        self.stop.set()
        self.thread.join(30)
        time.sleep(down)
        self.start()

    def close(self):
        self.stop.set()
        if self.thread:
            self.thread.join(30)
        os.close(self.master)
        os.close(self.slave)


@pytest.mark.parametrize("fault", ["drop", "corrupt", "silent", "reset"])
def test_faults_lose_and_duplicate_nothing(tiny, tmp_path, fault):
    kmodel = tiny / "out" / "model.kmodel"
    items = select_items(tiny / "test", 8)
    board = _Board(kmodel, tmp_path)
    board.start()
    serial_t = SerialTransport(board.port)
    t = {
        "drop": lambda s: FaultyTransport(s, seed=1, drop=0.3),
        "corrupt": lambda s: FaultyTransport(s, seed=2, corrupt=0.3),
        "silent": lambda s: FaultyTransport(s, seed=3, silent_after=4, silent_for=3.0),
        "reset": lambda s: s,
    }[fault](serial_t)
    client = BenchClient(t, timeout=2.0, retries=2)
    out = tmp_path / "out"
    logs = []
    try:
        if fault == "reset":
            timer = threading.Timer(1.0, board.reset)
            timer.start()
        run_bench(
            client,
            tiny / "test",
            items,
            read_classes(kmodel),
            64,
            out,
            kmodel=kmodel,
            resume=False,
            reconnects=8,
            log=logs.append,
        )
        if fault == "reset":
            timer.join()
    finally:
        t.close()
        board.close()
    rows = _rows(out)
    assert sorted(r["file"] for r in rows) == sorted(i.file for i in items)  # none lost, none twice
    if fault in ("drop", "corrupt", "silent"):
        assert t.damaged > 0 or fault == "silent"
        assert client.stats.retries > 0 or client.stats.timeouts > 0 or t.damaged > 0
    if fault == "reset":
        assert board.runs == 2


def test_a_noisy_line_is_repaired_by_naks_and_chunks_not_timeouts(tiny, tmp_path):
    # a cable as the issue measured it: 0.2 % of the board's bytes flipped or lost, 1 in 100,000
    # of the upload's, REPL text in the stream now and then (chunked at 1 KB to exercise the chunks)
    kmodel = tiny / "out" / "model.kmodel"
    items = select_items(tiny / "test", 8)
    board = _Board(kmodel, tmp_path)
    board.start()
    clean_out, noisy_out = tmp_path / "clean", tmp_path / "noisy"
    try:
        s = SerialTransport(board.port)
        run_bench(
            BenchClient(s, timeout=5, chunk=1024),
            tiny / "test",
            items,
            read_classes(kmodel),
            64,
            clean_out,
            kmodel=kmodel,
            resume=False,
            log=lambda m: None,
        )
        t = FaultyTransport(s, seed=5, byte_in=0.002, byte_out=1e-5, text_in=0.1)
        client = BenchClient(t, timeout=5, chunk=1024)
        run_bench(
            client,
            tiny / "test",
            items,
            read_classes(kmodel),
            64,
            noisy_out,
            kmodel=kmodel,
            resume=False,
            log=lambda m: None,
        )
        s.close()
    finally:
        board.close()
    clean, noisy = _rows(clean_out), _rows(noisy_out)
    assert sorted(r["file"] for r in noisy) == sorted(i.file for i in items)  # each image once
    assert {r["file"]: r["top"] for r in noisy} == {r["file"]: r["top"] for r in clean}  # same answers
    assert t.damaged > 0 and client.stats.naks > 0  # damage happened and was resent at once
    assert client.stats.timeouts <= 2  # ... not by waiting out timeouts
    assert client.stats.chunks >= len(items) * 12  # 12 KB images in 1 KB chunks


def test_a_pulled_cable_ends_bench_with_the_image_and_resume(tiny, tmp_path):
    kmodel = tiny / "out" / "model.kmodel"
    items = select_items(tiny / "test", 12)
    board = _Board(kmodel, tmp_path)
    board.start()

    class Pulled(SerialTransport):
        """The cable comes out once two images are done (not after a count of writes: on a loaded
        machine the emulated board may not have answered any by then): the far end closes."""

        pulled = False

        def write(self, data):
            if not Pulled.pulled and len(load_done(tmp_path / "out" / "results.jsonl")) >= 2:
                Pulled.pulled = True
                board.stop.set()
                board.thread.join(30)  # before its descriptor is closed and its number reused
                os.close(board.master)
                board.master = os.open("/dev/null", os.O_RDONLY)  # keeps the fixture's close() simple
            super().write(data)

    t = Pulled(board.port)
    try:
        with pytest.raises(PokedexError) as e:
            run_bench(
                BenchClient(t, timeout=1, retries=1),
                tiny / "test",
                items,
                read_classes(kmodel),
                64,
                tmp_path / "out",
                kmodel=kmodel,
                resume=False,
                reconnects=2,
                log=lambda m: None,
            )
    finally:
        t.close()
        board.close()
    done = load_done(tmp_path / "out" / "results.jsonl")
    assert 0 < len(done) < len(items)
    assert "--resume" in e.value.hint
    assert any(i.file in e.value.message for i in items if i.file not in done)  # names the image it was on
    assert type(e.value.__cause__).__name__ == "TransportError"  # not a raw OSError / termios.error


def test_interrupted_run_resumes_without_duplicates(tiny, tmp_path):
    kmodel = tiny / "out" / "model.kmodel"
    items = select_items(tiny / "test", 9)
    board = _Board(kmodel, tmp_path)
    board.start()
    out = tmp_path / "out"
    try:
        t = SerialTransport(board.port)
        run_bench(
            BenchClient(t, timeout=5),
            tiny / "test",
            items,
            read_classes(kmodel),
            64,
            out,
            kmodel=kmodel,
            resume=False,
            log=lambda m: None,
            stop_after=4,
        )  # "Ctrl-C" after 4 images
        with open(out / "results.jsonl", "a") as f:
            f.write('{"file": "half a li')  # a row cut by the crash
        with pytest.raises(PokedexError) as e:
            run_bench(
                BenchClient(t, timeout=5),
                tiny / "test",
                items,
                read_classes(kmodel),
                64,
                out,
                kmodel=kmodel,
                resume=False,
                log=lambda m: None,
            )
        assert "--resume" in e.value.hint
        run_bench(
            BenchClient(t, timeout=5),
            tiny / "test",
            items,
            read_classes(kmodel),
            64,
            out,
            kmodel=kmodel,
            resume=True,
            log=lambda m: None,
        )
        t.close()
    finally:
        board.close()
    done = load_done(out / "results.jsonl")
    assert sorted(done) == sorted(i.file for i in items)
    lines = [
        x for x in (out / "results.jsonl").read_text().splitlines() if x.startswith('{"file": "') and x.endswith("}")
    ]
    assert len(lines) == 9


class _FakeRawRepl(threading.Thread):
    """The board side of MicroPython's raw REPL, on a pty, running the code it gets with CPython
    in a sandbox whose `open` writes under `root` (a stand-in for /sd)."""

    def __init__(self, fd: int, root: Path):
        super().__init__(daemon=True)
        self.fd, self.root, self.alive = fd, root, True
        self.ns: dict = {}

    def _open(self, path, mode="r"):
        assert path.startswith("/sd/")
        return open(self.root / path[len("/sd/") :], mode)

    def run(self):
        import contextlib
        import io
        import os as _os
        import select

        buf = bytearray()
        raw = False
        while self.alive:
            try:
                r, _, _ = select.select([self.fd], [], [], 0.05)
                if not r:
                    continue
                buf += _os.read(self.fd, 4096)
            except (OSError, ValueError):
                return
            while True:
                if not raw:
                    i = buf.find(b"\x01")
                    if i < 0:
                        buf.clear()
                        break
                    del buf[: i + 1]
                    raw = True
                    _os.write(self.fd, b"raw REPL; CTRL-B to exit\r\n>")
                    continue
                if buf[:1] == b"\x02":
                    del buf[:1]
                    raw = False
                    continue
                j = buf.find(b"\x04")
                if j < 0:
                    break
                code = bytes(buf[:j]).decode()
                del buf[: j + 1]
                out, err = io.StringIO(), ""
                self.ns["open"] = self._open
                code = code.replace("import os\n", "")
                self.ns["os"] = types.SimpleNamespace(stat=lambda p: os.stat(self.root / p[len("/sd/") :]))
                try:
                    with contextlib.redirect_stdout(out):
                        exec(code.strip("\r"), self.ns)
                except Exception as e:
                    err = "Traceback (most recent call last):\n%s: %s\n" % (type(e).__name__, e)
                _os.write(self.fd, b"OK" + out.getvalue().encode() + b"\x04" + err.encode() + b"\x04>")


def _stop(peer: _FakeRawRepl) -> None:
    """End the peer before its pty is closed: a thread still polling a closed descriptor would
    read whatever file the next test opens under the same number (an import's source, once)."""
    peer.alive = False
    peer.join(5)
    assert not peer.is_alive()


def _raw_repl_on_a_pty(tmp_path):
    """(peer, master fd, slave fd, the peer's /sd folder): a board-side raw REPL behind a pty."""
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    sd = tmp_path / "sd"
    sd.mkdir()
    peer = _FakeRawRepl(master, sd)
    peer.start()
    return peer, master, slave, sd


def test_copy_files_over_the_raw_repl(tmp_path):
    from pokedex_host.device.repl import RawRepl

    peer, master, slave, sd = _raw_repl_on_a_pty(tmp_path)
    t = SerialTransport(os.ttyname(slave))
    try:
        repl = RawRepl(t, timeout=5)
        blob = bytes(range(256)) * 9 + b"\x00\x04\x01'\"\\"  # control bytes and quotes must survive
        src = tmp_path / "model.kmodel"
        src.write_bytes(blob)
        progress = []
        assert repl.put(src, "/sd/model.kmodel", progress=lambda a, b: progress.append(a)) == len(blob)
        assert (sd / "model.kmodel").read_bytes() == blob and progress[-1] == len(blob)
        assert repl.size("/sd/model.kmodel") == len(blob)
        with pytest.raises(PokedexError) as e:  # the project's error with a hint, not a bare OSError
            repl.put(src, "/sd/no/such/dir/x.bin")
        assert "x.bin" in str(e.value) and "FileNotFoundError" in str(e.value) and "/sd/no/such/dir" in e.value.hint
        repl.exit()
    finally:
        _stop(peer)
        t.close()
        os.close(master)
        os.close(slave)


def test_a_pulled_cable_ends_install_with_the_file_and_the_way_back(tmp_path):
    from pokedex_host.device.install import install
    from pokedex_host.paths import releases

    peer, master, slave, _ = _raw_repl_on_a_pty(tmp_path)
    state = {"writes": 0, "master": master}

    class Pulled(SerialTransport):
        def write(self, data):
            state["writes"] += 1
            if state["writes"] == 25:  # mid-copy: the far end of the wire goes away
                _stop(peer)
                os.close(state["master"])
                state["master"] = None
            super().write(data)

    t = Pulled(os.ttyname(slave))
    try:
        with pytest.raises(PokedexError) as e:
            install(
                get_board("maix-bit"),
                releases()[0] / "model.kmodel",
                None,
                "/sd",
                False,
                False,
                echo=lambda m, nl=True: None,
                transport=t,
            )
    finally:
        _stop(peer)
        t.close()
        if state["master"] is not None:
            os.close(state["master"])
        os.close(slave)
    assert "copying" in e.value.message and " to /sd/" in e.value.message  # names the file it was on
    assert "install again" in e.value.hint
    assert type(e.value.__cause__).__name__ in ("TransportError", "ReplExecError")
