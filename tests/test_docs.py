"""The README and the documentation pages (docs/) show code, commands, links and numbers that
exist. Building the site itself (`mkdocs build --strict`) is `make docs` in CI, not a unit test."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text()
PAGES = sorted(DOCS.rglob("*.md"))


def _hooks():
    """docs/hooks.py, the mkdocs hooks: which repository files the site serves and which
    included files may be missing."""
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HOOKS = _hooks()


def _prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code spans, where a link is no link."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _links(text: str) -> list[str]:
    """The targets of the Markdown links and images in ``text``."""
    return re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", _prose(text))


def _nav_pages(nav) -> list[str]:
    """Every page the mkdocs nav names, in order."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for entry in nav for page in _nav_pages(entry)]
    return [page for entry in nav.values() for page in _nav_pages(entry)]


class _AnyTagLoader(yaml.SafeLoader):
    """mkdocs.yml's tags (``!relative``) read as plain values."""


_AnyTagLoader.add_multi_constructor("!", lambda loader, suffix, node: None)
MKDOCS = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_AnyTagLoader)


def test_readme_set_up_commands_are_the_makefile_and_ci_ones():
    makefile = (ROOT / "Makefile").read_text()
    assert "make demo" in README and "make test" in README
    assert "\ndemo:" in makefile and "\ntest:" in makefile
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    # The site is built in CI, by the make target the set-up page names, with the docs extra
    # that `make install` installs by default.
    assert "\nmake docs\n" in ci and "\ndocs: install\n" in makefile
    assert "mkdocs build --strict" in makefile and "make docs" in (DOCS / "setup.md").read_text()
    (extras,) = re.findall(r"^EXTRAS \?= (\S+)$", makefile, flags=re.M)
    assert "docs" in extras.split(",")


def test_the_readme_is_a_front_door_of_at_most_250_lines():
    assert len(README.splitlines()) <= 250


@pytest.mark.parametrize("path", [ROOT / "README.md", *PAGES], ids=lambda p: str(p.name))
def test_every_experiment_file_named_exists(path):
    for word in path.read_text().split():
        word = word.strip("`(),.")
        if word.startswith("experiments/") and word.endswith(".yaml") and "<" not in word:
            assert (ROOT / word).is_file(), f"{path}: {word}"


@pytest.mark.parametrize("path", [ROOT / "README.md", *PAGES], ids=lambda p: str(p.name))
def test_every_relative_link_points_to_an_existing_file(path):
    served = set(HOOKS.served_paths())
    for link in _links(path.read_text()):
        if re.match(r"[a-z]+:", link) or link.startswith("#"):
            continue  # a URL, or an anchor on the same page
        target = (path.parent / link.split("#", 1)[0]).resolve()
        if target.is_file():
            continue
        # In the site, the hook serves some repository files at their repository path.
        inside = target.relative_to(DOCS).as_posix() if target.is_relative_to(DOCS) else None
        assert inside in served, f"{path.relative_to(ROOT)}: {link} does not exist"


@pytest.mark.parametrize("page", _nav_pages(MKDOCS["nav"]))
def test_every_page_of_the_nav_exists(page):
    assert (DOCS / page).is_file(), f"mkdocs.yml's nav names docs/{page}, which does not exist"


def test_every_page_is_in_the_nav():
    nav = set(_nav_pages(MKDOCS["nav"]))
    assert {page.relative_to(DOCS).as_posix() for page in PAGES} <= nav


def test_every_included_result_file_exists_or_may_be_missing():
    included = [
        (page, path)
        for page in PAGES
        for path in re.findall(r'^--8<-- "([^":]+)(?::\d+)?"$', page.read_text(), flags=re.M)
    ]
    assert {"results/melu_ml1m/table.md", "results/tallrec_ml100k/table.md"} <= {
        path for _, path in included
    }
    for page, path in included:
        assert (ROOT / path).is_file() or path in HOOKS.OPTIONAL, f"{page}: {path}"


# The README's headline table: each benchmark's generated table, the column of its score, and
# whether lower is better.
HEADLINE_SOURCES = {
    "ML-1M": ("results/melu_ml1m/table.md", 3, min),
    "ML-100K": ("results/tallrec_ml100k/table.md", 4, max),
}


def _headline_rows() -> list[list[str]]:
    section = README.split("## Headline results", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ML-")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def _result_row(lines: list[str], key: str, method: str, text: str) -> str:
    (row,) = [line for line in lines if line.startswith(f"| {key} | {method} | {text} |")]
    return row


@pytest.mark.parametrize("row", _headline_rows(), ids=lambda row: row[0])
def test_the_readme_headline_numbers_are_those_of_the_generated_tables(row):
    where, best, score, baseline, delta, paper = row
    benchmark = where.split()[0].rstrip(",")
    path, column, better = HEADLINE_SOURCES[benchmark]
    lines = (ROOT / path).read_text().splitlines()
    key = re.findall(r"`(\w+)`", where)[0] if benchmark == "ML-1M" else where.split()[1]
    method, _, text = best.strip("`*\\").partition("+")  # `mamo+join`: the join row
    best_row = _result_row(lines, key, method, text or "none")
    assert f"| {score}" in best_row and f"| {delta} |" in best_row, (path, best_row)
    base_name, base_value = baseline.split()
    assert f"| {base_value} [" in _result_row(lines, key, base_name.strip("`"), "none")
    if paper != "–":
        name, value = paper.split()
        assert f"| {value} |" in _result_row(lines, key, f"{name} (paper)", "–")
    # "best other method": no other row of ours (not the baseline, not the paper's) scores
    # better.
    ours = [
        float(cells[column].split()[0])
        for cells in (line.strip("|").split("|") for line in lines)
        if len(cells) > column
        and cells[0].strip() == key
        and "(paper)" not in cells[1]
        and cells[1].strip() != base_name.strip("`")
    ]
    assert better(ours) == float(score.split()[0])
