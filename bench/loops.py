"""sweeplab's epoch against a bare PyTorch loop that does the same work by hand.

loop: the course network (784 -> 128 relu -> 10, RMSprop, batch 128) on the real
Fashion-MNIST, one epoch at a time, alternating sweeplab's :class:`Trainer` with the bare
loop (shuffled mini-batches, then a validation pass). Same data tensors, batch size,
threads and epochs; the ratio of median epoch times is sweeplab's cost. Alternating
epochs spreads any drift in the machine's speed evenly over both.

loop-in-sweep: the same network as two trials of a sweep side by side, one thread each,
against two bare loops side by side in processes of their own (spawned: this module is
what they import), measured before and after the sweep.
"""

from __future__ import annotations

import itertools
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import torch
from torch import nn

from bench.sweeps import run_sweep_timed
from sweeplab.config import compose, to_container
from sweeplab.data import DataBundle, load_data
from sweeplab.models import MLP, glorot_init
from sweeplab.training import Trainer


def bare_epoch_fn(data: DataBundle, batch_size: int, seed: int) -> Callable[[], float]:
    """What a user writes by hand: the same network, optimizer, batches and validation pass."""
    torch.manual_seed(seed)
    model = MLP(data.input_shape, data.num_classes, [128])
    glorot_init(model)
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    gen = torch.Generator().manual_seed(seed)

    def epoch() -> float:
        t0 = time.perf_counter()
        bare_epoch(model, opt, data, batch_size, torch.randperm(len(data.x_train), generator=gen))
        return time.perf_counter() - t0

    return epoch


def bare_epoch(model: nn.Module, opt: torch.optim.Optimizer, data: DataBundle, batch_size: int, perm) -> None:
    """One epoch by hand: mini-batches in the order ``perm``, then the validation pass."""
    loss_fn = nn.CrossEntropyLoss()
    x, y = data.x_train, data.y_train
    model.train()
    for i in range(0, len(perm), batch_size):
        idx = perm[i : i + batch_size]
        loss = loss_fn(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        out = model(data.x_val)
        _ = loss_fn(out, data.y_val).item(), (out.argmax(1) == data.y_val).float().mean().item()


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


def _bare_epochs(threads: int, epochs: int, seed: int) -> list[float]:
    """A bare loop in a process of its own, as a trial has one, after a warm-up epoch."""
    torch.set_num_threads(threads)
    cfg = to_container(compose(["experiment=course_fashion_mnist"]))
    epoch = bare_epoch_fn(load_data(cfg["data"]), cfg["trainer"]["batch_size"], seed)
    epoch()
    return [epoch() for _ in range(epochs)]


def bare_side_by_side(processes: int, epochs: int) -> list[float]:
    """Epoch times of ``processes`` bare loops running at once, one thread each."""
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        runs = pool.map(_bare_epochs, [1] * processes, [epochs] * processes, range(processes))
        return [t for run in runs for t in run]


def bench_loop_in_sweep(epochs: int = 8) -> tuple[float, float]:
    """A trial's epoch inside a sweep against a bare loop, with the same threads and batch size.

    The sweep: two trials of the course network side by side, one thread each, every epoch
    reported and checkpointed where a sweep checkpoints; an epoch is the time between two of a
    trial's results as the driver recorded them, so reports, checkpoints and the driver's work
    count. The bare loops: two processes side by side, one thread each, measured before and
    after the sweep, so drift in the machine's speed falls on both. Medians of both."""
    from sweeplab.metrics import VAL_ACC
    from sweeplab.tracking.reader import SWEEP_TAGS, open_reader

    bare = bare_side_by_side(2, epochs)
    with tempfile.TemporaryDirectory() as store:
        summary, _ = run_sweep_timed(
            [
                "experiment=course_fashion_mnist",
                "search=none",
                '+search.space.trainer.batch_size="choice[128]"',  # the course's: one configuration
                "tune=fifo",
                "tune.num_samples=2",
                "tune.max_concurrent_trials=2",
                "tune.register_model=false",
                "trainer.num_threads=1",
                f"trainer.epochs={epochs + 1}",  # the first epoch includes the trial's set-up
                "trainer.early_stopping.enabled=false",
            ],
            store,
        )
        reader = open_reader({"uri": f"sqlite:///{store}/bench.db"})
        ours: list[float] = []
        [parent] = [r for r in reader.runs_tagged(SWEEP_TAGS) if r.run_id == summary.parent_run_id]
        kids = reader.children(parent)
        for history in reader.histories([k.run_id for k in kids], [VAL_ACC]).values():
            stamps = [p.timestamp_ms for p in history.get(VAL_ACC, [])]
            ours += [(b - a) / 1000 for a, b in itertools.pairwise(stamps)]
    bare += bare_side_by_side(2, epochs)
    return statistics.median(ours), statistics.median(bare)
