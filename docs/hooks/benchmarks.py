"""MkDocs hook: the Benchmarks page's figures, generated at build time from the saved results.

``benchmarks.md`` holds the marker ``<!-- saved-results -->``; it is replaced by, for each
benchmark of ``make bench`` (``bench.__main__.BENCHES``), the newest result saved in
``benchmarks/results/*.json`` that measured it: its date, commit, machine and command beside its
table (``bench.results.latest_markdown``). No figure on the page is typed by hand: a new
saved result changes the page. Loaded by ``hooks:`` in mkdocs.yml; needs sweeplab importable. The
benchmarks' package (``bench/``) is not installed: it is imported from the repository root.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository, where bench/ is
PAGE = "benchmarks.md"
MARKER = "<!-- saved-results -->"


def _importable() -> None:
    """Put the repository root on the import path, for ``bench``. When a hook runs, not when it is
    loaded: mkdocs gives back its own ``sys.path`` after loading a hook."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def on_page_markdown(markdown, page, config, files):  # noqa: ANN001, ANN201 - MkDocs' hook signature
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"{PAGE} lost its marker {MARKER}: the saved results have nowhere to go")
    _importable()
    from bench.__main__ import BENCHES
    from bench.results import latest_markdown

    return markdown.replace(MARKER, latest_markdown(BENCHES))


def on_serve(server, config, builder):  # noqa: ANN001, ANN201 - `mkdocs serve` rebuilds on a new result
    _importable()
    from bench.results import RESULTS_DIR

    server.watch(str(RESULTS_DIR))
    return server
