"""scikit-learn's digits and bring-your-own .npz arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sweeplab.data import DataError, load_data


def digits_cfg(**overrides) -> dict:
    return {
        "_target_": "sweeplab.data.digits.load",
        "name": "digits",
        "root": None,
        "val_size": 0.2,
        "split_seed": 0,
        "scale": "unit",
        **overrides,
    }


def npz_cfg(path, **overrides) -> dict:
    return {
        "_target_": "sweeplab.data.npz.load",
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


# ------------------------------------------------------------------ data no classifier can learn from


def signals(n: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    return rng.normal(size=(n, 8)) + y[:, None], y


@pytest.mark.parametrize(
    ("value", "what"), [(np.nan, "1 NaN and 0 infinite"), (np.inf, "0 NaN and 1 infinite")]
)
def test_npz_nan_or_infinite_features_are_refused(tmp_path, value, what):
    x, y = signals()
    x[7, 3] = value
    path = tmp_path / "holes.npz"
    np.savez(path, x_train=x, y_train=y)
    with pytest.raises(DataError) as err:
        load_data(npz_cfg(path, scale="none"))
    message = str(err.value)
    assert str(path) in message and "x_train" in message and what in message and "sample 7" in message


def test_npz_a_single_class_is_refused(tmp_path):
    x, _ = signals()
    path = tmp_path / "one.npz"
    np.savez(path, x_train=x, y_train=np.full(len(x), 4))
    with pytest.raises(DataError, match="every training label is 4") as err:
        load_data(npz_cfg(path, scale="none"))
    assert "at least two classes" in str(err.value)


def test_npz_labels_far_beyond_the_classes_are_refused(tmp_path):
    x, y = signals()
    y[0] = 1_000_000
    path = tmp_path / "ids.npz"
    np.savez(path, x_train=x, y_train=y)
    with pytest.raises(DataError) as err:
        load_data(npz_cfg(path, scale="none"))
    message = str(err.value)
    assert "4 distinct labels reach 1000000" in message and "0..K-1" in message
    # A gap is fine: labels 0, 1, 3 build a 4-class model with one class unused.
    np.savez(path, x_train=x, y_train=np.where(y == 2, 3, y % 1_000_000))
    assert load_data(npz_cfg(path, scale="none")).num_classes == 4


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x_train": np.zeros((0, 4)), "y_train": np.zeros(0, int)}, "x_train has no samples"),
        (
            {
                "x_train": signals()[0],
                "y_train": signals()[1],
                "x_test": np.zeros((0, 8)),
                "y_test": np.zeros(0, int),
            },
            "x_test has no samples",
        ),
    ],
)
def test_npz_empty_arrays_name_the_array_not_a_setting(tmp_path, arrays, message):
    path = tmp_path / "empty.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message) as err:
        load_data(npz_cfg(path))
    assert "test_size" not in str(err.value) and "val_size" not in str(err.value)


def test_every_source_gets_the_checks():
    """The checks live where every loader builds its DataBundle, not in one loader."""
    from sweeplab.data import DataBundle

    x = torch.randn(10, 3)
    y = torch.arange(10) % 2
    common = dict(num_classes=2, kind="vector", class_names=["a", "b"], fingerprint="f")
    DataBundle(x, y, x, y, x, y, **common)  # sane data builds
    holes = x.clone()
    holes[2, 1] = float("nan")
    with pytest.raises(DataError, match="x_val has 1 NaN"):
        DataBundle(x, y, holes, y, x, y, **common)
    with pytest.raises(DataError, match="the test split has no samples"):
        DataBundle(x, y, x, y, x[:0], y[:0], **common)
    with pytest.raises(DataError, match="outside 0..1"):
        DataBundle(x, y, x, y, x, y + 1, **common)


def test_npz_scale_unit_refuses_data_with_negative_values(tmp_path):
    x, y = signals()
    x = (x - x.mean(0)) / x.std(0)  # already standardized
    path = tmp_path / "standardized.npz"
    np.savez(path, x_train=x, y_train=y)
    with pytest.raises(DataError) as err:
        load_data(npz_cfg(path, scale="unit"))
    message = str(err.value)
    assert (
        "negative values" in message and "data.scale=none" in message and "data.scale=standardize" in message
    )
    kept = load_data(npz_cfg(path, scale="none"))
    assert torch.allclose(torch.cat([kept.x_train, kept.x_val, kept.x_test]).std(0), torch.ones(8), atol=0.5)
    assert float(kept.x_train.abs().max()) > 1  # not divided by its maximum
    # Non-negative data (pixels, counts) is what "unit" is for: divided by the training maximum.
    counts = np.abs(x) * 50
    np.savez(path, x_train=counts, y_train=y)
    assert float(load_data(npz_cfg(path, scale="unit")).x_train.max()) == 1.0
