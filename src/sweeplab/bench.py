"""``make bench``: sweeplab's overheads measured side by side, printed as ratios.

loop: the course network (784 -> 128 relu -> 10, RMSprop, batch 128) on the real
Fashion-MNIST, one epoch at a time, alternating sweeplab's :class:`Trainer` with a
bare PyTorch loop that does the same work by hand (shuffled mini-batches, then a
validation pass). Same data tensors, batch size, threads and epochs; the ratio of
median epoch times is sweeplab's cost. Alternating epochs spreads any drift in
the machine's speed evenly over both.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from sweeplab.config import compose, to_container
from sweeplab.data import DataBundle, load_data
from sweeplab.models import MLP, glorot_init
from sweeplab.training import Trainer

LOOP_BUDGET = 1.15  # sweeplab's epoch may cost at most this many bare-loop epochs

console = Console(highlight=False, soft_wrap=True)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def bare_epoch_fn(data: DataBundle, batch_size: int, seed: int) -> Callable[[], float]:
    """What a user writes by hand: the same network, optimizer, batches and validation pass."""
    torch.manual_seed(seed)
    model = MLP(data.input_shape, data.num_classes, [128])
    glorot_init(model)
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    x, y, xv, yv = data.x_train, data.y_train, data.x_val, data.y_val

    def epoch() -> float:
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = perm[i : i + batch_size]
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            out = model(xv)
            _ = loss_fn(out, yv).item(), (out.argmax(1) == yv).float().mean().item()
        return time.perf_counter() - t0

    return epoch


def bench_loop(epochs: int, threads: int) -> tuple[float, float]:
    torch.set_num_threads(threads)
    cfg = to_container(
        compose(
            [
                "experiment=course_fashion_mnist",
                "tracking.enabled=false",
                f"trainer.num_threads={threads}",
                f"trainer.epochs={epochs}",
                "trainer.early_stopping.enabled=false",
            ]
        )
    )
    data = load_data(cfg["data"])
    trainer = Trainer(cfg, data)
    bare = bare_epoch_fn(data, cfg["trainer"]["batch_size"], cfg["seed"])
    bare()  # warm-up both: first-call allocations are not what we measure
    trainer.train_epoch()
    trainer.evaluate("val")
    ours, theirs = [], []
    for _ in range(epochs):
        t0 = time.perf_counter()
        trainer.train_epoch()
        trainer.evaluate("val")
        ours.append(time.perf_counter() - t0)
        theirs.append(bare())
    return statistics.median(ours), statistics.median(theirs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sweeplab.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--epochs", type=int, default=5, help="measured epochs per loop (default 5)")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)

    console.print(f"[bold]machine[/] {machine()}")
    ours, bare = bench_loop(args.epochs, args.threads)
    ratio = ours / bare
    table = Table(title="training loop: sweeplab vs bare PyTorch (course network, Fashion-MNIST)")
    for col in ("measure", "sweeplab", "bare loop", "ratio", "budget", "verdict"):
        table.add_column(col)
    ok = ratio <= LOOP_BUDGET
    table.add_row(
        "median epoch, s",
        f"{ours:.3f}",
        f"{bare:.3f}",
        f"{ratio:.3f}x",
        f"<= {LOOP_BUDGET}x",
        "[green]ok[/]" if ok else "[red]over budget[/]",
    )
    console.print(table)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
