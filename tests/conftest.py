"""Shared fixtures: the real config composed with Hydra, shrunk for speed; synthetic data bundles."""

from __future__ import annotations

import os

import pytest
import torch

from sweeplab.config import compose, to_container
from sweeplab.data import DataBundle

# Real servers (PostgreSQL databases, the tracking server with or without auth, Ray nodes):
# fixtures in tests/servers.py, registered here once so every test module can use them.
pytest_plugins = ["servers"]


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):  # xdist gives its workers an 80-column "terminal":
        for name in ("COLUMNS", "LINES"):  # the commands run here print off one, as when run alone
            os.environ.pop(name, None)


@pytest.fixture(autouse=True)
def _config_dir_restored():
    """`sweeplab --config-dir` sets $SWEEPLAB_CONFIG_DIR for the whole process (Ray's trials read
    it): a test that calls main() with it must not leave it to the tests after it."""
    before = os.environ.get("SWEEPLAB_CONFIG_DIR")
    yield
    if before is None:
        os.environ.pop("SWEEPLAB_CONFIG_DIR", None)
    else:
        os.environ["SWEEPLAB_CONFIG_DIR"] = before


@pytest.fixture
def make_cfg():
    """Compose the real config with overrides, as plain dicts (what training sees)."""

    def make(*overrides: str) -> dict:
        return to_container(compose(list(overrides)))

    return make


def blobs(n: int = 600, dim: int = 20, classes: int = 3, seed: int = 0, spread: float = 1.0) -> DataBundle:
    """Separable Gaussian blobs: a data set a small MLP learns in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=g) * 3
    y = torch.randint(0, classes, (n,), generator=g)
    x = centers[y] + spread * torch.randn(n, dim, generator=g)
    a, b = int(n * 0.6), int(n * 0.8)
    return DataBundle(
        x[:a],
        y[:a],
        x[a:b],
        y[a:b],
        x[b:],
        y[b:],
        num_classes=classes,
        kind="vector",
        class_names=[str(i) for i in range(classes)],
        fingerprint="blobs",
    )


@pytest.fixture
def blob_data() -> DataBundle:
    return blobs()


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh working directory: where the embedded store (./mlflow.db) and ./sweeps go."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def require_in_ci(reason: str) -> None:
    """Fail in CI (where everything must be present), skip on a developer's machine."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)
