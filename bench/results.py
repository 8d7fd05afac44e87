"""Saved benchmark results: one JSON file per run in ``benchmarks/results/``, read back, as Markdown.

``make bench`` (``bench.__main__``) and the peers benchmark (``bench.peers.race``)
write one file per run, named ``<UTC date>-<short commit>-<benchmarks>.json``: when, at which
commit (and whether the worktree had changes), on which machine, with which command, and per
benchmark row what was measured, its figures, the ratio, the budget and the verdict. The docs'
hook (``docs/hooks/benchmarks.py``) renders the newest saved result of each benchmark with
:func:`latest_markdown`. Light on purpose (no torch, no Rich): the docs build imports it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import ROOT

RESULTS_DIR = ROOT / "benchmarks" / "results"


@dataclass
class Row:
    """One printed row of a benchmark: ``bench`` is its ``--only=`` name."""

    bench: str
    name: str  # what was measured, as printed
    measured: str  # the figures, as printed
    ratio: float | None  # None: measured, no budget
    budget: str
    passed: bool | None  # None: measured, nothing to pass
    values: dict[str, Any] = field(default_factory=dict)  # the figures as numbers

    @property
    def verdict(self) -> str:
        return {True: "ok", False: "over budget", None: ""}[self.passed]


@dataclass
class Result:
    """One run of a benchmark command."""

    date: str  # UTC, ISO 8601
    commit: dict[str, Any]  # short, full, dirty (the worktree had changes)
    machine: str
    python: str | None
    torch: str | None
    command: list[str]
    benches: list[str]
    rows: list[Row]
    extra: dict[str, Any] = field(default_factory=dict)  # a benchmark's own summary (peers), notes

    @property
    def passed(self) -> bool:
        return all(r.passed is not False for r in self.rows)


def _proc(file: str, pattern: str) -> str | None:
    try:
        found = re.search(pattern, Path("/proc", file).read_text(), re.M)
    except OSError:
        return None
    return found.group(1) if found else None


def machine() -> str:
    """CPU model, cores and memory of this machine."""
    cpu = _proc("cpuinfo", r"^model name\s*:\s*(.+)$") or platform.processor() or platform.machine()
    kib = _proc("meminfo", r"^MemTotal:\s*(\d+)")
    return f"{cpu}, {os.cpu_count()} cores" + (f", {int(kib) / 2**20:.0f} GiB" if kib else "")


def git_commit(root: Path = ROOT) -> dict[str, Any]:
    """The checked-out commit and whether the worktree differs from it (saved results aside)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    full = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--", ".", f":!{RESULTS_DIR.relative_to(ROOT)}")
    return {"short": full[:7] if full else None, "full": full, "dirty": bool(status) if full else None}


def new(benches: Sequence[str], rows: Sequence[Row], command: Sequence[str], **extra: Any) -> Result:
    """A result of this run, on this machine, at the current commit."""
    try:
        torch_version: str | None = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = None
    return Result(
        date=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        commit=git_commit(),
        machine=machine(),
        python=platform.python_version(),
        torch=torch_version,
        command=list(command),
        benches=list(benches),
        rows=list(rows),
        extra=extra,
    )


def file_name(result: Result, label: str | None = None) -> str:
    stamp = result.date.replace(":", "")  # 2026-12-05T081200Z
    return f"{stamp}-{result.commit.get('short') or 'nocommit'}-{label or '+'.join(result.benches)}.json"


def write(result: Result, directory: Path = RESULTS_DIR, label: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file_name(result, label)
    path.write_text(json.dumps(_finite(asdict(result)), indent=1, ensure_ascii=False) + "\n")
    return path


def read(path: Path) -> Result:
    data = json.loads(Path(path).read_text())
    return Result(**{**data, "rows": [Row(**r) for r in data["rows"]]})


def read_all(directory: Path = RESULTS_DIR) -> list[Result]:
    """Every saved result, oldest first."""
    return sorted((read(p) for p in Path(directory).glob("*.json")), key=lambda r: r.date)


def _finite(value: Any) -> Any:
    """NaN and infinity as null: the files stay plain JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


# ------------------------------------------------------------------ Markdown
def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(rows: Iterable[Row]) -> list[str]:
    lines = ["| benchmark | measured | ratio | budget | verdict |", "|---|---|---|---|---|"]
    for r in rows:
        ratio = "" if r.ratio is None else f"{r.ratio:.3f}"
        cells = (r.name, r.measured, ratio, r.budget, f"**{r.verdict}**" if r.passed is False else r.verdict)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def provenance(result: Result, path: Path | None = None) -> str:
    """When, where and how a result was measured, in one paragraph."""
    commit = result.commit.get("short") or "unknown"
    dirty = " with uncommitted changes" if result.commit.get("dirty") else ""
    versions = ", ".join(f"{k} {v}" for k, v in (("Python", result.python), ("torch", result.torch)) if v)
    text = (
        f"Measured {result.date.replace('T', ' ').replace('Z', ' UTC')} at commit `{commit}`{dirty} "
        f"on {result.machine}" + (f" ({versions})" if versions else "") + f" by `{' '.join(result.command)}`"
    )
    if path is not None:
        text += f"; saved in `{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}`"
    if source := result.extra.get("source"):
        text += f". {source}"
    return text + "."


def markdown(result: Result, bench: str | None = None, path: Path | None = None) -> str:
    """A result (or its rows of one benchmark) as Markdown: its provenance, then its table."""
    lines = [provenance(result, path), "", *table(r for r in result.rows if bench in (None, r.bench))]
    if "peers" in result.extra and bench in (None, "peers"):
        from bench.peers import race as peers

        lines += [
            "",
            "Per tool and seed, as the benchmark printed them:",
            "",
            *peers.markdown(result.extra["peers"]),
        ]
    return "\n".join(lines) + "\n"


def latest_markdown(benches: Sequence[str], directory: Path = RESULTS_DIR, level: int = 3) -> str:
    """For each benchmark, its newest saved result; then the benchmarks no file measured yet."""
    saved = sorted(((p, read(p)) for p in Path(directory).glob("*.json")), key=lambda pr: pr[1].date)
    newest = {row.bench: (path, result) for path, result in saved for row in result.rows}
    out = [
        f"{'#' * level} `{bench}`\n\n" + markdown(newest[bench][1], bench, newest[bench][0])
        for bench in [*benches, *sorted(set(newest) - set(benches))]
        if bench in newest
    ]
    if missing := [b for b in benches if b not in newest]:
        names = ", ".join(f"`{b}`" for b in missing)
        out.append(f"No saved result yet for {names}: `make bench ARGS=--only=<name>` measures one.\n")
    return "\n".join(out)


if __name__ == "__main__":  # python -m bench.results FILE...: print saved results as Markdown
    for arg in sys.argv[1:]:
        print(markdown(read(Path(arg)), path=Path(arg).resolve()))
