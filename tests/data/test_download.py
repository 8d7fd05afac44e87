"""Downloads against a real HTTP server on 127.0.0.1: mirrors, retries, checksums, and the two
data sets that download (Fashion-MNIST, IMDB) end to end. Nothing here touches the internet."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tenacity
import torch

from sweeplab.data import DataError, download, fashion_mnist, imdb, load_data
from sweeplab.data.download import sha256_of
from sweeplab.data.idx import write_idx


class Handler(SimpleHTTPRequestHandler):
    """Serves a folder; ``server.failures[path] = n`` answers the next n requests for path with 503."""

    def do_GET(self):
        self.server.requests.append(self.path)
        if self.server.failures.get(self.path, 0) > 0:
            self.server.failures[self.path] -= 1
            self.send_error(503)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    www = tmp_path / "www"
    www.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(www)))
    httpd.requests, httpd.failures = [], {}
    # A short poll interval: shutdown() otherwise waits out serve_forever's default half second.
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    monkeypatch.setenv("no_proxy", "127.0.0.1")  # urllib would send even local requests to a proxy
    monkeypatch.setattr(download, "RETRY_WAIT", tenacity.wait_none())
    yield SimpleNamespace(url=f"http://127.0.0.1:{httpd.server_port}", www=www, httpd=httpd)
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SWEEPLAB_DATA_DIR", raising=False)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian-package")
    return tmp_path / "cache" / "sweeplab"


def serve(server, name: str, content: bytes) -> str:
    (server.www / name).write_bytes(content)
    return hashlib.sha256(content).hexdigest()


def test_download_verifies_and_writes_atomically(server, tmp_path):
    sha = serve(server, "a.bin", b"payload " * 1000)
    dest = tmp_path / "out" / "a.bin"
    assert download.download(f"{server.url}/a.bin", dest, sha) == dest
    assert dest.read_bytes() == b"payload " * 1000
    assert list(dest.parent.iterdir()) == [dest]  # no .part left behind


def test_wrong_checksum_leaves_nothing_behind(server, tmp_path):
    actual = serve(server, "a.bin", b"tampered")
    dest = tmp_path / "a.bin"
    with pytest.raises(DataError) as err:
        download.download(f"{server.url}/a.bin", dest, "0" * 64)
    message = str(err.value)
    assert "a.bin" in message and "0" * 64 in message and actual in message
    assert not dest.exists() and not list(tmp_path.glob("*.part"))
    assert server.httpd.requests == ["/a.bin"]  # a mismatch is not retried


def test_second_mirror_used_when_first_is_missing(server, tmp_path):
    sha = serve(server, "b.bin", b"from the mirror")
    dest = download.download([f"{server.url}/gone/b.bin", f"{server.url}/b.bin"], tmp_path / "b.bin", sha)
    assert dest.read_bytes() == b"from the mirror"
    assert server.httpd.requests == ["/gone/b.bin", "/b.bin"]  # a 404 moves on without retrying


def test_transient_errors_are_retried(server, tmp_path):
    sha = serve(server, "c.bin", b"eventually")
    server.httpd.failures["/c.bin"] = 2
    assert download.download(f"{server.url}/c.bin", tmp_path / "c.bin", sha).read_bytes() == b"eventually"
    assert server.httpd.requests == ["/c.bin"] * 3


def test_all_urls_failing_names_each(server, tmp_path):
    server.httpd.failures["/d.bin"] = 10
    urls = [f"{server.url}/nothing/d.bin", f"{server.url}/d.bin"]
    with pytest.raises(DataError, match="could not download d.bin") as err:
        download.download(urls, tmp_path / "out" / "d.bin", None)
    assert all(url in str(err.value) for url in urls)
    assert "HTTP 404" in str(err.value) and "HTTP 503" in str(err.value)
    assert len(server.httpd.requests) == 1 + download.ATTEMPTS
    assert not list((tmp_path / "out").iterdir())


def test_decompressed_checksum(server, tmp_path):
    content = b"idx content " * 100
    serve(server, "e.gz", gzip.compress(content))
    sha = hashlib.sha256(content).hexdigest()
    dest = download.download(f"{server.url}/e.gz", tmp_path / "e.gz", sha, decompressed_sha256=True)
    assert gzip.decompress(dest.read_bytes()) == content and sha256_of(dest, decompressed=True) == sha


def test_fashion_mnist_downloads_into_the_cache(server, cache, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    checksums = {}
    for split, n in (("train", 30), ("t10k", 12)):
        for kind, array in (
            ("images", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)),
            ("labels", (np.arange(n) % 10).astype(np.uint8)),
        ):
            name = f"{split}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
            path = write_idx(server.www / f"{name}.gz", array, gzip=True)
            checksums[name] = hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()
    monkeypatch.setattr(fashion_mnist, "SHA256", checksums)
    monkeypatch.setattr(fashion_mnist, "MIRRORS", [f"{server.url}/official-is-down/", f"{server.url}/"])

    assert fashion_mnist.main([]) == 0
    assert f"downloaded to {cache / 'fashion-mnist'}, SHA-256 verified" in capsys.readouterr().out
    assert sorted(p.name for p in (cache / "fashion-mnist").iterdir()) == sorted(f"{n}.gz" for n in checksums)

    b = load_data(
        {
            "_target_": "sweeplab.data.fashion_mnist.load",
            "name": "fashion_mnist",
            "root": None,
            "download": True,
            "val_size": 6,
            "split_seed": 0,
            "scale": "unit",
        }
    )
    assert (len(b.x_train), len(b.x_val), len(b.x_test)) == (24, 6, 12) and b.x_test.shape[1:] == (1, 28, 28)
    assert b.extra["dir"] == str(cache / "fashion-mnist")
    requests = len(server.httpd.requests)
    load_data(
        {
            "_target_": "sweeplab.data.fashion_mnist.load",
            "name": "fashion_mnist",
            "root": None,
            "download": True,
            "val_size": 6,
            "split_seed": 0,
            "scale": "unit",
        }
    )
    assert len(server.httpd.requests) == requests  # found in the cache the second time


def test_fashion_mnist_bad_download_is_reported_with_the_search(server, cache, monkeypatch):
    write_idx(server.www / "train-images-idx3-ubyte.gz", np.zeros((3, 28, 28), np.uint8), gzip=True)
    monkeypatch.setattr(fashion_mnist, "MIRRORS", [f"{server.url}/"])
    with pytest.raises(DataError) as err:
        fashion_mnist.ensure_available(download=True)
    message = str(err.value)
    assert (
        "checksum mismatch for train-images-idx3-ubyte.gz" in message
        and fashion_mnist.SHA256["train-images-idx3-ubyte"] in message
    )
    assert "apt-get install dataset-fashion-mnist" in message and str(cache / "fashion-mnist") in message
    assert not list((cache / "fashion-mnist").iterdir())


def make_tarball(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_imdb_downloads_and_unpacks(server, cache, monkeypatch):
    members = {
        f"aclImdb/{split}/{label}/{i}_{7 if label == 'pos' else 1}.txt": f"{label} review {i}".encode()
        for split in ("train", "test")
        for label in ("pos", "neg")
        for i in range(5)
    }
    sha = serve(server, "aclImdb_v1.tar.gz", make_tarball(members))
    monkeypatch.setattr(imdb, "URL", f"{server.url}/aclImdb_v1.tar.gz")
    monkeypatch.setattr(imdb, "SHA256", sha)
    b = load_data(
        {
            "_target_": "sweeplab.data.imdb.load",
            "name": "imdb",
            "root": None,
            "download": True,
            "val_size": 2,
            "split_seed": 0,
            "scale": "none",
            "vectorize": "multi_hot",
            "num_words": 20,
            "max_len": 8,
            "char_ngrams": [],
            "ngram_buckets": 10,
            "lowercase": True,
        }
    )
    assert (len(b.x_train), len(b.x_val), len(b.x_test)) == (8, 2, 10)
    assert torch.equal(b.y_test, torch.tensor([0] * 5 + [1] * 5))
    assert b.extra["dir"] == str(cache / "aclImdb")
    assert sorted(p.name for p in cache.iterdir()) == ["aclImdb"]  # tarball and temporary folder gone


def test_imdb_archive_escaping_its_folder_is_refused(server, cache, monkeypatch, tmp_path):
    sha = serve(server, "evil.tar.gz", make_tarball({"../../outside.txt": b"gotcha"}))
    monkeypatch.setattr(imdb, "URL", f"{server.url}/evil.tar.gz")
    monkeypatch.setattr(imdb, "SHA256", sha)
    with pytest.raises(DataError, match="could not unpack"):
        imdb.ensure_available(download=True)
    assert not list(tmp_path.rglob("outside.txt"))
    assert not (cache / "aclImdb").exists()
