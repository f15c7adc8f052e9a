"""Host version of MaixPy's ``KPU`` module (kpu.load / kpu.forward / kpu.deinit) for kmodel v3.

Like stock MaixPy, ``load`` refuses other kmodel versions with ERR_KMODEL_VERSION (2002) and
models bigger than the free system heap with ERR_NO_MEM (2006); ``deinit`` gives the heap back.
"""

from pokedex_host.emulator import kpu_backend as _kb
from pokedex_host.emulator.state import board as _board

_loaded = []


def _err(code, text):
    return ValueError("[MAIXPY]kpu: load error:%d, %s" % (code, text))


class kpu_net:
    __slots__ = ("_m", "_model")

    def model_size(self):
        return self._m.size

    def model_path(self):
        return self._model if isinstance(self._model, str) else None

    def model_addr(self):
        return self._model if isinstance(self._model, int) else None


class _Fmap:
    __slots__ = ("_v",)

    def __init__(self, values):
        self._v = values

    def __getitem__(self, i):
        if isinstance(i, slice):  # MaixPy's fmap[:] is a tuple of floats
            return tuple(self._v[i])
        return self._v[i]

    def __len__(self):
        return len(self._v)


def load(model):
    if not isinstance(model, (int, str)):
        raise TypeError("[MAIXPY]kpu: only accept int or string")
    if isinstance(model, str) and not model.endswith((".kmodel", ".smodel", ".emodel")):
        raise ValueError("[MAIXPY]kpu: model format don't match, only supply .kmodel ")
    if len(_loaded) >= 5:
        raise _err(2010, "ERR_MODELS_FULL: we only support load 5 models in the same time")
    versions = tuple(v for v in _board().kmodel_versions if v in (3, 4))
    m = _kb.load(model, versions, _err, v3_runtime="maixpy")  # MaixPy-v1's own KPU library
    net = kpu_net()
    net._m, net._model = m, model
    _loaded.append(net)
    return net


def forward(task, img, layer=None):
    return _Fmap(_kb.run(task._m, img))


def deinit(task):
    if task in _loaded:
        _loaded.remove(task)
        _kb.release(task._m)


def set_outputs(task, index, w, h, ch):
    return True
