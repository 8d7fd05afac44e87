"""The user's own project: its ``conf/`` layered over sweeplab's, its code importable, its identity.

A project is a folder with a ``conf/`` of config groups (``model/``, ``data/``, ``search/``,
``experiment/``...) and the Python code its options' ``_target_`` name. sweeplab finds it by
``--config-dir DIR`` (which sets ``$SWEEPLAB_CONFIG_DIR`` for every process of the command, Ray's
trials included), ``$SWEEPLAB_CONFIG_DIR``, or a ``conf/`` in the current folder. Its options add to
and override the built-in groups; the built-in ones stay available. The folder that holds ``conf/``
is the project's root: it goes on ``sys.path`` here and, on a cluster, travels to every worker in
Ray's runtime environment (``runtime_env``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

ENV = "SWEEPLAB_CONFIG_DIR"
# What never travels to a cluster's workers: data, outputs, environments, caches, VCS metadata.
# (gitignore-style patterns, as Ray's runtime_env "excludes" reads them)
EXCLUDES = (
    # hidden files and folders: .git, .venv, caches, and where secrets live (.aws, .ssh, .env, .netrc)
    ".?*",  # not ".*": Ray matches the working_dir itself as "." and would leave out everything
    "/venv",
    "/env",
    "__pycache__",
    "*.pyc",
    "node_modules",
    # anchored at the project's folder: conf/data/ (the data options) must travel
    "/data",
    "/outputs",
    "/sweeps",
    "/mlruns",
    "/mlartifacts",
    "/mlflow.db",
    "*.ckpt",
    "*.pt",
    "*.npz",
)
# Ray refuses a working_dir package larger than this (its own limit is 500 MiB; uploads this size
# already take a while): the check below says what to exclude instead of Ray's message.
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
REQUIREMENTS = "requirements.txt"


class ProjectError(ValueError):
    """The project cannot be used as it is; the message names the folder and the fix."""


def builtin_conf_dir() -> Path:
    """sweeplab's own configs: the checkout's ``conf/`` beside ``src/``, else the copy installed with
    the package (``sweeplab/conf``, mapped from ``conf/`` when the wheel is built)."""
    here = Path(__file__).resolve().parent
    for path in (here.parents[1] / "conf", here / "conf"):
        if (path / "config.yaml").is_file():
            return path
    raise ProjectError(f"sweeplab's own conf/ is missing beside {here}; reinstall sweeplab")


def conf_dir() -> Path | None:
    """The project's ``conf/``: ``$SWEEPLAB_CONFIG_DIR`` (a relative one from the current folder, as
    on a cluster's worker), else ``./conf``; None when there is none, or it is sweeplab's own."""
    given = os.environ.get(ENV)
    path = Path(given) if given else Path("conf")
    if given and not path.is_absolute() and not path.is_dir():
        # a cluster's worker: the project's copy is Ray's working_dir, which is on its import path
        # (and usually its current folder)
        path = next((Path(e) / given for e in sys.path if e and (Path(e) / given).is_dir()), path)
    if not path.is_dir():
        if given:
            raise ProjectError(
                f"{ENV}={given} is not a folder; point --config-dir (or {ENV}) at your project's conf/"
            )
        return None
    path = path.resolve()
    return None if path == builtin_conf_dir() else path


def root() -> Path | None:
    """The folder that holds the project's ``conf/``: where its code is imported from."""
    conf = conf_dir()
    return conf.parent if conf is not None else None


def make_importable() -> None:
    """The project's root on ``sys.path`` (first: the user's module wins over a same-named one)."""
    top = root()
    if top is not None and str(top) not in sys.path:
        sys.path.insert(0, str(top))


