"""Model shapes, parameter counts, initialization, the summary, pretrained vectors."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import blobs
from torch import nn

from sweeplab.build import build_model
from sweeplab.data import DataBundle
from sweeplab.models import (
    CNN,
    MLP,
    EmbeddingBagClassifier,
    WithProbabilities,
    glorot_init,
    load_word_vectors,
)
from sweeplab.summary import count_parameters, model_summary


def test_course_network_has_101770_parameters():
    model = MLP((1, 28, 28), num_classes=10, hidden=[128])
    assert count_parameters(model) == (101_770, 101_770)
    text = model_summary(model, (1, 28, 28), "image")
    for fragment in (
        "[1, 128]",
        "100,480",
        "[1, 10]",
        "1,290",
        "Total params: 101,770",
        "Trainable params: 101,770",
        "Non-trainable params: 0",
    ):
        assert fragment in text


def test_two_classes_get_one_sigmoid_unit_and_probabilities_sum_to_one():
    model = MLP((10000,), num_classes=2, hidden=[16, 16])
    assert model(torch.zeros(3, 10000)).shape == (3, 1)
    assert count_parameters(model)[0] == 10000 * 16 + 16 + 16 * 16 + 16 + 17  # the course's IMDB network
    probs = WithProbabilities(model, 2)(torch.rand(5, 10000))
    assert probs.shape == (5, 2) and torch.allclose(probs.sum(1), torch.ones(5))
    multi = WithProbabilities(MLP((4,), 5, [8]), 5)(torch.rand(3, 4))
    assert torch.allclose(multi.sum(1), torch.ones(3))


def test_dropout_is_off_in_eval_and_on_in_train():
    model = MLP((50,), 3, hidden=[64, 64], dropout=0.5)
    x = torch.rand(8, 50)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    torch.manual_seed(0)
    assert not torch.equal(model(x), model(x))
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 2


def test_batch_norm_layers_follow_each_hidden_layer():
    model = MLP((20,), 3, hidden=[16, 8], batch_norm=True, activation="tanh")
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Flatten", "Linear", "BatchNorm1d", "Tanh", "Linear", "BatchNorm1d", "Tanh", "Linear"]


def test_glorot_uniform_weights_and_zero_biases():
    torch.manual_seed(0)
    model = MLP((784,), 10, hidden=[128])
    glorot_init(model)
    first = model[1]
    bound = math.sqrt(6 / (784 + 128))
    assert first.weight.abs().max() <= bound and first.weight.abs().max() > 0.9 * bound
    assert torch.count_nonzero(first.bias) == 0


def test_cnn_shapes_for_fashion_and_digits():
    assert CNN((1, 28, 28), 10)(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert CNN((1, 8, 8), 10, channels=[8, 16, 16, 16])(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(ValueError, match="model=mlp"):
        CNN((2, 3, 4, 5), 10)


def test_cnn_takes_1d_signals_with_conv1d():
    model = CNN((40,), 3, channels=[8, 16])  # an npz's (N, 40) array: one channel of 40 samples
    assert model(torch.rand(5, 40)).shape == (5, 3)
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))]
    assert [type(m) for m in convs] == [nn.Conv1d, nn.Conv1d] and convs[0].in_channels == 1
    assert CNN((2, 40), 3)(torch.rand(5, 2, 40)).shape == (5, 3)  # (channels, length)
    with_bn = CNN((40,), 2, batch_norm=True)
    assert any(isinstance(m, nn.BatchNorm1d) for m in with_bn.features)


def test_cnn_learns_a_pattern_in_signals(tmp_path, make_cfg):
    """Bring-your-own sequences get a convolutional baseline: a pulse shape anywhere in the signal."""
    import numpy as np

    from sweeplab.data import load_data
    from sweeplab.training import Trainer

    rng = np.random.default_rng(0)
    n, length = 600, 40
    y = np.arange(n) % 3
    shapes = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [-1, -1, 1, 1]], dtype=np.float32) * 2
    x = rng.normal(scale=0.3, size=(n, length)).astype(np.float32)
    for i, start in enumerate(rng.integers(0, length - 4, n)):
        x[i, start : start + 4] += shapes[y[i]]
    np.savez(tmp_path / "signals.npz", x_train=x, y_train=y)
    cfg = make_cfg(
        "data=npz",
        f"data.path={tmp_path / 'signals.npz'}",
        "data.scale=none",
        "model=cnn",
        "model.channels=[16]",
        "model.kernel_size=5",
        "model.hidden=[32]",
        "optimizer=adam",
        "trainer.epochs=8",
        "trainer.batch_size=32",
    )
    data = load_data(cfg["data"])
    assert data.input_shape == (40,) and data.kind == "vector"
    trainer = Trainer(cfg, data)
    assert isinstance(trainer.model.features[0], nn.Conv1d)
    assert trainer.fit().best["val/acc"] > 0.9


def test_cnn_refuses_token_ids(make_cfg):
    cfg = make_cfg("model=cnn")
    flat = blobs(n=30)
    ids = [torch.randint(1, 50, (len(y), 12)) for y in (flat.y_train, flat.y_val, flat.y_test)]
    tokens = DataBundle(
        ids[0],
        flat.y_train,
        ids[1],
        flat.y_val,
        ids[2],
        flat.y_test,
        num_classes=3,
        kind="tokens",
        class_names=flat.class_names,
        fingerprint="t",
        num_embeddings=50,
    )
    with pytest.raises(ValueError, match="model=embedding_bag"):
        build_model(cfg["model"], cfg["regularizer"], tokens)


def test_summary_leaves_the_model_on_its_device():
    """torchinfo moves a model to the device it is given; the summary must not take a GPU model off its GPU.

    No GPU here: "meta" is a device other than the CPU that torch runs the same code paths for."""
    with torch.device("meta"):
        model = MLP((1, 28, 28), num_classes=10, hidden=[128])
    text = model_summary(model, (1, 28, 28), "image")
    assert "Total params: 101,770" in text
    assert {p.device.type for p in model.parameters()} == {"meta"}
    cpu_model = MLP((4,), 3, [8]).train()
    model_summary(cpu_model, (4,), "vector")
    assert cpu_model.training  # and in the mode it was in


def test_embedding_bag_ignores_padding_and_averages():
    model = EmbeddingBagClassifier(10, 3, embedding_dim=4)
    a = torch.tensor([[2, 3, 0, 0]])
    b = torch.tensor([[2, 3, 0, 0, 0, 0, 0]])
    assert torch.allclose(model(a), model(b))  # padding does not change the average


def test_pretrained_vectors_from_glove_and_word2vec_text(tmp_path):
    vocab = ["<pad>", "<unk>", "good", "bad", "missing"]
    glove = tmp_path / "glove.txt"
    glove.write_text("good 1 2 3\nbad -1 -2 -3\nother 9 9 9\n")
    matrix, found = load_word_vectors(glove, vocab, 3)
    assert found == 2
    assert matrix[2].tolist() == [1, 2, 3] and matrix[3].tolist() == [-1, -2, -3]
    assert matrix[0].abs().sum() == 0
    w2v = tmp_path / "w2v.txt"
    w2v.write_text("2 3\ngood 1 2 3\nbad -1 -2 -3\n")
    assert load_word_vectors(w2v, vocab, 3)[1] == 2
    with pytest.raises(ValueError, match="model.embedding_dim=3"):
        load_word_vectors(glove, vocab, 5)
    model = EmbeddingBagClassifier(5, 2, 3, pretrained=matrix, freeze_pretrained=True)
    assert torch.equal(model.embedding.weight[2].detach(), torch.tensor([1.0, 2.0, 3.0]))
    assert not model.embedding.weight.requires_grad
