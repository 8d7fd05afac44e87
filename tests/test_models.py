"""Model shapes, parameter counts, initialization, the summary, pretrained vectors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

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
        CNN((784,), 10)


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
