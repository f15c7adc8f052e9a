"""The emulated KPU: loads a kmodel the way the board's firmware would and runs the exact bytes
that would be flashed: kmodel v3 in our v3 interpreter (KPU integer arithmetic, ``kmodel/interp.py``),
kmodel v5 in the nncase simulator through the compiler worker."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..kmodel import KmodelFormatError, detect_version
from .state import board

ERR_KMODEL_VERSION = 2002
ERR_NO_MEM = 2006
ERR_READ_FILE = 2005
ERR_KMODEL_FORMAT = 2003  # MaixPy checks only that layer bodies are not empty; the emulator checks all


class LoadedModel:
    def __init__(
        self, host_path: Path, version: int, size: int, input_wh: tuple[int, int], runtime_bytes: int, interpreter=None
    ):
        self.interpreter = interpreter  # kmodel v3
        self.host_path = host_path
        self.version = version
        self.size = size
        self.input_wh = input_wh
        self.runtime_bytes = runtime_bytes


def load(model, allowed_versions, error, v3_runtime: str = "sdk") -> LoadedModel:
    """Resolve, read and check a model; ``error(code, text)`` builds the firmware's exception.
    ``v3_runtime``: whose v3 CPU layers (``kmodel/interp.RUNTIMES``): MaixPy's KPU module passes
    "maixpy"."""
    b = board()
    if isinstance(model, int):
        if model not in b.flash_map:
            raise error(ERR_READ_FILE, "ERR_READ_FILE: nothing flashed at 0x%X" % model)
        host = Path(b.flash_map[model])
    else:
        try:
            host = b.host_path(model)
        except OSError:
            raise error(ERR_READ_FILE, "ERR_READ_FILE: read file failed") from None
        if not host.is_file():
            raise error(ERR_READ_FILE, "ERR_READ_FILE: read file failed") from None
    data = host.read_bytes()
    try:
        version = detect_version(data[:8])
    except KmodelFormatError:
        raise error(ERR_KMODEL_VERSION, "ERR_KMODEL_VERSION: not a kmodel") from None
    if version not in allowed_versions:
        raise error(
            ERR_KMODEL_VERSION,
            "ERR_KMODEL_VERSION: only support kmodel " + "/".join("V%d" % v for v in allowed_versions),
        )
    interpreter = None
    runtime, wh = len(data), tuple(b.cfg.get("model_input") or (0, 0))
    if version == 3:
        from ..kmodel.interp import Interpreter

        try:
            interpreter = Interpreter(data, path=str(host), runtime=v3_runtime)
        except KmodelFormatError as e:
            raise error(ERR_KMODEL_FORMAT, "ERR_KMODEL_FORMAT: %s (at byte %d)" % (e.reason, e.offset)) from None
        c, h, w = interpreter.input_shape
        wh = (w, h)
        runtime = len(data) + interpreter.model.main_mem_usage  # what kpu_load_kmodel keeps: file + main buffer
    from ..artifact import BuildArtifact

    art = BuildArtifact.find(host)
    if art is not None:
        runtime = art.runtime_bytes or runtime
        if version != 3:
            wh = (art.input_size, art.input_size)
    if not b.system_alloc(runtime, "kmodel"):  # from the system heap, beside the camera's buffers
        b.event("kpu_load_refused", reason="no memory", needs=runtime, has=b.system_free())
        raise error(ERR_NO_MEM, "ERR_NO_MEM: memory not enough")
    b.event("kpu_load", model=str(model), version=version, bytes=len(data), runtime=runtime)
    return LoadedModel(host, version, len(data), wh, runtime, interpreter)


def release(model: LoadedModel) -> None:
    """deinit: the model's system heap comes back."""
    board().system_release(model.runtime_bytes, "kmodel")


def run(model: LoadedModel, img) -> list:
    b = board()
    if img._ai is None:
        raise ValueError("[MAIXPY]kpu: pix_ai is NULL! (call img.pix_to_ai() after changing the image)")
    c, h, w = img._ai.shape
    if (w, h) != tuple(model.input_wh):
        raise ValueError(
            "[MAIXPY]kpu: img w=%d,h=%d, but model w=%d,h=%d" % (w, h, model.input_wh[0], model.input_wh[1])
        )
    x = img._ai[None].astype(np.uint8)
    if model.interpreter is not None:
        it = model.interpreter
        out = it.run_output(np.ascontiguousarray(x[0]))[None]
        if it.output_dtype == np.uint8:  # MaixPy: a KPU layer's output is a 'B' fmap of ints
            b.event("kpu_run", top1=int(np.argmax(out[0])), frame=b.frame_index - 1, version=3)
            return [int(v) for v in out[0]]
    else:
        out = b.simulator().simulate(model.host_path, x, b.out)
    y = [float(v) for v in out[0]]
    b.event("kpu_run", top1=int(np.argmax(out[0])), frame=b.frame_index - 1, version=model.version)
    return y