def code_paths(module_names: Iterable[str]) -> list[str]:
    """The project's top-level modules (a ``.py`` file or a package folder) among ``module_names``:
    what a logged model carries so that it loads where the project is not on the path."""
    top = root()
    if top is None:
        return []
    out = []
    for name in dict.fromkeys(n.split(".")[0] for n in module_names):
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None)
        if not file:
            continue
        path = Path(file).resolve()
        path = path.parent if path.name == "__init__.py" else path
        if path.is_relative_to(top):
            out.append(str(path))
    return out


def identity() -> dict[str, str]:
    """What code the runs of this project ran: its git commit (``+dirty`` with uncommitted changes)
    or, outside a repository, a hash of its Python and YAML files. Empty without a project."""
    top = root()
    if top is None:
        return {}
    commit = _git(top, "rev-parse", "HEAD")
    if commit:
        dirty = bool(_git(top, "status", "--porcelain", "--untracked-files=no"))
        return {"project.root": str(top), "project.commit": commit + ("+dirty" if dirty else "")}
    return {"project.root": str(top), "project.hash": files_hash(top)}


def files_hash(top: Path) -> str:
    h = hashlib.sha256()
    for rel in sorted(travelling(top)):
        if rel.endswith((".py", ".yaml", ".yml")):
            h.update(rel.encode() + b"\0" + (top / rel).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _git(top: Path, *args: str) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(top), *args], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def runtime_env(remote: bool) -> dict[str, object]:
    """What Ray's workers need of the project. On a cluster (``remote``): its folder as Ray's
    ``working_dir`` (the workers' current folder and import path; data, outputs and environments
    left out), ``$SWEEPLAB_CONFIG_DIR`` relative to it, and its pip requirements where it declares
    them. On this machine: its folder on the workers' path and its conf/ by absolute path."""
    top, conf = root(), conf_dir()
    if top is None or conf is None:
        return {}
    if not remote:
        path = os.pathsep.join(filter(None, [str(top), os.environ.get("PYTHONPATH")]))
        return {"env_vars": {ENV: str(conf), "PYTHONPATH": path}}
    size = upload_size(top)
    if size > MAX_UPLOAD_BYTES:
        biggest = [item for item in sorted(_sizes(top), key=lambda item: -item[1])[:3] if item[1] >= 2**20]
        names = ", ".join(f"{p} ({n / 2**20:.0f} MiB)" for p, n in biggest)
        raise ProjectError(
            f"the project {top} is {size / 2**20:.0f} MiB to send to the cluster's workers (at most "
            f"{MAX_UPLOAD_BYTES // 2**20} MiB); move data out of it or list it in a .rayignore file "
            f"there (largest: {names})"
        )
    env: dict[str, object] = {
        "working_dir": str(top),
        "excludes": list(EXCLUDES),
        "env_vars": {ENV: str(conf.relative_to(top)) if conf.is_relative_to(top) else str(conf)},
    }
    if (top / REQUIREMENTS).is_file():
        env["pip"] = str(top / REQUIREMENTS)
    return env


def upload_size(top: Path) -> int:
    return sum(n for _, n in _sizes(top))


def _sizes(top: Path) -> list[tuple[str, int]]:
    return [(rel, (top / rel).stat().st_size) for rel in travelling(top)]


def travelling(top: Path) -> list[str]:
    """The project's files Ray's working_dir takes to the workers: all but what :data:`EXCLUDES`,
    its ``.gitignore`` and ``.rayignore`` leave out (matched as Ray matches them, gitignore-style)."""
    import pathspec

    lines = list(EXCLUDES)
    for name in (".gitignore", ".rayignore"):
        if (top / name).is_file():
            lines += (top / name).read_text().splitlines()
    spec = pathspec.PathSpec.from_lines("gitwildmatch", lines)
    out = []
    for dirpath, dirnames, filenames in os.walk(top):
        rel_dir = Path(dirpath).relative_to(top)
        dirnames[:] = [d for d in dirnames if not spec.match_file(f"{rel_dir / d}/")]
        out += [str(rel_dir / n) for n in filenames if not spec.match_file(str(rel_dir / n))]
    return out
