"""The kmodel v3 reader against the three v3 files Kendryte shipped, and under fuzzing."""

from __future__ import annotations

import random
import zlib

import pytest
from conftest import SHARED

from pokedex_host.kmodel import KmodelFormatError, detect_version, v3

REF = SHARED / "data" / "k210_reference"
needs_ref = pytest.mark.skipif(not REF.is_dir(), reason="../shared/data/k210_reference is not on this machine")

# From ../shared/data/k210_reference/README.md: layers, K210_CONV count, main memory, first conv.
EXPECTED = {
    "face_detect.v3.kmodel": (24, 23, 45000, (320, 240, 3), (160, 120, 16)),
    "face_mask_detect_5.v3.kmodel": (31, 30, 14000, (320, 256, 3), (160, 128, 8)),
    "kpu_yolo.v3.kmodel": (17, 16, 43752, (320, 240, 3), (160, 120, 16)),
}


@needs_ref
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reference_files_parse_and_decode(name):
    n_layers, n_conv, main_mem, first_in, first_out = EXPECTED[name]
    data = (REF / name).read_bytes()
    assert detect_version(data) == 3
    m = v3.parse(data, name)
    assert m.layers_length == n_layers and len(m.layers) == n_layers
    assert len(m.conv_layers) == n_conv
    assert [lay.name for lay in m.layers if lay.conv is None] == ["DEQUANTIZE"]
    assert m.main_mem_usage == main_mem and len(m.outputs) == 1
    first = m.conv_layers[0].conv.registers
    assert first.in_shape == first_in and first.out_shape == first_out
    # every layer's input is the previous layer's output (these are plain chains)
    convs = [lay.conv.registers for lay in m.conv_layers]
    for a, b in zip(convs, convs[1:]):
        assert b.in_shape == a.out_shape
    # the dequantize layer reads what the last conv wrote to main memory
    last = m.conv_layers[-1].conv
    deq = m.layers[-1].fields
    assert last.flags & 1 and deq["in"] == last.main_mem_out_address
    assert deq["count"] == m.outputs[0][1] // 4


def test_v5_and_junk_are_refused_with_the_offset():
    with pytest.raises(KmodelFormatError) as e:
        v3.parse(b"LDMK\x05\x00\x00\x00" + b"\0" * 40)
    assert e.value.offset == 0 and "KMDL" in e.value.reason
    with pytest.raises(KmodelFormatError):
        detect_version(b"\x07\0\0\0\0\0\0\0")
    with pytest.raises(KmodelFormatError) as e:
        v3.parse(b"\x03\0\0\0")
    assert "past the end" in e.value.reason


def _mutations(data: bytes, seed: int, count: int):
    rng = random.Random(seed)
    for _ in range(count):
        b = bytearray(data)
        kind = rng.random()
        if kind < 0.6:  # flip bits, mostly where the structure lives
            for _ in range(rng.randint(1, 8)):
                pos = rng.randrange(min(len(b), 4096)) if rng.random() < 0.7 else rng.randrange(len(b))
                b[pos] ^= 1 << rng.randrange(8)
        elif kind < 0.8:  # truncate
            b = b[: rng.randrange(len(b))]
        else:  # overwrite a u32 with an extreme value
            pos = rng.randrange(0, min(len(b), 2048) - 4)
            b[pos : pos + 4] = rng.choice([b"\xff\xff\xff\xff", b"\0\0\0\x80", b"\0\0\0\0"])
        yield bytes(b)


@needs_ref
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fuzzed_files_fail_only_cleanly(name):
    data = (REF / name).read_bytes()
    refused = 0
    for mutated in _mutations(data, seed=zlib.crc32(name.encode()), count=300):
        try:
            v3.parse(mutated, name)
        except KmodelFormatError as e:
            refused += 1
            assert e.offset >= 0 and e.reason
    assert refused > 50  # the checks actually catch damage


@needs_ref
def test_inspect_cli():
    from click.testing import CliRunner

    from pokedex_host.cli import main

    r = CliRunner().invoke(main, ["kmodel", "inspect", str(REF / "face_detect.v3.kmodel")])
    assert r.exit_code == 0 and "kmodel v3" in r.output and "23 KPU layers" in r.output
    assert "320x240x3 -> 160x120x16  3x3  max 2x2 s2" in r.output
