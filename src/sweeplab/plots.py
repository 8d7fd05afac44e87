"""Figures for runs and sweeps (matplotlib, headless Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import MaxNLocator  # noqa: E402


def learning_curves(
    history: Sequence[dict[str, float]], path: str | Path, title: str = "", best_epoch: int | None = None
) -> Path:
    """Training vs validation loss and accuracy over epochs, as the course draws them."""
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, metric in zip(axes, ("loss", "acc"), strict=True):
        ax.plot(
            epochs, [h[f"train/{metric}"] for h in history], "o-", label=f"train/{metric}", color="tab:blue"
        )
        ax.plot(
            epochs, [h[f"val/{metric}"] for h in history], "s-", label=f"val/{metric}", color="tab:orange"
        )
        if best_epoch is not None:
            ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch ({best_epoch})")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("accuracy" if metric == "acc" else "loss")
        ax.set_title(f"Training and validation {'accuracy' if metric == 'acc' else 'loss'}")
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
    for label, history in curves.items():
        epochs = [h["epoch"] for h in history]
        for ax, key in zip(axes, ("val/loss", "val/acc"), strict=True):
            ax.plot(epochs, [h[key] for h in history], "o-", markersize=3, label=label)
    for ax, key in zip(axes, ("val/loss", "val/acc"), strict=True):
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


def metric_vs_hyperparameters(
    points: Sequence[tuple[dict, float]],
    keys: Sequence[str],
    metric: str,
    log_keys: Sequence[str],
    path: str | Path,
) -> Path:
    """One panel per hyperparameter: each trial's best metric against its sampled value."""
    n = max(1, len(keys))
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.5 * cols, 3.5 * rows), constrained_layout=True, squeeze=False
    )
    for ax, key in zip(axes.flat, keys, strict=False):
        xs = [p[0].get(key) for p in points]
        ys = [p[1] for p in points]
        if all(isinstance(x, (int, float)) for x in xs):
            ax.scatter(xs, ys, alpha=0.7)
            if key in log_keys:
                ax.set_xscale("log")
        else:  # categories: one column each, in order of first appearance
            labels = list(dict.fromkeys(str(x) for x in xs))
            ax.scatter([labels.index(str(x)) for x in xs], ys, alpha=0.7)
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_visible(False)
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
