"""Read and write IDX files, the format of (Fashion-)MNIST, gzipped or raw.

Layout: two zero bytes, a dtype code, the number of dimensions, one big-endian
uint32 per dimension, then the values in big-endian C order.
"""

from __future__ import annotations

import gzip as gz  # plain `gzip` is write_idx's parameter name
import zlib
from pathlib import Path

import numpy as np

from sweeplab.data.bundle import DataError

DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"


def read_content(path: str | Path) -> bytes:
    """The file's IDX bytes, decompressed if it is gzipped (told by its magic bytes, not its suffix)."""
    path = Path(path)
    raw = path.read_bytes()
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gz.decompress(raw)
    except EOFError:
        raise DataError(f"{path} is truncated: the gzip stream ends early") from None
    except (OSError, zlib.error) as err:  # BadGzipFile (bad CRC / length) is an OSError
        raise DataError(f"{path} is a corrupt gzip file: {err}") from None


def parse_idx(content: bytes, path: str | Path = "<bytes>") -> np.ndarray:
    """Turn decompressed IDX bytes into an array in native byte order; ``path`` is only for messages."""
    if len(content) < 4 or content[:2] != b"\0\0" or content[2] not in DTYPES:
        raise DataError(f"{path} is not an IDX file: bad magic number {content[:4].hex() or '(empty)'}")
    dtype, ndim = np.dtype(DTYPES[content[2]]), content[3]
    header = 4 + 4 * ndim
    if len(content) < header:
        raise DataError(f"{path} is truncated: the header ends after {len(content)} bytes")
    dims = tuple(int(d) for d in np.frombuffer(content, ">u4", ndim, offset=4))
    expected, found = int(np.prod(dims)) * dtype.itemsize, len(content) - header
    if found != expected:
        what = "truncated" if found < expected else "too long"
        raise DataError(
            f"{path} is {what}: expected {expected} bytes of data for shape {dims}, found {found}"
        )
    flat = np.frombuffer(content, dtype, offset=header)
    # A copy: native byte order, and writable (frombuffer over bytes is read-only).
    return flat.astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw); a truncated or corrupt file raises :class:`DataError`."""
    return parse_idx(read_content(path), path)


def write_idx(path: str | Path, array: np.ndarray, gzip: bool = False) -> Path:
    """Write ``array`` as an IDX file, gzipped if ``gzip`` (whatever the file name says)."""
    array = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise ValueError(f"IDX cannot store dtype {array.dtype}; use one of {sorted(map(str, codes))}")
    header = bytes([0, 0, codes[native], array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    content = header + array.astype(native.newbyteorder(">")).tobytes()
    path = Path(path)
    path.write_bytes(gz.compress(content, mtime=0) if gzip else content)
    return path
