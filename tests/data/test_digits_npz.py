"""scikit-learn's digits and bring-your-own .npz arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sweeplab.data import DataError, load_data


def digits_cfg(**overrides) -> dict:
    return {"name": "digits", "root": None, "val_size": 0.2, "split_seed": 0, "scale": "unit", **overrides}


def npz_cfg(path, **overrides) -> dict:
    return {
        "name": "npz",
        "root": None,
        "path": str(path) if path else None,
        "val_size": 0.2,
        "test_size": 0.25,
        "split_seed": 0,
        "scale": "unit",
        **overrides,
    }


# -------------------------------------------------------------------------------------------- digits


def test_digits_shapes_and_splits():
    b = load_data(digits_cfg())
    # 1797 images: 20 % (359) held out for test first, then 20 % of the rest (288) for validation.
    assert (len(b.x_train), len(b.x_val), len(b.x_test)) == (1150, 288, 359)
    assert b.x_train.shape[1:] == (1, 8, 8) and b.x_train.dtype == torch.float32
    assert b.y_train.dtype == torch.int64
    assert float(b.x_train.min()) == 0.0 and float(b.x_train.max()) == 1.0
    assert b.kind == "image" and b.num_classes == 10 and b.class_names == [str(i) for i in range(10)]
    assert set(b.y_test.tolist()) == set(range(10))


def test_digits_test_set_does_not_depend_on_val_size():
    small, large = load_data(digits_cfg(val_size=0.1)), load_data(digits_cfg(val_size=300))
    assert torch.equal(small.x_test, large.x_test) and len(large.x_val) == 300
    assert small.fingerprint != large.fingerprint
    seeded = load_data(digits_cfg(split_seed=1))
    assert not torch.equal(seeded.y_test, small.y_test)  # split_seed also picks the test split


def test_digits_with_the_real_config(make_cfg):
    b = load_data(make_cfg("data=digits")["data"])
    assert len(b.x_train) + len(b.x_val) + len(b.x_test) == 1797 and float(b.x_train.max()) == 1.0


# ----------------------------------------------------------------------------------------------- npz


def three_classes(n: int, rng: np.random.Generator, shape=(4,)) -> tuple[np.ndarray, np.ndarray]:
    y = np.arange(n) % 3
    x = rng.normal(size=(n, *shape)) * 10 + 50 + y.reshape(-1, *[1] * len(shape)) * 100
    return x, y


def test_npz_with_test_arrays(tmp_path):
    rng = np.random.default_rng(0)
    x_train, y_train = three_classes(40, rng)
    x_test, y_test = three_classes(9, rng)
    path = tmp_path / "mine.npz"
    np.savez(
        path,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        class_names=np.array(["low", "mid", "high"]),
    )
    b = load_data(npz_cfg(path))
    assert (len(b.x_train), len(b.x_val), len(b.x_test)) == (32, 8, 9)
    assert b.kind == "vector" and b.input_shape == (4,) and b.x_train.dtype == torch.float32
    assert b.num_classes == 3 and b.class_names == ["low", "mid", "high"]
    assert torch.equal(b.y_test, torch.from_numpy(y_test))  # the file's test set, untouched
    # "unit" divides every split by one number, the maximum of the training split.
    assert float(b.x_train.max()) == 1.0
    factor = float(x_test[0, 0]) / float(b.x_test[0, 0])
    assert factor <= x_train.max() and torch.allclose(b.x_test * factor, torch.from_numpy(x_test).float())


def test_npz_without_test_arrays_holds_out_test_size(tmp_path):
    x, y = three_classes(40, np.random.default_rng(1), shape=(5, 6))
    path = tmp_path / "images.npz"
    np.savez(path, x_train=np.clip(x, 0, 255).astype(np.uint8), y_train=y.astype(np.int32))
    b = load_data(npz_cfg(path, scale="standardize"))
    assert (len(b.x_train), len(b.x_val), len(b.x_test)) == (24, 6, 10)
    assert b.kind == "image" and b.x_train.shape[1:] == (1, 5, 6)  # (N, H, W) gets a channel
    assert b.num_classes == 3 and b.class_names == ["0", "1", "2"]
    assert abs(float(b.x_train.mean())) < 1e-5  # standardized with training statistics
    again, other = load_data(npz_cfg(path, scale="standardize")), load_data(npz_cfg(path, test_size=5))
    assert torch.equal(again.x_test, b.x_test) and len(other.x_test) == 5
    assert again.fingerprint == b.fingerprint != other.fingerprint


def test_npz_path_required():
    with pytest.raises(DataError, match=r"data\.path=/path/to/file\.npz"):
        load_data(npz_cfg(None))


def test_npz_missing_key_names_key_and_file(tmp_path):
    path = tmp_path / "incomplete.npz"
    np.savez(path, x_train=np.zeros((4, 2)))
    with pytest.raises(DataError, match="y_train") as err:
        load_data(npz_cfg(path))
    assert str(path) in str(err.value)


def test_npz_negative_labels(tmp_path):
    path = tmp_path / "negative.npz"
    np.savez(path, x_train=np.zeros((10, 2)), y_train=np.array([0, 1, -1, 0, 1, 0, 1, 0, 1, 0]))
    with pytest.raises(DataError, match="integer class labels >= 0") as err:
        load_data(npz_cfg(path))
    assert "-1" in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x_train": np.zeros((10, 2)), "y_train": np.zeros(9, int)}, "one label per sample"),
        ({"x_train": np.zeros((10, 2)), "y_train": np.zeros(10)}, "integer class labels"),
        ({"x_train": np.zeros((10, 2)), "y_train": np.zeros(10, int), "x_test": np.zeros((3, 2))}, "y_test"),
        (
            {
                "x_train": np.zeros((10, 2)),
                "y_train": np.zeros(10, int),
                "x_test": np.zeros((3, 5)),
                "y_test": np.zeros(3, int),
            },
            "x_test samples have shape",
        ),
        ({"x_train": np.zeros(10), "y_train": np.zeros(10, int)}, "expected numbers shaped"),
        (
            {"x_train": np.zeros((10, 2)), "y_train": np.arange(10) % 4, "class_names": np.array(["a", "b"])},
            "class_names has 2 entries",
        ),
    ],
)
def test_npz_inconsistent_arrays(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message):
        load_data(npz_cfg(path))


def test_npz_not_an_npz_file(tmp_path):
    path = tmp_path / "single.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(DataError, match="single array"):
        load_data(npz_cfg(path))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_data(npz_cfg(tmp_path / "junk.npz"))
    with pytest.raises(DataError, match="does not exist"):
        load_data(npz_cfg(tmp_path / "absent.npz"))
