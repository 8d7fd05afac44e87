"""batched: several trials of one architecture trained as one batched model, against the same
trials trained one after another, on the same thread (issue 7's "step beyond the peers").

Each of K models of one MLP architecture gets its own initial weights, its own shuffle of the
training set and its own optimizer state. Sequentially, each trains an epoch with its own
optimizer, as a trial does. Batched, their parameters are stacked (``torch.func.stack_module_state``)
and one ``vmap``-ed forward runs all K on a ``[K, batch, ...]`` tensor of their own batches; the
loss is the sum of the K models' mean losses, so each slice's gradient is its own model's, and one
Adam over the stacked tensors steps all K (Adam works elementwise, so this equals K Adams with the
same learning rate: a batched sweep with a learning rate per trial would need its own optimizer,
so this is the best case for batching). Both then run the validation pass.

The figure is the time per model-epoch, batched over sequential, for K in ``KS`` on one thread
(a trial's share of the default sweep's two slots), for the sweep's widths and batch sizes
without a regularizer (vmap would need its own randomness for dropout, and batch norm's running
statistics cannot be updated in place under it). Each goes first in turn, epoch by epoch, so
drift in the machine's speed falls on both.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state

from bench.loops import bare_epoch
from sweeplab.data import DataBundle
from sweeplab.models import MLP, glorot_init

KS = (2, 4, 8)
# (hidden, batch size): the default sweep's smallest, middle and largest networks at the batch
# sizes its space offers (conf/search/fashion_mlp.yaml)
SHAPES = (([128], 64), ([256, 128], 128), ([512, 256, 128], 64))
LR = 1e-3


def make_models(k: int, data: DataBundle, hidden: Sequence[int], seed: int = 0) -> list[MLP]:
    torch.manual_seed(seed)
    models = [MLP(data.input_shape, data.num_classes, hidden) for _ in range(k)]
    for m in models:
        glorot_init(m)
    return models


def batch_orders(k: int, n: int, seed: int = 0) -> list[torch.Tensor]:
    """Each model's own shuffle of the training set, the same in both ways of training."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randperm(n, generator=gen) for _ in range(k)]


def sequential(models: list[MLP], data: DataBundle, batch_size: int) -> Callable[[list[torch.Tensor]], None]:
    """One epoch of each model in turn, each with its own Adam: what K trials do on one slot."""
    opts = [torch.optim.Adam(m.parameters(), lr=LR) for m in models]

    def epoch(orders: list[torch.Tensor]) -> None:
        for model, opt, perm in zip(models, opts, orders, strict=True):
            bare_epoch(model, opt, data, batch_size, perm)

    return epoch


class Batched:
    """K models of one architecture as one: stacked parameters, a vmap-ed forward, one Adam.
    Called with the K models' batch orders, it trains all of them an epoch, then validates them."""

    def __init__(self, models: list[MLP], data: DataBundle, batch_size: int):
        self.k, self.data, self.batch_size = len(models), data, batch_size
        self.params, self.buffers = stack_module_state(models)  # new leaf tensors, K first
        base = copy.deepcopy(models[0]).to("meta")  # the structure only; weights come stacked

        def forward(params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
            return functional_call(base, (params, buffers), (x,))

        self.forward = torch.vmap(forward)  # x: [K, batch, ...], one batch per model
        self.forward_shared = torch.vmap(forward, in_dims=(0, 0, None))  # one x for all K
        self.opt = torch.optim.Adam(self.params.values(), lr=LR)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        out = self.forward(self.params, self.buffers, x)
        # the sum of the models' mean losses: each slice's gradient is its own model's
        loss = nn.functional.cross_entropy(out.flatten(0, 1), y.flatten()) * self.k
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def __call__(self, orders: list[torch.Tensor]) -> None:
        x, y, data = self.data.x_train, self.data.y_train, self.data
        perm = torch.stack(orders)  # [K, N]
        for i in range(0, perm.shape[1], self.batch_size):
            idx = perm[:, i : i + self.batch_size]
            self.step(x[idx], y[idx])
        with torch.no_grad():
            out = self.forward_shared(self.params, self.buffers, data.x_val)  # [K, N_val, classes]
            for k in range(self.k):
                _ = (
                    nn.functional.cross_entropy(out[k], data.y_val).item(),
                    (out[k].argmax(1) == data.y_val).float().mean().item(),
                )

    def model(self, i: int, like: nn.Module) -> nn.Module:
        """Model ``i`` as a plain module (what a trial would checkpoint)."""
        out = copy.deepcopy(like)
        out.load_state_dict({name: p[i].detach() for name, p in {**self.params, **self.buffers}.items()})
        return out


def bench_batched(
    data: DataBundle, ks: Sequence[int] = KS, shapes=SHAPES, epochs: int = 2, threads: int = 1
) -> list[dict]:
    """Seconds per model-epoch, sequential and batched, for each shape and K (medians)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return [_measure(data, k, hidden, batch_size, epochs) for hidden, batch_size in shapes for k in ks]
    finally:
        torch.set_num_threads(before)  # the benchmarks after this one run with their own threads


def _measure(data: DataBundle, k: int, hidden: Sequence[int], batch_size: int, epochs: int) -> dict:
    seq = sequential(make_models(k, data, hidden), data, batch_size)
    bat = Batched(make_models(k, data, hidden), data, batch_size)
    times: dict[str, list[float]] = {"sequential": [], "batched": []}
    for rep in range(epochs + 1):  # first a few steps of warm-up, not measured
        orders = batch_orders(k, len(data.x_train), seed=rep)
        if rep == 0:
            orders = [o[: 10 * batch_size] for o in orders]
        ways = [("sequential", seq), ("batched", bat)]
        for name, epoch in ways if rep % 2 else ways[::-1]:  # each goes first in turn
            t0 = time.perf_counter()
            epoch(orders)
            if rep:
                times[name].append((time.perf_counter() - t0) / k)
    s, b = statistics.median(times["sequential"]), statistics.median(times["batched"])
    return {"hidden": list(hidden), "batch_size": batch_size, "k": k, "sequential_s": s, "batched_s": b}
