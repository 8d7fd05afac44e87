"""IDX files and the Fashion-MNIST loader, on small generated files (and the real set where installed)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from sweeplab.data import DataError, fashion_mnist, load_data
from sweeplab.data.idx import read_idx, write_idx

REAL_DIR = Path("/usr/share/datasets/fashion-mnist")


def make_fashion_dir(directory: Path, n_train: int = 50, n_test: int = 20, gz: bool = True) -> Path:
    """Four IDX files whose pixels encode the label (label * 20 + noise), so shuffles can be checked."""
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = (labels[:, None, None] * 20 + rng.integers(0, 20, (n, 28, 28))).astype(np.uint8)
        suffix = ".gz" if gz else ""
        write_idx(directory / f"{split}-images-idx3-ubyte{suffix}", images, gzip=gz)
        write_idx(directory / f"{split}-labels-idx1-ubyte{suffix}", labels, gzip=gz)
    return directory


def cfg(root: Path | str | None, **overrides) -> dict:
    return {
        "_target_": "sweeplab.data.fashion_mnist.load",
        "name": "fashion_mnist",
        "root": str(root) if root else None,
        "download": False,
        "val_size": 10,
        "split_seed": 0,
        "scale": "unit",
        **overrides,
    }


@pytest.fixture
def no_system_data(tmp_path, monkeypatch):
    """Hide the Debian package, $SWEEPLAB_DATA_DIR and the user's cache from the loader."""
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SWEEPLAB_DATA_DIR", raising=False)


# ---------------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, gz, dtype):
    rng = np.random.default_rng(1)
    images = (rng.random((7, 28, 28)) * 100).astype(dtype)
    labels = np.arange(7, dtype=dtype)
    write_idx(tmp_path / "images", images, gzip=gz)
    write_idx(tmp_path / "labels", labels, gzip=gz)

    for name, array in (("images", images), ("labels", labels)):
        back = read_idx(tmp_path / name)
        assert back.dtype == np.dtype(dtype) and back.shape == array.shape
        np.testing.assert_array_equal(back, array)
        back[0] = 0  # callers get their own writable array


def test_idx_gzip_is_detected_by_content_not_name(tmp_path):
    images = np.full((2, 3, 3), 7, np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte", images, gzip=True)  # gzipped, no .gz suffix
    assert (tmp_path / "train-images-idx3-ubyte").read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(tmp_path / "train-images-idx3-ubyte"), images)


def test_idx_big_endian_header_and_values(tmp_path):
    path = write_idx(tmp_path / "x.idx", np.array([[1, 256]], np.int16))
    assert path.read_bytes() == bytes([0, 0, 0x0B, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 1, 1, 0])


def test_idx_truncated_payload_names_file_and_sizes(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((10, 28, 28), np.uint8), gzip=True)
    content = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(content[:1000]))
    with pytest.raises(DataError, match="truncated") as err:
        read_idx(path)
    assert str(path) in str(err.value) and "7840" in str(err.value) and "984" in str(err.value)


