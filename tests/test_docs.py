"""The README shows code and commands that exist."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_set_up_commands_are_the_makefile_and_ci_ones():
    makefile = (ROOT / "Makefile").read_text()
    assert "make demo" in README and "make test" in README
    assert "\ndemo:" in makefile and "\ntest:" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_experiment_file_named_in_readme_exists():
    for word in README.split():
        word = word.strip("`(),.")
        if word.startswith("experiments/") and word.endswith(".yaml") and "<" not in word:
            assert (ROOT / word).is_file(), word
