"""Fashion-MNIST from local IDX files: a user folder, the Debian package, or a verified download.

``python -m sweeplab.data.fashion_mnist`` (what ``make data`` runs) finds or
downloads the files, checks their SHA-256 and says where they are.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import torch

from sweeplab.data import idx
from sweeplab.data.bundle import DataBundle, DataError, fingerprint, scale_splits, split_train_val
from sweeplab.data.download import cache_dir, download

# SHA-256 of the decompressed IDX content: the official .gz files and Debian's
# re-compressed copies differ byte for byte but hold the same content.
SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
NAMES = tuple(SHA256)
MIRRORS = [
    "https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
]
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")  # package dataset-fashion-mnist
CLASS_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

_content_hashes: dict[tuple[str, int, int], str] = {}  # (path, mtime_ns, size) -> sha256 of the content


def search_dirs(root: str | Path | None = None) -> list[Path]:
    """Folders searched, in order: ``root``, ``$SWEEPLAB_DATA_DIR``, the Debian package, the user cache."""
    dirs = []
    if root:
        dirs += [Path(root).expanduser(), Path(root).expanduser() / "fashion-mnist"]
    if env := os.environ.get("SWEEPLAB_DATA_DIR"):
        dirs += [Path(env), Path(env) / "fashion-mnist"]
    dirs += [DEBIAN_DIR, cache_dir("fashion-mnist")]
    return list(dict.fromkeys(dirs))


def find_files(directory: Path) -> dict[str, Path] | None:
    """The four files in ``directory`` (gzipped or raw), or None unless all four are there."""
    files = {}
    for name in NAMES:
        candidates = [directory / f"{name}.gz", directory / name]
        files[name] = next((p for p in candidates if p.is_file()), None)
    return files if all(files.values()) else None


def missing_files(directory: Path) -> list[str]:
    return [n for n in NAMES if not (directory / n).is_file() and not (directory / f"{n}.gz").is_file()]


def locate(root: str | Path | None = None) -> Path | None:
    """The first searched folder holding all four files, or None.

    A folder the user named (``data.root``, ``$SWEEPLAB_DATA_DIR``) holding only some of them
    is an error naming the missing ones: falling back to another copy would hide the mistake.
    """
    named = set(search_dirs(root)) - {DEBIAN_DIR, cache_dir("fashion-mnist")}
    for d in search_dirs(root):
        missing = missing_files(d)
        if not missing:
            return d
        if d in named and len(missing) < len(NAMES):
            raise DataError(
                f"{d} holds only some of the Fashion-MNIST files: {', '.join(missing)} "
                f"(or .gz) missing; add them, or point data.root at a folder holding all four"
            )
    return None


def ensure_available(root: str | Path | None = None, download: bool = True) -> Path:
    """The folder holding the four files; downloads them into the user cache if none has them."""
    found = locate(root)
    if found is not None:
        return found
    failure = None
    if download:
        try:
            return _download(cache_dir("fashion-mnist"))
        except DataError as err:
            failure = err
    raise DataError(_not_found(root, failure))


def content_sha256(path: Path, content: bytes | None = None) -> str:
    """SHA-256 of the decompressed content, remembered per path, mtime and size."""
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _content_hashes:
        _content_hashes[key] = hashlib.sha256(content if content is not None else _read(path)).hexdigest()
    return _content_hashes[key]


def verify(directory: str | Path | None = None) -> Path:
    """Check the files against the official checksums; raises :class:`DataError` on any difference."""
    directory = Path(directory) if directory else ensure_available(download=False)
    files = find_files(directory)
    if files is None:
        raise DataError(f"{directory} does not hold all four Fashion-MNIST files")
    for name, path in files.items():
        if (actual := content_sha256(path)) != SHA256[name]:
            raise DataError(
                f"{path} is not the official Fashion-MNIST file: SHA-256 of its content is {actual}, "
                f"expected {SHA256[name]}; {_fix(path)}"
            )
    return directory


def load(
    *,
    root: str | None = None,
    val_size: float = 5000,
    split_seed: int = 0,
    scale: str = "unit",
    download: bool = True,
) -> DataBundle:
    cfg = {"val_size": val_size, "split_seed": split_seed, "scale": scale}
    directory = ensure_available(root, download)
    files = find_files(directory)
    arrays, hashes = {}, []
    for name, path in files.items():
        content = _read(path)
        try:
            arrays[name] = idx.parse_idx(content, path)
        except DataError as err:
            raise DataError(f"{err}; {_fix(path)}") from None
        hashes.append(content_sha256(path, content))
    x_train, y_train = _check(arrays, files, "train")
    x_test, y_test = _check(arrays, files, "t10k")
    x_train, y_train, x_val, y_val = split_train_val(x_train, y_train, cfg["val_size"], cfg["split_seed"])
    # Split as uint8 and convert afterwards: a quarter of the memory traffic.
    images = (x.unsqueeze(1).float() for x in (x_train, x_val, x_test))
    x_train, x_val, x_test = scale_splits(cfg["scale"], *images, unit_max=255.0)
    return DataBundle(
        x_train,
        y_train,
        x_val,
        y_val,
        x_test,
        y_test,
        num_classes=10,
        kind="image",
        class_names=list(CLASS_NAMES),
        fingerprint=fingerprint(
            "fashion_mnist",
            *hashes,
            f"val_size={cfg['val_size']}",
            f"split_seed={cfg['split_seed']}",
            f"scale={cfg['scale']}",
        ),
        extra={"dir": str(directory)},
    )


def _read(path: Path) -> bytes:
    try:
        return idx.read_content(path)
    except DataError as err:
        raise DataError(f"{err}; {_fix(path)}") from None


def _fix(path: Path) -> str:
    if path.parent == DEBIAN_DIR:
        return "reinstall it with `sudo apt-get install --reinstall dataset-fashion-mnist`"
    return "delete it and run `make data` again"


def _check(
    arrays: dict[str, np.ndarray], files: dict[str, Path], split: str
) -> tuple[torch.Tensor, torch.Tensor]:
    images_name, labels_name = f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte"
    images, labels = arrays[images_name], arrays[labels_name]
    if images.dtype != np.uint8 or images.shape[1:] != (28, 28):
        raise DataError(f"{files[images_name]} holds {images.dtype} {images.shape}, not 28x28 uint8 images")
    if labels.shape != (len(images),) or (labels.size and not 0 <= labels.min() <= labels.max() <= 9):
        raise DataError(
            f"{files[labels_name]} does not hold one label 0..9 for each of the {len(images)} "
            f"images in {files[images_name]}"
        )
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


def _download(target: Path) -> Path:
    for name in NAMES:
        dest = target / f"{name}.gz"
        if dest.is_file() and _content_ok(dest, name):  # kept from an interrupted earlier run
            continue
        download([m + f"{name}.gz" for m in MIRRORS], dest, SHA256[name], decompressed_sha256=True)
    return target


def _content_ok(path: Path, name: str) -> bool:
    try:
        return content_sha256(path) == SHA256[name]
    except DataError:
        return False


def _not_found(root: str | Path | None, failure: DataError | None) -> str:
    lines = ["Fashion-MNIST not found. Looked for " + ", ".join(f"{n}[.gz]" for n in NAMES) + " in:"]
    for d in search_dirs(root):
        missing = missing_files(d)
        if not d.is_dir():
            note = "no such directory"
        elif len(missing) == len(NAMES):
            note = "none of the files"
        else:
            note = "missing " + ", ".join(missing)
        lines.append(f"  {d} ({note})")
    if failure is not None:
        lines.append(f"Downloading failed: {failure}")
    lines += [
        "Get it one of these ways:",
        "  sudo apt-get install dataset-fashion-mnist   (or run `make data`)",
        f"  set data.download=true to download it into {cache_dir('fashion-mnist')}",
        "  set data.root=/path/to/folder holding the four files",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sweeplab.data.fashion_mnist",
        description="Find or download Fashion-MNIST and verify its checksums.",
    )
    parser.add_argument("--root", help="a folder to look in first")
    parser.add_argument("--no-download", action="store_true", help="only look for local copies")
    args = parser.parse_args(argv)
    try:
        found = locate(args.root)
        if found is None and not args.no_download:
            print(f"Fashion-MNIST not found locally; downloading it into {cache_dir('fashion-mnist')} ...")
        directory = verify(ensure_available(args.root, download=not args.no_download))
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    how = "found in" if found else "downloaded to"
    note = " (Debian package dataset-fashion-mnist)" if directory == DEBIAN_DIR else ""
    print(f"Fashion-MNIST {how} {directory}{note}, SHA-256 verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