def test_idx_bad_magic(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(b"PK\x03\x04 not an idx file")
    with pytest.raises(DataError, match="bad magic") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_idx_truncated_gzip_stream(tmp_path):
    noise = np.random.default_rng(2).integers(0, 256, (20, 28, 28), dtype=np.uint8)  # incompressible
    path = write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", noise, gzip=True)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError) as err:
        read_idx(path)
    assert str(path) in str(err.value) and "gzip" in str(err.value)


def test_idx_trailing_bytes_are_an_error(tmp_path):
    path = write_idx(tmp_path / "x", np.zeros(4, np.uint8))
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(DataError, match="too long"):
        read_idx(path)


# ------------------------------------------------------------------------------------ Fashion-MNIST


def test_load_from_root(tmp_path, no_system_data):
    root = make_fashion_dir(tmp_path / "fm")
    b = load_data(cfg(root))
    assert (len(b.x_train), len(b.x_val), len(b.x_test)) == (40, 10, 20)
    assert b.x_train.shape[1:] == (1, 28, 28) and b.input_shape == (1, 28, 28)
    assert b.x_train.dtype == torch.float32 and b.y_train.dtype == torch.int64
    assert float(b.x_train.min()) >= 0.0 and float(b.x_train.max()) <= 1.0
    assert b.kind == "image" and b.num_classes == 10 and b.class_names[0] == "T-shirt/top"
    assert b.class_names[9] == "Ankle boot"
    # Pixels encode the label, so images and labels stayed paired through the shuffle.
    for x, y in ((b.x_train, b.y_train), (b.x_val, b.y_val), (b.x_test, b.y_test)):
        assert torch.equal((x.amax(dim=(1, 2, 3)) * 255).round().long() // 20, y)
    # The test set is the t10k files, in file order and untouched by the split.
    expected = torch.from_numpy(read_idx(root / "t10k-images-idx3-ubyte.gz")).unsqueeze(1).float() / 255
    assert torch.equal(b.x_test, expected) and b.y_test.tolist() == [i % 10 for i in range(20)]


def test_split_is_seeded(tmp_path, no_system_data):
    root = make_fashion_dir(tmp_path / "fm")
    a, again, other = (load_data(cfg(root, split_seed=s)) for s in (0, 0, 1))
    assert torch.equal(a.x_val, again.x_val) and a.fingerprint == again.fingerprint
    assert not torch.equal(a.x_val, other.x_val) and a.fingerprint != other.fingerprint
    assert torch.equal(a.x_test, other.x_test)
    fraction = load_data(cfg(root, val_size=0.2))
    assert (len(fraction.x_train), len(fraction.x_val)) == (40, 10)


def test_scale_modes(tmp_path, no_system_data):
    root = make_fashion_dir(tmp_path / "fm")
    raw = load_data(cfg(root, scale="none"))
    assert float(raw.x_train.max()) > 1 and torch.equal(raw.x_train, raw.x_train.round())
    std = load_data(cfg(root, scale="standardize"))
    assert abs(float(std.x_train.mean())) < 1e-5 and abs(float(std.x_train.std()) - 1) < 1e-3
    # Statistics come from the training split only, so validation is merely close to standard.
    mean, sd = raw.x_train.mean(), raw.x_train.std()
    assert torch.allclose(std.x_val, (raw.x_val - mean) / sd, atol=1e-5)


def test_raw_files_and_data_dir_subfolder(tmp_path, no_system_data, monkeypatch):
    make_fashion_dir(tmp_path / "shared" / "fashion-mnist", gz=False)
    monkeypatch.setenv("SWEEPLAB_DATA_DIR", str(tmp_path / "shared"))
    b = load_data(cfg(None))
    assert len(b.x_test) == 20 and b.extra["dir"] == str(tmp_path / "shared" / "fashion-mnist")


def test_debian_dir_then_cache_are_searched(tmp_path, no_system_data):
    make_fashion_dir(tmp_path / "cache" / "sweeplab" / "fashion-mnist", n_test=30)
    assert len(load_data(cfg(None)).x_test) == 30
    make_fashion_dir(tmp_path / "debian", n_test=25)  # the Debian package wins over the cache
    assert len(load_data(cfg(None)).x_test) == 25


def test_missing_everywhere_lists_paths_and_remedies(tmp_path, no_system_data, monkeypatch):
    monkeypatch.setenv("SWEEPLAB_DATA_DIR", str(tmp_path / "shared"))
    empty = tmp_path / "mine"
    empty.mkdir()
    interrupted = make_fashion_dir(tmp_path / "cache" / "sweeplab" / "fashion-mnist")
    (interrupted / "t10k-labels-idx1-ubyte.gz").unlink()  # three of four files do not count
    with pytest.raises(DataError) as err:
        load_data(cfg(empty))
    message = str(err.value)
    for d in fashion_mnist.search_dirs(empty):
        assert str(d) in message
    assert str(tmp_path / "debian") in message
    assert f"{interrupted} (missing t10k-labels-idx1-ubyte)" in message
    assert "sudo apt-get install dataset-fashion-mnist" in message and "make data" in message
    assert "data.download=true" in message and "data.root=" in message


@pytest.mark.parametrize("where", ["root", "root/fashion-mnist", "SWEEPLAB_DATA_DIR"])
def test_a_named_folder_with_some_files_is_an_error_not_a_fallback(
    tmp_path, no_system_data, monkeypatch, where
):
    make_fashion_dir(tmp_path / "debian", n_test=25)  # a complete copy the loader must not fall back to
    folder = tmp_path / "mine" / ("fashion-mnist" if where == "root/fashion-mnist" else "")
    make_fashion_dir(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    (folder / "train-images-idx3-ubyte.gz").unlink()
    root = None
    if where == "SWEEPLAB_DATA_DIR":
        monkeypatch.setenv("SWEEPLAB_DATA_DIR", str(folder))
    else:
        root = tmp_path / "mine"
    with pytest.raises(DataError) as err:
        load_data(cfg(root, download=True))  # and nothing is downloaded over it
    message = str(err.value)
    assert "\n" not in message and str(folder) in message
    assert "train-images-idx3-ubyte, t10k-labels-idx1-ubyte" in message and "missing" in message
    assert "train-labels-idx1-ubyte" not in message.replace(str(folder), "")


def test_corrupt_file_says_how_to_fix(tmp_path, no_system_data):
    root = make_fashion_dir(tmp_path / "fm")
    images = root / "train-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(gzip.decompress(images.read_bytes())[:5000]))
    with pytest.raises(DataError) as err:
        load_data(cfg(root))
    assert str(images) in str(err.value) and "truncated" in str(err.value) and "make data" in str(err.value)


def test_fingerprint_follows_file_content(tmp_path, no_system_data):
    root = make_fashion_dir(tmp_path / "fm")
    before = load_data(cfg(root)).fingerprint
    labels = read_idx(root / "train-labels-idx1-ubyte.gz")
    labels[0] = 9
    write_idx(root / "train-labels-idx1-ubyte.gz", labels, gzip=True)
    # A rewrite within one mtime tick could look unchanged to the in-memory hash cache.
    os.utime(root / "train-labels-idx1-ubyte.gz", ns=(1, 1))
    assert load_data(cfg(root)).fingerprint != before


def test_verify_rejects_files_that_are_not_the_official_set(tmp_path, no_system_data, capsys):
    root = make_fashion_dir(tmp_path / "fm")
    with pytest.raises(DataError, match="not the official Fashion-MNIST file"):
        fashion_mnist.verify(root)
    assert fashion_mnist.main(["--root", str(root), "--no-download"]) == 1
    assert "expected c59f468a" in capsys.readouterr().err


def test_real_fashion_mnist(capsys):
    if fashion_mnist.find_files(REAL_DIR) is None:
        reason = f"Fashion-MNIST is not installed in {REAL_DIR} (sudo apt-get install dataset-fashion-mnist)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must have it")
        pytest.skip(reason)
    assert fashion_mnist.verify(REAL_DIR) == REAL_DIR
    b = load_data(cfg(REAL_DIR, val_size=5000))
    assert (len(b.x_train), len(b.x_val), len(b.x_test)) == (55000, 5000, 10000)
    assert float(b.x_train.min()) == 0.0 and float(b.x_train.max()) == 1.0
    assert torch.bincount(torch.cat([b.y_train, b.y_val])).tolist() == [6000] * 10
    assert torch.bincount(b.y_test).tolist() == [1000] * 10
    # The split is a fixed function of split_seed: the same 5,000 validation images every time.
    again = load_data(cfg(REAL_DIR, val_size=5000))
    assert torch.equal(again.x_val, b.x_val) and again.fingerprint == b.fingerprint
    assert fashion_mnist.main(["--root", str(REAL_DIR), "--no-download"]) == 0
    out = capsys.readouterr().out
    assert f"found in {REAL_DIR} (Debian package dataset-fashion-mnist), SHA-256 verified" in out
