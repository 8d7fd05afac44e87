"""MkDocs hook: the Benchmarks page's figures, generated at build time from the saved results.

``benchmarks.md`` holds the marker ``<!-- saved-results -->``; it is replaced by, for each
benchmark of ``make bench`` (``sweeplab.bench.__main__.BENCHES``), the newest result saved in
``benchmarks/results/*.json`` that measured it: its date, commit, machine and command beside its
table (``sweeplab.bench.results.latest_markdown``). No figure on the page is typed by hand: a new
saved result changes the page. Loaded by ``hooks:`` in mkdocs.yml; needs sweeplab importable.
"""

from __future__ import annotations

PAGE = "benchmarks.md"
MARKER = "<!-- saved-results -->"


def on_page_markdown(markdown, page, config, files):  # noqa: ANN001, ANN201 - MkDocs' hook signature
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"{PAGE} lost its marker {MARKER}: the saved results have nowhere to go")
    from sweeplab.bench.__main__ import BENCHES
    from sweeplab.bench.results import latest_markdown

    return markdown.replace(MARKER, latest_markdown(BENCHES))


def on_serve(server, config, builder):  # noqa: ANN001, ANN201 - `mkdocs serve` rebuilds on a new result
    from sweeplab.bench.results import RESULTS_DIR

    server.watch(str(RESULTS_DIR))
    return server
