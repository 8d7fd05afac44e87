"""``sweeplab init DIR``: a small project of one's own that runs as it is.

The files are real files under ``sweeplab/templates/project/`` (packaged with sweeplab), copied
as they are: what a user gets is what the repository lints and tests. A name the packaging would
not carry or git would treat specially is stored without its dot (``gitignore``) and renamed here.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from sweeplab.project import ProjectError

# Stored name -> written name: dot files are stored without the dot (package-data globs skip them).
RENAMED = {"gitignore": ".gitignore"}
SKIPPED = ("__pycache__", ".pyc")  # left behind if the templates were ever imported or run


def template_root() -> Traversable:
    return files("sweeplab") / "templates" / "project"


def init_project(target: Path) -> list[Path]:
    """Write the template project into ``target`` (created; an existing one must be empty) and
    return the files written, in the order written."""
    target = Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        what = "a file" if not target.is_dir() else "a folder that is not empty"
        raise ProjectError(f"{target} is {what}; choose a new folder name for the project")
    root = template_root()
    if not root.is_dir():
        raise ProjectError(f"sweeplab's project template is missing ({root}); reinstall sweeplab")
    written: list[Path] = []
    for rel, source in _walk(root):
        dest = target.joinpath(*rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(source.read_bytes())
        written.append(dest)
    return written


def _walk(node: Traversable, rel: tuple[str, ...] = ()):
    """Every template file with its path to write, sorted so that the listing reads the same always."""
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name in SKIPPED or child.name.endswith(SKIPPED):
            continue
        if child.is_dir():
            yield from _walk(child, (*rel, child.name))
        else:
            yield (*rel, RENAMED.get(child.name, child.name)), child
