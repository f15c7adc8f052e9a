"""The README a newcomer reads: short, opening with the two commands, pointing at files that exist."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def test_the_readme_is_short_and_opens_with_the_two_commands():
    text = README.read_text()
    assert len(text.split()) < 700, f"{README} has {len(text.split())} words"
    first = re.search(r"```sh\n(.*?)```", text, re.S).group(1)
    assert [ln.split()[:2] for ln in first.splitlines()] == [["make", "kmodel"], ["make", "test"]]


def test_the_readmes_links_and_paths_exist():
    text = README.read_text()
    links = re.findall(r"\]\(([^)#]+)\)", text) + re.findall(r"(models/releases/[\w.-]+/[\w.]+)", text)
    missing = [p for p in links if "://" not in p and not (ROOT / p).exists()]
    assert not missing, missing
