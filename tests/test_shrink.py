import pytest
from click.testing import CliRunner

from pokedex_host.boards import get_board
from pokedex_host.cli import main
from pokedex_host.errors import PokedexError
from pokedex_host.train.shrink import choose, evaluate_candidates

pytestmark = pytest.mark.toolchain


def test_shrink_asks_the_compiler_and_picks_the_largest_fit(toolchain_ready):
    board = get_board("maix-bit")
    cands = evaluate_candidates(board, 1_400_000, [0.25, 0.5], [128], 1025, log=lambda m: None)
    by = {c.width: c for c in cands}
    assert by[0.25].params < by[0.5].params
    assert by[0.25].ram and by[0.5].ram > by[0.25].ram  # figures of the v3 file, from the compiler's build
    expect = [c for c in cands if c.ram + board.camera.buffer_bytes <= 1_400_000]  # the model beside the camera
    assert [c.fits for c in cands] == [c in expect for c in cands]
    best = choose(cands)
    assert best.fits and best.params == max(c.params for c in cands if c.fits)
    with pytest.raises(PokedexError):
        choose([c for c in cands if not c.fits] or [type(cands[0])(1.0, 64, 1)])


def test_shrink_and_build_kmodel_agree_on_what_does_not_build(toolchain_ready, tmp_path):
    # the same stages: a 64 px student is refused as v3 by build-kmodel, so shrink must not call it a fit
    board = get_board("maix-bit")
    (c,) = evaluate_candidates(board, 6_000_000, [0.25], [64], 1025, log=lambda m: None)
    recipe = tmp_path / "r.toml"
    recipe.write_text('family = "kpu_mobilenet_v1"\n[config]\nwidth = 0.25\ninput = 64\nclasses = 1025\n')
    r = CliRunner().invoke(
        main,
        [
            "build-kmodel",
            str(recipe),
            "--board",
            "maix-bit",
            "--out",
            str(tmp_path / "o"),
            "--verify-count",
            "0",
            "--calibration-count",
            "2",
        ],
    )
    if r.exit_code == 0:
        assert c.fits
    else:
        assert not c.fits and c.why and c.why.split(":")[-1].strip()[:30] in r.output


def test_shrink_cli_dry_run(toolchain_ready):
    r = CliRunner().invoke(
        main, ["shrink", "--board", "maix-bit", "--budget", "800kB", "--widths", "0.25", "--inputs", "128", "--dry-run"]
    )
    assert "largest that fits" in r.output or "no candidate fits" in r.output
    assert "w 0.25" in r.output
