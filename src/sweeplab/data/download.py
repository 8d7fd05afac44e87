"""Fetch a data file over HTTP(S): mirrors, retries, atomic write, SHA-256 check."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from sweeplab.data.bundle import DataError

log = logging.getLogger(__name__)

TIMEOUT_S = 60  # per connect / read, not for the whole file
ATTEMPTS = 3  # per URL; tests set RETRY_WAIT to tenacity.wait_none()
RETRY_WAIT = wait_exponential(multiplier=1, min=1, max=8)
CHUNK = 1 << 20


def cache_dir(*parts: str) -> Path:
    """Where sweeplab keeps downloads: ``${XDG_CACHE_HOME:-~/.cache}/sweeplab/<parts>``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base, "sweeplab", *parts)


def sha256_of(path: str | Path, decompressed: bool = False) -> str:
    """SHA-256 of a file, or with ``decompressed`` of its content if it is gzipped."""
    path = Path(path)
    with open(path, "rb") as f:
        gzipped = decompressed and f.read(2) == b"\x1f\x8b"
    h = hashlib.sha256()
    try:
        with (gzip.open if gzipped else open)(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
    except (EOFError, gzip.BadGzipFile) as err:
        raise DataError(f"{path} is a truncated or corrupt gzip file: {err or 'stream ends early'}") from None
    return h.hexdigest()


def download(
    url_or_urls: str | Sequence[str], dest: str | Path, sha256: str | None, decompressed_sha256: bool = False
) -> Path:
    """Download the first URL that works to ``dest`` and check its SHA-256.

    Transient failures (connection errors, timeouts, HTTP 5xx/429) are retried
    with exponential backoff; other failures move on to the next mirror. The file
    is streamed to ``<dest>.part`` and renamed into place only once verified, so
    ``dest`` is never half-written. With ``decompressed_sha256`` the hash is of
    the gunzipped content. A checksum mismatch is not retried: the part file is
    removed and :class:`DataError` names the file, expected and actual hash.
    """
    urls = [url_or_urls] if isinstance(url_or_urls, str) else list(url_or_urls)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures = []
    for url in urls:
        log.info("downloading %s", url)
        try:
            for attempt in Retrying(
                stop=stop_after_attempt(ATTEMPTS),
                wait=RETRY_WAIT,
                retry=retry_if_exception(_transient),
                reraise=True,
            ):
                with attempt:
                    _fetch(url, part)
        except (OSError, http.client.HTTPException) as err:  # URLError and timeouts are OSErrors
            part.unlink(missing_ok=True)
            failures.append(f"{url}: {_describe(err)}")
            continue
        if sha256 is not None:
            _check(part, dest.name, url, sha256.lower(), decompressed_sha256)
        os.replace(part, dest)
        return dest
    raise DataError(f"could not download {dest.name}; tried:\n" + "\n".join(f"  {f}" for f in failures))


def _fetch(url: str, part: Path) -> None:
    request = Request(url, headers={"User-Agent": "sweeplab"})
    with urlopen(request, timeout=TIMEOUT_S) as response, open(part, "wb") as out:
        shutil.copyfileobj(response, out, CHUNK)
        expected, written = response.headers.get("Content-Length"), out.tell()
    # http.client returns a short body silently when the server hangs up early.
    if expected is not None and int(expected) != written:
        raise ConnectionError(f"connection closed after {written} of {expected} bytes")


def _describe(err: BaseException) -> str:
    if isinstance(err, HTTPError):
        return f"HTTP {err.code} {err.reason}"
    return str(getattr(err, "reason", None) or err)  # URLError wraps the socket error in .reason


def _transient(err: BaseException) -> bool:
    if isinstance(err, HTTPError):
        return err.code >= 500 or err.code == 429
    return isinstance(err, (URLError, TimeoutError, ConnectionError, http.client.HTTPException))


def _check(part: Path, name: str, url: str, expected: str, decompressed: bool) -> None:
    try:
        actual = sha256_of(part, decompressed)
    except DataError as err:
        part.unlink(missing_ok=True)
        raise DataError(f"{name} from {url} is unusable ({err}); the download was removed") from None
    if actual != expected:
        part.unlink(missing_ok=True)
        of = " of the decompressed content" if decompressed else ""
        raise DataError(
            f"checksum mismatch for {name} downloaded from {url}: expected SHA-256{of} {expected}, "
            f"got {actual}; the download was removed"
        )
