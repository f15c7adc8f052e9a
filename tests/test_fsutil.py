import os
from pathlib import Path

import pytest

from pokedex_host.fsutil import atomic_dir, atomic_write_bytes, sha256_file


def test_atomic_write_replaces_whole_and_leaves_no_temp(tmp_path: Path):
    p = tmp_path / "a" / "f.bin"
    atomic_write_bytes(p, b"one")
    atomic_write_bytes(p, b"two")
    assert p.read_bytes() == b"two"
    assert [x.name for x in p.parent.iterdir()] == ["f.bin"]
    assert oct(p.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_atomic_dir_keeps_the_old_folder_when_the_job_fails(tmp_path: Path):
    out = tmp_path / "out"
    with atomic_dir(out) as st:
        (st / "model.kmodel").write_bytes(b"good")
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as st:
            (st / "model.kmodel").write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert (out / "model.kmodel").read_bytes() == b"good"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["out"]


def test_atomic_dir_never_creates_the_folder_on_failure(tmp_path: Path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(tmp_path / "new") as st:
            (st / "x").write_text("x")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_sha256(tmp_path: Path):
    p = tmp_path / "x"
    p.write_bytes(b"abc")
    assert sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
