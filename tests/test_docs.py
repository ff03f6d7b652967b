"""Docs move with code: the generated config reference and the README's promises."""

from pathlib import Path

from dass.cli import config_reference

ROOT = Path(__file__).resolve().parents[1]


def test_config_reference_is_current():
    committed = (ROOT / "docs" / "config-reference.md").read_text()
    assert committed == config_reference(), "run `make reference` and commit docs/config-reference.md"


def test_readme_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    first_block = text.split("```")[1]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()[1:] if line.strip()]
    assert commands == ["make up", "make test"]


def test_example_config_loads():
    from dass.config import load_config

    load_config(ROOT / "dass_config.example.py")
