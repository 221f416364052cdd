"""mkdocs hooks (``hooks:`` in mkdocs.yml): the committed result plots served from the
repository, and the generated tables that may not exist yet.

The results pages include the generated tables themselves (``--8<-- "results/.../table.md"``,
pymdownx.snippets with the repository as its base path), so the site shows what the result
files hold when it is built, never a pasted copy.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Committed plots the results pages show, served at their repository path: a page links
# `results/melu_ml1m/plot.png` as if the repository's `results/` sat inside docs/.
SERVED = (
    "results/*/plot.png",
    "results/leaderboard/*/plot.png",
    "benchmarks/results/text_encoders.png",
    "benchmarks/results/*/text_encoders.png",
)

# Generated files that may not exist yet: the snippet line that includes one is replaced by
# this note until it does (snippets' check_paths fails the build on any other missing file).
OPTIONAL = {
    "results/leaderboard/leaderboard.md": (
        '!!! note "Not generated yet"\n'
        "    `results/leaderboard/leaderboard.md` does not exist in this checkout; once\n"
        "    `metarec leaderboard` has written it, this page shows it.\n"
    ),
}

log = logging.getLogger("mkdocs.hooks.metarec")


def served_paths() -> list[str]:
    """The repository paths (POSIX) of the files in ``SERVED`` that exist."""
    found = {path for pattern in SERVED for path in ROOT.glob(pattern) if path.is_file()}
    return sorted(path.relative_to(ROOT).as_posix() for path in found)


def on_files(files, config):
    """Add the served plots to the site's files, so pages can link them and the build copies
    them."""
    from mkdocs.structure.files import File

    for path in served_paths():
        files.append(File(path, str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Replace the snippet line of each missing ``OPTIONAL`` file (with or without a line
    range, ``--8<-- "results/leaderboard/leaderboard.md:3"``) by its note."""
    for path, note in OPTIONAL.items():
        line = re.compile(rf'^--8<-- "{re.escape(path)}(:\d+)*"$', flags=re.M)
        if line.search(markdown) and not (ROOT / path).is_file():
            log.info("%s: %s is not generated yet; the page says so", page.file.src_uri, path)
            markdown = line.sub(note.replace("\\", r"\\"), markdown)
    return markdown
