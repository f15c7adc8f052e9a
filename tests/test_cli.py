import click
import pytest
from click.testing import CliRunner

from pokedex_host.cli import main


def _commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        yield prefix + (name,)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, prefix + (name,))


@pytest.mark.parametrize("path", list(_commands(main)), ids=" ".join)
def test_every_command_has_help(path):
    r = CliRunner().invoke(main, [*path, "--help"])
    assert r.exit_code == 0 and "Usage:" in r.output


def test_errors_are_one_line_with_a_hint_and_a_code():
    r = CliRunner().invoke(main, ["build-kmodel", "nothing.onnx", "--board", "no-such-board"])
    assert r.exit_code == 1 and "error: unknown board" in r.output and "hint:" in r.output
