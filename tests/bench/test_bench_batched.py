"""The batched-trials benchmark compares like with like: batched training is the same K trainings."""

import torch

from bench.batched import Batched, batch_orders, make_models, sequential
from sweeplab.data import DataBundle


def small_bundle(n: int = 96, seed: int = 0) -> DataBundle:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n + 32, 1, 4, 4, generator=gen)
    y = torch.randint(0, 3, (n + 32,), generator=gen)
    return DataBundle(
        x[:n], y[:n], x[n:], y[n:], x[n:], y[n:],
        num_classes=3, kind="image", class_names=["a", "b", "c"], fingerprint="t",
    )  # fmt: skip


def test_a_batched_epoch_trains_each_model_as_its_own_epoch_would():
    data = small_bundle()
    orders = batch_orders(3, len(data.x_train))
    seq_models = make_models(3, data, [8, 5])
    start = [p.clone() for p in seq_models[1].parameters()]
    seq, bat = sequential(seq_models, data, 16), Batched(make_models(3, data, [8, 5]), data, 16)
    for _ in range(2):
        seq(orders)
        bat(orders)
    for i, model in enumerate(seq_models):
        for name, p in model.named_parameters():
            torch.testing.assert_close(bat.params[name][i], p, rtol=1e-4, atol=1e-5)
    # training moved the weights: the comparison above is not between two untouched copies
    assert all(not torch.equal(a, b) for a, b in zip(start, seq_models[1].parameters(), strict=True))


def test_one_batched_model_comes_back_as_a_plain_module():
    data = small_bundle()
    orders = batch_orders(2, len(data.x_train))
    alone = make_models(2, data, [8])
    sequential(alone, data, 16)(orders)
    net = Batched(make_models(2, data, [8]), data, 16)
    net(orders)
    like = make_models(1, data, [8], seed=1)[0]  # the structure only: its own weights must not survive
    for i, m in enumerate(alone):
        torch.testing.assert_close(net.model(i, like)(data.x_val), m(data.x_val), rtol=1e-4, atol=1e-5)
