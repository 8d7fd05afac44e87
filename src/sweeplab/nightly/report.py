"""The nightly report: a table of verdicts and a plot per watched metric, as Markdown and HTML.

Written to ``<reports_dir>/<suite>/<night>/`` (``report.md``, ``report.html`` with the plots
embedded, ``plots/*.png``); the runner also logs them to MLflow. Every number comes from the
history store, so ``sweeplab nightly report --date D`` rebuilds the same report later.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from rich.table import Table  # noqa: E402
from rich.text import Text  # noqa: E402

from sweeplab.nightly.detect import Night, Verdict, Watch, change_points  # noqa: E402
from sweeplab.nightly.history import HistoryStore  # noqa: E402
from sweeplab.nightly.outcome import Judged, NightOutcome  # noqa: E402
from sweeplab.nightly.status import EntryStatus  # noqa: E402
from sweeplab.nightly.suite import Suite  # noqa: E402

COLUMNS = ("entry", "metric", "tonight", "baseline", "change", "p (Welch)", "verdict", "since", "why")
PLOT_COLORS = {
    Verdict.ok: "green",
    Verdict.improved: "tab:cyan",
    Verdict.regressed: "red",
    Verdict.insufficient_history: "gold",
}
COLORS = {  # terminal styles: a cell that reads as one of these is shown in its colour
    Verdict.ok: "green",
    Verdict.improved: "cyan",
    Verdict.regressed: "bold red",
    Verdict.insufficient_history: "yellow",
    EntryStatus.failed: "bold red",
}
HTML_STYLES = {  # the report's verdict cells, by their CSS class
    Verdict.regressed: "background:#fdd;font-weight:bold",
    Verdict.improved: "background:#dff",
    Verdict.ok: "background:#dfd",
    Verdict.insufficient_history: "background:#ffd",
}


@dataclass
class ReportPaths:
    html: Path
    markdown: Path
    plots: list[Path]


def fmt(value: float | None, spread: float | None = None, n: int | None = None) -> str:
    if value is None:
        return "–"
    text = f"{value:.4g}"
    if spread is not None:
        text += f" ± {spread:.2g}"
    return text + (f" (n={n})" if n is not None else "")


def table_rows(judged: Sequence[Judged]) -> list[list[str]]:
    rows = []
    for j in judged:
        v = j.judgement
        baseline = "–"
        if v.baseline_mean is not None:
            baseline = f"{fmt(v.baseline_mean, v.baseline_spread)} ({v.baseline_from}..{v.baseline_to})"
        change = "–"
        if v.delta is not None and v.baseline_mean:
            change = f"{v.delta:+.4g} ({v.delta / abs(v.baseline_mean):+.1%})"
        why = "; ".join(x for x in (v.reason, j.note) if x)
        rows.append(
            [
                j.entry,
                j.watch.metric,
                fmt(v.mean, v.spread, v.n),
                baseline,
                change,
                f"{v.p_value:.2g}" if v.p_value is not None else "–",
                v.verdict,
                str(v.began or ""),
                why,
            ]
        )
    return rows


def write(
    store: HistoryStore, suite: Suite, night: date, outcome: NightOutcome, out_dir: Path
) -> ReportPaths:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "plots").mkdir(exist_ok=True)
    accepted = store.accepted(suite.name)
    plots: list[tuple[str, Path]] = []
    for entry in suite.entries:
        for w in entry.watches:
            nights = store.series(suite.name, entry.name, w.metric, until=night)
            if not nights:
                continue
            verdict = next(
                (j.judgement.verdict for j in outcome.judged if (j.entry, j.watch) == (entry.name, w)), None
            )
            path = out_dir / "plots" / f"{_slug(entry.name)}__{_slug(w.metric)}.png"
            plot(
                nights,
                w,
                accepted.get((entry.name, w.metric), []),
                suite.settings,
                night,
                verdict,
                f"{entry.name} · {w.metric}",
                path,
            )
            plots.append((f"{entry.name} · {w.metric}", path))
    rows = table_rows(outcome.judged)
    counts = _counts(outcome.judged)
    md = _markdown(suite, night, outcome, rows, counts, plots, out_dir)
    page = _html(suite, night, outcome, rows, counts, plots)
    (out_dir / "report.md").write_text(md)
    (out_dir / "report.html").write_text(page)
    return ReportPaths(out_dir / "report.html", out_dir / "report.md", [p for _, p in plots])


# -------------------------------------------------------------------- plots
def segments(
    nights: Sequence[Night], watch: Watch, accepted: Sequence[date], settings
) -> tuple[list[int], list[int]]:
    """Change points over the whole series (detected within each accepted era) and accepted-change indices."""
    eras = sorted({0, *[i for i, n in enumerate(nights) if n.night in set(accepted)]})
    points, accepts = [], [i for i in eras if i > 0]
    for a, b in zip(eras, [*eras[1:], len(nights)], strict=False):
        means = [n.mean for n in nights[a:b]]
        points += [a + i for i in change_points(means, watch, settings.p_max, settings.window)]
    return points, accepts


def plot(
    nights, watch: Watch, accepted, settings, tonight: date, verdict: Verdict | None, title: str, path: Path
) -> Path:
    points, accepts = segments(nights, watch, accepted, settings)
    xs = list(range(len(nights)))
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    for x, n in zip(xs, nights, strict=False):
        ax.scatter([x] * len(n.values), n.values, s=9, color="0.6", zorder=2)
    ax.plot(
        xs, [n.mean for n in nights], "-o", color="tab:blue", ms=3, lw=1.2, label="mean over seeds", zorder=3
    )
    edges = sorted({0, *points, *accepts, len(nights)})
    for a, b in zip(edges, edges[1:], strict=False):  # each level's mean
        level = sum(n.mean for n in nights[a:b]) / (b - a)
        ax.hlines(level, a - 0.4, b - 0.6, colors="tab:orange", lw=2, zorder=1)
    for i, x in enumerate(points):
        ax.axvline(x - 0.5, color="tab:red", ls="--", lw=1, label="change point" if i == 0 else None)
    for i, x in enumerate(accepts):
        ax.axvline(x - 0.5, color="tab:green", ls="-", lw=1.5, label="accepted change" if i == 0 else None)
    if nights[-1].night == tonight and verdict:
        ax.scatter(
            [xs[-1]],
            [nights[-1].mean],
            s=70,
            facecolors="none",
            lw=2,
            edgecolors=PLOT_COLORS.get(verdict, "black"),
            zorder=4,
            label=f"tonight: {verdict}",
        )
    step = max(1, len(nights) // 10)
    ax.set_xticks(xs[::step], [n.night.strftime("%m-%d") for n in nights][::step], fontsize=8)
    ax.set_title(f"{title}  ({watch.describe()})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# ------------------------------------------------------------------ formats
def _counts(judged) -> dict[str, int]:
    out: dict[str, int] = {}
    for j in judged:
        out[j.judgement.verdict] = out.get(j.judgement.verdict, 0) + 1
    return out


def _headline(suite: Suite, night: date, outcome, counts: dict[str, int]) -> str:
    parts = [f"{n} {v}" for v, n in sorted(counts.items())]
    parts += [f"{len(outcome.problems)} {EntryStatus.failed}"] if outcome.problems else []
    parts += [f"{len(outcome.skipped)} {EntryStatus.skipped}"] if outcome.skipped else []
    return f"suite {suite.name}, night {night}: " + (", ".join(parts) or "nothing measured")


def _markdown(suite, night, outcome, rows, counts, plots, out_dir: Path) -> str:
    lines = [f"# Nightly report: {suite.name}, {night}", "", _headline(suite, night, outcome, counts), ""]
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    if outcome.problems or outcome.skipped:
        lines += ["", "## Not measured", "", "| entry | status | reason |", "|---|---|---|"]
        lines += [f"| {e} | {EntryStatus.failed} | {r} |" for e, r in outcome.problems.items()]
        lines += [f"| {e} | {EntryStatus.skipped} | {r} |" for e, r in outcome.skipped.items()]
    lines += ["", "## Plots", ""]
    lines += [f"![{title}]({p.relative_to(out_dir)})" for title, p in plots]
    return "\n".join(lines) + "\n"


def _html(suite, night, outcome, rows, counts, plots) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in COLUMNS)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{e(c)}">{e(c)}</td>' if i == 6 else f"<td>{e(c)}</td>" for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    missing = "".join(
        f"<tr><td>{e(k)}</td><td>{EntryStatus.failed}</td><td>{e(v)}</td></tr>"
        for k, v in outcome.problems.items()
    )
    missing += "".join(
        f"<tr><td>{e(k)}</td><td>{EntryStatus.skipped}</td><td>{e(v)}</td></tr>"
        for k, v in outcome.skipped.items()
    )
    figures = "".join(
        f'<figure><img alt="{e(t)}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
        f"<figcaption>{e(t)}</figcaption></figure>"
        for t, p in plots
    )
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px;text-align:left}th{background:#f3f3f3}"
        + "".join(f".{verdict}{{{css}}}" for verdict, css in HTML_STYLES.items())
        + "img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Nightly {e(suite.name)} {night}</title>"
        f"<style>{style}</style></head><body><h1>Nightly report: {e(suite.name)}, {night}</h1>"
        f"<p>{e(_headline(suite, night, outcome, counts))}</p><table><tr>{head}</tr>{body}</table>"
        + (
            "<h2>Not measured</h2><table><tr><th>entry</th><th>status</th><th>reason</th></tr>"
            f"{missing}</table>"
            if missing
            else ""
        )
        + f"<h2>Plots</h2>{figures}</body></html>\n"
    )


def terminal_summary(outcome: NightOutcome) -> Table:
    table = Table(title=f"nightly {outcome.suite} {outcome.night}", title_justify="left")
    for c in ("entry", "metric", "tonight", "baseline", "verdict", "since"):
        table.add_column(c)
    cells = [[r[0], r[1], r[2], r[3], r[6], r[7]] for r in table_rows(outcome.judged)]
    cells += [
        [entry, "", "", "", EntryStatus.failed, reason[:80]] for entry, reason in outcome.problems.items()
    ]
    cells += [
        [entry, "", "", "", EntryStatus.skipped, reason[:80]] for entry, reason in outcome.skipped.items()
    ]
    for row in cells:  # plain text, never markup: names and reasons may hold brackets
        table.add_row(*(Text(c, style=COLORS.get(c, "") if i == 4 else "") for i, c in enumerate(row)))
    return table


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")
