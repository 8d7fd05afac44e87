"""Figures for runs and sweeps (matplotlib, headless Agg backend)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from sweeplab.metrics import EPOCH, VAL_LOSS, quality_key  # noqa: E402
from sweeplab.objective import Mode  # noqa: E402
from sweeplab.status import TrialStatus  # noqa: E402


def learning_curves(
    history: Sequence[dict[str, float]], path: str | Path, title: str = "", best_epoch: int | None = None
) -> Path:
    """Training vs validation loss and accuracy over epochs, as the course draws them (a regression's
    second panel: its validation error, ``val/mae``)."""
    epochs = [h[EPOCH] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    second = quality_key(history[-1]).split("/", 1)[1]
    for ax, metric in zip(axes, ("loss", second), strict=True):
        if f"train/{metric}" in history[-1]:
            ax.plot(
                epochs,
                [h[f"train/{metric}"] for h in history],
                "o-",
                label=f"train/{metric}",
                color="tab:blue",
            )
        ax.plot(
            epochs, [h[f"val/{metric}"] for h in history], "s-", label=f"val/{metric}", color="tab:orange"
        )
        if best_epoch is not None:
            ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch ({best_epoch})")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("accuracy" if metric == "acc" else metric)
        ax.set_title(f"Training and validation {'accuracy' if metric == 'acc' else metric}")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def overlaid_validation_curves(
    curves: dict[str, Sequence[dict[str, float]]], path: str | Path, title: str = ""
) -> Path:
    """Validation loss and accuracy of several trials on shared axes (a sweep's top trials)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    keys = (VAL_LOSS, quality_key(next((h[-1] for h in curves.values() if h), {})))
    for label, history in curves.items():
        epochs = [h[EPOCH] for h in history]
        for ax, key in zip(axes, keys, strict=True):
            ax.plot(epochs, [h.get(key, math.nan) for h in history], "o-", markersize=3, label=label)
    for ax, key in zip(axes, keys, strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle(title or "validation curves of the top trials")
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


@dataclass(frozen=True)
class TrialPoint:
    """One trial in :func:`metric_vs_hyperparameters`."""

    values: Mapping[str, Any]  # its sampled values
    metric: float  # its best value of the sweep's metric
    epochs: int  # how far it trained
    status: str
    best: bool = False  # the sweep's best trial


# marker by how a trial ended: ran its course, was cut short, blew up
_MARKERS = {
    TrialStatus.stopped_by_scheduler: "v",
    TrialStatus.stopped_by_budget: "v",
    TrialStatus.diverged: "X",
}
_ENDINGS = {"o": "ran to its end", "v": "stopped early by the scheduler or budget", "X": "diverged"}


def informative_range(values: Sequence[float], mode: str | Mode) -> tuple[float, float]:
    """The y-range that shows where the good trials differ: beyond Tukey's fence (1.5 IQR past
    the quartile) on the bad side, values are outliers (a learning rate that never learned, at
    chance-level loss) and would squeeze every good trial into a line. The good side is never cut."""
    finite = sorted(v for v in values if math.isfinite(v))
    if not finite:
        return 0.0, 1.0
    lo, hi = finite[0], finite[-1]
    if len(finite) >= 4:
        q1, _, q3 = statistics.quantiles(finite, n=4)
        fence = 1.5 * (q3 - q1)
        if not Mode(mode).higher_is_better:
            hi = max(v for v in finite if v <= q3 + fence)
        else:
            lo = min(v for v in finite if v >= q1 - fence)
    margin = 0.06 * (hi - lo) or 0.05 * abs(hi) or 0.05
    return lo - margin, hi + margin


def metric_vs_hyperparameters(
    points: Sequence[TrialPoint],
    keys: Sequence[str],
    metric: str,
    mode: str | Mode,
    log_keys: Sequence[str],
    path: str | Path,
) -> Path:
    """One panel per hyperparameter: each trial's best metric against its sampled value.

    Colour is the epochs a trial trained (a trial ASHA stopped after one epoch is not comparable
    with a 20-epoch one), the marker how it ended, a star the best trial. The y-axis shows the
    informative range; trials beyond it sit on the edge as hollow triangles pointing off the axis.
    """
    n = max(1, len(keys))
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.8 * cols, 3.6 * rows + 0.6), constrained_layout=True, squeeze=False
    )
    lo, hi = informative_range([p.metric for p in points], mode)
    epochs = sorted({p.epochs for p in points}) or [0]
    norm = Normalize(epochs[0], epochs[-1] if len(epochs) > 1 else epochs[0] + 1)
    cmap = plt.get_cmap("viridis")
    jitter = np.random.default_rng(0).uniform(-0.18, 0.18, len(points))  # categories: spread the overlap
    for ax, key in zip(axes.flat, keys, strict=False):
        raw = [p.values.get(key) for p in points]
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in raw)
        if numeric and (key in log_keys or len(set(raw)) > 6):
            xs = [float(x) for x in raw]
            if key in log_keys:
                ax.set_xscale("log")
        else:  # categories (a few numbers too): one column each, numbers in order, else as first seen
            ordered = sorted(set(raw)) if numeric else raw
            labels = list(dict.fromkeys(f"{x:g}" if numeric else str(x) for x in ordered))
            raw = [f"{x:g}" if numeric else x for x in raw]
            xs = [labels.index(str(x)) + j for x, j in zip(raw, jitter, strict=True)]
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
            ax.set_xlim(-0.5, len(labels) - 0.5)
        for marker in _ENDINGS:
            inside = [
                (x, p)
                for x, p in zip(xs, points, strict=True)
                if _MARKERS.get(p.status, "o") == marker and lo <= p.metric <= hi
            ]
            if inside:
                ax.scatter(
                    [x for x, _ in inside],
                    [p.metric for _, p in inside],
                    c=[p.epochs for _, p in inside],
                    cmap=cmap,
                    norm=norm,
                    marker=marker,
                    s=30,
                    alpha=0.85,
                    linewidths=0,
                )
        for x, p in zip(xs, points, strict=True):  # beyond the range (or not finite): on the edge
            if not lo <= p.metric <= hi:
                below = p.metric < lo
                ax.scatter(
                    x,
                    lo if below else hi,
                    marker="v" if below else "^",
                    s=36,
                    facecolors="none",
                    edgecolors=cmap(norm(p.epochs)),
                    clip_on=False,
                    zorder=3,
                )
        best = [(x, p) for x, p in zip(xs, points, strict=True) if p.best]
        if best:
            ax.scatter(
                [x for x, _ in best],
                [min(max(p.metric, lo), hi) for _, p in best],
                marker="*",
                s=220,
                facecolors="none",
                edgecolors="crimson",
                linewidths=1.6,
                zorder=4,
            )
        ax.set_ylim(lo, hi)
        ax.set_xlabel(key)
        ax.set_ylabel(f"best {metric}")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_visible(False)
    if len(epochs) > 1:
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, label="epochs trained", shrink=0.9)
        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()
    else:
        fig.suptitle(f"every trial trained {epochs[0]} epochs")
    clipped = sum(1 for p in points if not lo <= p.metric <= hi)
    endings = {_MARKERS.get(p.status, "o") for p in points}
    handles = [
        Line2D([], [], ls="", marker=m, color="grey", label=text)
        for m, text in _ENDINGS.items()
        if m in endings
    ]
    handles.append(Line2D([], [], ls="", marker="*", ms=12, mfc="none", mec="crimson", label="best trial"))
    if clipped:
        edge = "v" if Mode(mode).higher_is_better else "^"  # off the axis on the bad side
        handles.append(
            Line2D([], [], ls="", marker=edge, mfc="none", mec="grey", label=f"{clipped} beyond the axis")
        )
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8, frameon=False)
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
