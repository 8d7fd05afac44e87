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
