"""Each name has one home: metric keys in ``sweeplab.metrics``, MLflow tag names in
``sweeplab.tracking.tags``, nightly verdicts in ``sweeplab.nightly.detect`` (``Verdict``), a
nightly entry's and claim's statuses in ``sweeplab.nightly.status``. Everywhere else in ``src/``
they are spelled through those constants.

The source is read with :mod:`ast`: a string constant (an f-string's literal parts too) that spells
a split's metric key (``val/acc``, ``train/loss``, ``robust/test/acc/mean``), a ``sweeplab.<tag>``
tag name or a nightly verdict fails the test; so does one that is a nightly status, in the nightly
code. Docstrings and comments may name them, and so may prose: "anything regressed" is English,
``"regressed"``, ``".regressed{"`` and ``"insufficient_history"`` are the verdict.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from sweeplab.nightly.detect import Verdict
from sweeplab.nightly.status import ClaimStatus, EntryStatus
from sweeplab.tracking import tags

SRC = Path(__file__).resolve().parents[1] / "src" / "sweeplab"

METRIC_HOMES = {"metrics.py"}
TAG_HOMES = {"tracking/tags.py"}
VERDICT_HOMES = {"nightly/detect.py"}
STATUS_HOMES = {"nightly/status.py"}
NIGHTLY_CODE = ("nightly/", "cli/nightly.py")  # where a nightly status is only ever an enum member

# a split's metric key, alone or inside a longer key (robust/val/acc/mean, single_winner_test/acc)
METRIC_KEY = re.compile(r"(?<![A-Za-z0-9])(?:train|val|test)/[A-Za-z0-9_]+")
# sweeplab.<name>, not part of a longer dotted name (a module path)
TAG_LIKE = re.compile(r"(?<![\w.])sweeplab\.[a-z_]+(?![\w.])")
TAG_NAMES = {v for k, v in vars(tags).items() if k.endswith("_TAG") and v.startswith("sweeplab.")}
NOT_TAGS = {"sweeplab.json"}  # the sweep's state file
# The verdicts a literal must not spell; "ok" is left out, too common a word to tell apart.
VERDICT_WORDS = "|".join(v.value for v in (Verdict.improved, Verdict.regressed))
# A verdict alone or set in code (a CSS class, an attribute, a key), not a word of a sentence;
# the identifier-like insufficient_history anywhere.
VERDICT_LIKE = re.compile(
    rf"(?:^\s*|(?<=[^\w\s(]))(?:{VERDICT_WORDS})(?:\s*$|(?=[^\w\s,.;:!?)]))"
    rf"|(?<!\w){Verdict.insufficient_history.value}(?!\w)"
)
NIGHTLY_STATUSES = {s.value for s in (*EntryStatus, *ClaimStatus)}


def _module_name(text: str) -> bool:
    """``sweeplab.<name>`` names a module or package of sweeplab (a logger, ``python -m``)."""
    name = text.removeprefix("sweeplab.")
    return (SRC / f"{name}.py").exists() or (SRC / name / "__init__.py").exists()


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of string constants that are docstrings (or other bare string statements)."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }


def _logger_names(tree: ast.AST) -> set[int]:
    """ids of the constants that name a logger: ``logging.getLogger("sweeplab.sweep")``."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "getLogger":
                out.add(id(node.args[0]))
    return out


def offences(
    source: str,
    metric_home: bool = False,
    tag_home: bool = False,
    verdict_home: bool = False,
    nightly_statuses: bool = False,
) -> list[tuple[int, str]]:
    """(line, text) of each string constant in ``source`` that spells a name outside its home;
    ``nightly_statuses``: a constant that is a nightly entry's or claim's status counts too."""
    tree = ast.parse(source)
    skipped = _docstrings(tree) | _logger_names(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) or id(node) in skipped:
            continue
        text = node.value
        if (
            (not metric_home and METRIC_KEY.search(text))
            or (not verdict_home and VERDICT_LIKE.search(text))
            or (nightly_statuses and text.strip() in NIGHTLY_STATUSES)
        ):
            found.append((node.lineno, text))
            continue
        if tag_home:
            continue
        for match in TAG_LIKE.findall(text):
            if match in TAG_NAMES or not (_module_name(match) or match in NOT_TAGS):
                found.append((node.lineno, text))
                break
    return sorted(found)


def _files() -> list[str]:
    return sorted(p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py"))


@pytest.mark.parametrize("path", _files())
def test_names_are_spelled_only_in_their_home(path):
    source = (SRC / path).read_text()
    found = offences(
        source,
        metric_home=path in METRIC_HOMES,
        tag_home=path in TAG_HOMES,
        verdict_home=path in VERDICT_HOMES,
        nightly_statuses=path.startswith(NIGHTLY_CODE) and path not in STATUS_HOMES,
    )
    assert not found, f"src/sweeplab/{path} spells names outside their home (sweeplab.metrics, " + (
        "sweeplab.tracking.tags, sweeplab.nightly.detect.Verdict, sweeplab.nightly.status): "
        + "; ".join(f"line {n}: {t!r}" for n, t in found)
    )


def test_the_scan_finds_what_it_should_and_nothing_else():
    caught = """
x = {"val/acc": 1, "robust/test/acc/mean": 2}
y = run.tags.get("sweeplab.status")
z = f"tags.`sweeplab.sweep` = '{name}'"
w = f"single_winner_test/acc"
u = "sweeplab.something_new"
"""
    assert [n for n, _ in offences(caught)] == [2, 2, 3, 4, 5, 6]
    fine = '''
"""A docstring may say val/loss and sweeplab.status."""
import logging
log = logging.getLogger("sweeplab.sweep")  # val/acc in a comment
cmd = ["python", "-m", "sweeplab.cli", "sweeplab.sweep.reaper"]
state = "sweeplab.json"
prefix = ("train/", "val/")
key = f"{split}/acc"
'''
    assert offences(fine) == []


def test_the_scan_finds_nightly_verdicts_and_statuses_but_not_prose():
    caught = """
v = "regressed"
colors = {"ok": "green", "improved": "cyan", "insufficient_history": "gold"}
css = ".regressed{background:#fdd}"
cell = f'<td class="improved">{x}</td>'
why = f"{entry} is insufficient_history tonight"
key = "verdicts/regressed"
"""
    assert [n for n, _ in offences(caught)] == [2, 3, 3, 4, 5, 6, 7]
    fine = '''
"""The night regressed: a docstring may say "regressed" and insufficient_history."""
say = f"{entry} regressed on {metrics}: running it again"
note = f"regressed in attempt {n}; the rerun did not confirm it ({verdict})"
help = "exits 1 when anything regressed or failed (improved, ok)."
label = "unregressed"
key = f"verdicts/{v}"
'''
    assert offences(fine) == []
    statuses = """
status = "failed"
ended = row.status in ("completed", "diverged")
claim = " finished "
"""
    assert offences(statuses) == []  # outside the nightly code "failed" is a trial's status too
    assert [n for n, _ in offences(statuses, nightly_statuses=True)] == [2, 3, 3, 4]
    assert offences('"regressed"', verdict_home=True) == []
