from pathlib import Path

import pytest

from pokedex_host.boards import available_boards, get_board, load_board_file
from pokedex_host.errors import PokedexError


def test_every_profile_loads_and_is_consistent():
    names = available_boards()
    assert {"maix-bit", "maix-bit-minimum", "maix-bit-canmv", "maix-bit-baremetal"} <= set(names)
    for name in names:
        b = get_board(name)
        assert b.name == name
        assert b.kpu_sram == 2 * 2**20
        assert b.general_sram == 6 * 2**20
        assert 0 < b.firmware.model_ram < b.general_sram
        assert b.flash.firmware_address < b.flash.model_address < b.flash.model_region_end <= b.flash_size
        if b.flash.filesystem:
            assert b.flash.model_region_end <= b.flash.filesystem[0]
        assert b.firmware.default_format in ("v3", "v5")
        assert b.nncase == "1.9.0.20230322"


def test_stock_maixpy_profile_figures():
    b = get_board("maix-bit")
    assert b.firmware.model_ram == 3_500_000
    assert b.loads(3) and not b.loads(5)
    assert b.firmware.default_format == "v3"
    assert b.kflash_board == "bit"
    assert b.flash.model_address == 0x300000
    assert b.camera.window == (224, 224)
    assert get_board("maix-bit-baremetal").firmware.model_ram == 5_500_000
    assert get_board("maix-bit-canmv").loads(5)


def test_unknown_board_lists_the_known_ones():
    with pytest.raises(PokedexError) as e:
        get_board("maix-dock")
    assert "maix-dock" in e.value.message
    assert "maix-bit" in e.value.hint


def test_broken_profile_names_the_file(tmp_path: Path):
    p = tmp_path / "x.toml"
    p.write_text("name = 'x'\n[board\n")
    with pytest.raises(PokedexError) as e:
        load_board_file(p)
    assert str(p) in e.value.message
    p.write_text("name = 'x'\n[board]\nchip='k210'\n")
    with pytest.raises(PokedexError) as e:
        load_board_file(p)
    assert str(p) in e.value.message and "missing" in e.value.message


def test_every_firmware_family_row_is_complete_and_every_profile_names_one():
    from pokedex_host.boards import available_boards, get_board
    from pokedex_host.emulator.run import MODS
    from pokedex_host.families import FAMILIES
    from pokedex_host.paths import firmware_dir

    for fam in FAMILIES.values():
        for f in fam.app_files:  # install copies them
            assert (firmware_dir() / f).is_file(), (fam.name, f)
        for m in fam.emulator_modules:  # the app imports them on this family; the emulator must have them
            assert (MODS / f"{m}.py").is_file(), (fam.name, m)
        assert (fam.api is None) == (not fam.app_files)
    for name in available_boards():
        b = get_board(name)
        assert b.firmware.family in FAMILIES
        assert set(b.firmware.kmodel_versions) <= set(FAMILIES[b.firmware.family].kmodel_versions)


def test_a_profile_with_an_unknown_family_is_refused(tmp_path):
    from pokedex_host.boards import available_boards, get_board

    src = available_boards()["maix-bit"].read_text().replace('family = "maixpy"', 'family = "micropython-esp"')
    p = tmp_path / "odd.toml"
    p.write_text(src)
    with pytest.raises(PokedexError, match="micropython-esp") as e:
        get_board(str(p))
    assert "odd.toml" in str(e.value)
