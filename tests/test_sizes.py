import pytest

from pokedex_host.errors import PokedexError
from pokedex_host.sizes import parse_size


@pytest.mark.parametrize(
    "text,expected",
    [
        ("6MB", 6_000_000),
        ("6MiB", 6 * 2**20),
        ("3.5M", 3_500_000),
        ("6000000", 6_000_000),
        ("512KiB", 512 * 1024),
        ("512k", 512_000),
        (" 2 mib ", 2 * 2**20),
        ("1.5MB", 1_500_000),
        (42, 42),
    ],
)
def test_parse_size_accepts_the_documented_forms(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "MB", "six MB", "6 XB", "-1MB", "0", "1e6", "3.5", "6MBB", "0x10"])
def test_parse_size_rejects_nonsense_with_the_value_and_the_units(text):
    with pytest.raises(PokedexError) as e:
        parse_size(text, what="--budget")
    assert "--budget" in e.value.message
    assert "MiB" in e.value.hint and "10^6" in e.value.hint


def test_zero_only_where_allowed():
    assert parse_size("0B", allow_zero=True) == 0
    with pytest.raises(PokedexError):
        parse_size("0B")
