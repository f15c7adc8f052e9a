"""The compiler worker: runs inside the Python 3.10 venv that has nncase 1.9.

This file is executed by that interpreter, never imported by the host package: it must not
import ``pokedex_host`` and must stay valid Python 3.10. Protocol (docs/specs/toolchain-worker.md):
one JSON object per line on stdin (a request), one JSON object per line on the original stdout
(the answer). nncase's C++ code prints to fd 1, so at start-up the protocol stream is moved to
a duplicate descriptor and fd 1 is pointed at stderr; during a request both go to the request's
log file when it names one.
"""

import json
import os
import sys
import time
import traceback

PROTOCOL = 1
ADDR_NO_RANDOMIZE = 0x0040000


def _aslr_off():
    """Re-exec this worker with address-space randomisation off (Linux), once.

    nncase 1.9 leaves a few bits of its output uninitialised (seen: the top nibble of KPU
    activation-table words, which the 60-bit segment format does not use), so their value
    depends on where the stack and heap happen to be. With randomisation off, the same inputs
    give byte-identical kmodels across runs. Returns whether randomisation is off.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        cur = libc.personality(0xFFFFFFFF)
        if cur == -1:
            return False
        if cur & ADDR_NO_RANDOMIZE:
            return True
        if os.environ.get("POKEDEX_WORKER_REEXEC") == "1":
            return False  # already tried; the kernel or a sandbox refused
        if libc.personality(cur | ADDR_NO_RANDOMIZE) == -1:
            return False
    except (OSError, AttributeError):
        return False
    os.environ["POKEDEX_WORKER_REEXEC"] = "1"
    os.execv(sys.executable, [sys.executable] + sys.argv)
    return False  # not reached


def _open_protocol_stream():
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(proto_fd, "w", buffering=1, encoding="utf-8")


class _Redirect:
    """Point fd 1 and fd 2 at a log file for the duration of a request."""

    def __init__(self, log_path):
        self.log_path = log_path
        self.saved = None

    def __enter__(self):
        if not self.log_path:
            return self
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = (os.dup(1), os.dup(2))
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        return self

    def __exit__(self, *exc):
        if self.saved is None:
            return False
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self.saved[0], 1)
        os.dup2(self.saved[1], 2)
        os.close(self.saved[0])
        os.close(self.saved[1])
        return False


def _atomic_write(path, data):
    tmp = "%s.tmp-%d" % (path, os.getpid())
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def op_hello(req):
    import importlib.metadata as md

    import numpy

    versions = {}
    for dist in ("nncase", "onnx", "numpy"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    import nncase  # noqa: F401  (proves the native library loads)

    return {
        "protocol": PROTOCOL,
        "python": "%d.%d.%d" % sys.version_info[:3],
        "versions": versions,
        "numpy_runtime": numpy.__version__,
        "pid": os.getpid(),
        "aslr_off": _ASLR_OFF,
    }


def op_compile(req):
    import nncase
    import numpy as np
    import onnx

    model = onnx.load(req["onnx"])
    # nncase 1.9's importer needs value_info for every tensor ("Can't find value info for ...").
    model = onnx.shape_inference.infer_shapes(model)

    co = nncase.CompileOptions()
    co.target = req.get("target", "k210")
    co.quant_type = "uint8"
    co.w_quant_type = "uint8"
    co.preprocess = True
    co.input_type = "uint8"
    co.input_shape = list(req["input_shape"])
    co.input_layout = req.get("input_layout", "NCHW")
    co.input_range = [float(v) for v in req["input_range"]]
    co.mean = [0.0, 0.0, 0.0]
    co.std = [1.0, 1.0, 1.0]
    co.swapRB = False
    co.output_type = "float32"
    co.dump_ir = True
    co.dump_asm = True
    co.dump_dir = req["dump_dir"]

    compiler = nncase.Compiler(co)
    t0 = time.time()
    compiler.import_onnx(model.SerializeToString(), nncase.ImportOptions())
    t_import = time.time() - t0

    calib = np.load(req["calibration"])
    if calib.dtype != np.uint8:
        raise ValueError("calibration tensor must be uint8, got %s" % calib.dtype)
    ptq = nncase.PTQTensorOptions()
    ptq.calibrate_method = req.get("calibrate_method", "no_clip")
    ptq.samples_count = int(calib.shape[0])
    ptq.set_tensor_data(np.ascontiguousarray(calib).tobytes())
    compiler.use_ptq(ptq)

    t1 = time.time()
    compiler.compile()
    t_compile = time.time() - t1
    kmodel = compiler.gencode_tobytes()
    # nncase writes parts of its dump (the schedules' compute sequences) from destructors: free
    # the compiler now, or the files read right after this answer are cut short
    del compiler, ptq
    import gc

    gc.collect()
    _atomic_write(req["out"], kmodel)
    return {
        "kmodel": req["out"],
        "bytes": len(kmodel),
        "seconds": {"import": t_import, "compile": t_compile, "total": time.time() - t0},
        "aslr_off": _ASLR_OFF,
    }


_SIMULATORS = {}


def _simulator(path):
    import nncase

    st = os.stat(path)
    key = (path, st.st_mtime_ns, st.st_size)
    sim = _SIMULATORS.get(key)
    if sim is None:
        _SIMULATORS.clear()
        with open(path, "rb") as f:
            data = f.read()
        sim = nncase.Simulator()
        sim.load_model(data)
        _SIMULATORS[key] = sim
    return sim


def op_simulate(req):
    import nncase
    import numpy as np

    sim = _simulator(req["kmodel"])
    x = np.load(req["inputs"])
    outs = []
    t0 = time.time()
    for i in range(x.shape[0]):
        sim.set_input_tensor(0, nncase.RuntimeTensor.from_numpy(np.ascontiguousarray(x[i : i + 1])))
        sim.run()
        outs.append(np.array(sim.get_output_tensor(0).to_numpy()).reshape(-1))
    y = np.stack(outs) if outs else np.zeros((0, 0), np.float32)
    tmp = req["outputs"] + ".tmp.npy"
    np.save(tmp, y)
    os.replace(tmp, req["outputs"])
    return {"outputs": req["outputs"], "count": int(x.shape[0]), "seconds": time.time() - t0}


OPS = {"hello": op_hello, "compile": op_compile, "simulate": op_simulate}


_ASLR_OFF = False


def main():
    global _ASLR_OFF
    _ASLR_OFF = _aslr_off()
    proto = _open_protocol_stream()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
        except ValueError as e:
            proto.write(json.dumps({"ok": False, "error": "bad request: %s" % e, "kind": "protocol"}) + "\n")
            continue
        op = req.get("op")
        if op == "shutdown":
            proto.write(json.dumps({"ok": True, "id": req.get("id")}) + "\n")
            break
        fn = OPS.get(op)
        if fn is None:
            proto.write(
                json.dumps({"ok": False, "id": req.get("id"), "error": "unknown op %r" % op, "kind": "protocol"}) + "\n"
            )
            continue
        cwd = os.getcwd()
        try:
            if req.get("workdir"):
                os.chdir(req["workdir"])
            with _Redirect(req.get("log")):
                result = fn(req)
            answer = {"ok": True, "id": req.get("id"), "result": result}
        except Exception as e:  # reported to the host, which turns it into a user-facing error
            answer = {
                "ok": False,
                "id": req.get("id"),
                "error": "%s: %s" % (type(e).__name__, e),
                "kind": type(e).__name__,
                "traceback": traceback.format_exc(),
            }
        finally:
            os.chdir(cwd)
        proto.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
