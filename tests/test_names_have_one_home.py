"""Each name has one home: metric keys in ``sweeplab.metrics``, MLflow tag names in
``sweeplab.tracking.tags``. Everywhere else in ``src/`` they are spelled through those constants.

The source is read with :mod:`ast`: a string constant (an f-string's literal parts too) that spells
a split's metric key (``val/acc``, ``train/loss``, ``robust/test/acc/mean``) or a ``sweeplab.<tag>``
tag name fails the test. Docstrings and comments may name them.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from sweeplab.tracking import tags

SRC = Path(__file__).resolve().parents[1] / "src" / "sweeplab"

METRIC_HOMES = {"metrics.py"}
TAG_HOMES = {"tracking/tags.py"}
# Files that still spell names out, outside what the change that added this test could edit:
# moved by the lead, then removed here (test_the_allow_list_holds_only_files_that_still_need_it).

# a split's metric key, alone or inside a longer key (robust/val/acc/mean, single_winner_test/acc)
METRIC_KEY = re.compile(r"(?<![A-Za-z0-9])(?:train|val|test)/[A-Za-z0-9_]+")
# sweeplab.<name>, not part of a longer dotted name (a module path)
TAG_LIKE = re.compile(r"(?<![\w.])sweeplab\.[a-z_]+(?![\w.])")
TAG_NAMES = {v for k, v in vars(tags).items() if k.endswith("_TAG") and v.startswith("sweeplab.")}
NOT_TAGS = {"sweeplab.json"}  # the sweep's state file


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


def offences(source: str, metric_home: bool = False, tag_home: bool = False) -> list[tuple[int, str]]:
    """(line, text) of each string constant in ``source`` that spells a name outside its home."""
    tree = ast.parse(source)
    skipped = _docstrings(tree) | _logger_names(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) or id(node) in skipped:
            continue
        text = node.value
        if not metric_home and METRIC_KEY.search(text):
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
    found = offences(source, metric_home=path in METRIC_HOMES, tag_home=path in TAG_HOMES)
    assert not found, f"src/sweeplab/{path} spells names outside their home (sweeplab.metrics, " + (
        "sweeplab.tracking.tags): " + "; ".join(f"line {n}: {t!r}" for n, t in found)
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
