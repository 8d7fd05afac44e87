"""Credentials never reach a record: every text sweeplab writes or prints passes through here.

Three kinds of secret are recognised: the password of a URI (``scheme://user:password@host``),
values under keys that name a secret (``password``, ``token``, ``secret``, ``*_key``...), and
the values of the process's secret-bearing environment variables (``PGPASSWORD``,
``MLFLOW_TRACKING_PASSWORD``, ``AWS_SECRET_ACCESS_KEY``, ``RAY_AUTH_TOKEN``, anything read from
a ``*_FILE`` variable), wherever they appear in a text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
_SECRET_NAME = re.compile(
    r"(password|passwd|secret|token|credential|api_?key|access_?key|private_?key)", re.I
)
_URI_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/@:\s]*:)(?P<pw>[^@/\s]+)(?=@)", re.I)
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&][^=&\s]*(?:password|secret|token|key)[^=&\s]*=)(?P<v>[^&\s]+)", re.I
)
MIN_SECRET_LEN = 4  # shorter values would mask ordinary words


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name.rsplit(".", 1)[-1]))


def known_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """Secret values this process holds: secret-named variables and the files ``*_FILE`` names."""
    env = os.environ if environ is None else environ
    values = []
    for name, value in env.items():
        if name.endswith("_FILE") and is_secret_name(name.removesuffix("_FILE")):
            try:
                value = Path(value).read_text().strip()
            except OSError:
                continue
        elif not is_secret_name(name):
            continue
        if len(value) >= MIN_SECRET_LEN:
            values.append(value)
    return sorted(set(values), key=len, reverse=True)  # longest first: no partial masks


def scrub(text: str, secrets: list[str] | None = None) -> str:
    """A text with URI passwords, secret query values and known secret values masked."""
    text = _URI_PASSWORD.sub(lambda m: m["head"] + MASK, text)
    text = _QUERY_SECRET.sub(lambda m: m["head"] + MASK, text)
    for secret in known_secrets() if secrets is None else secrets:
        text = text.replace(secret, MASK)
    return text


def scrub_config(value: Any, key: str = "", secrets: list[str] | None = None) -> Any:
    """A config (dicts, lists, scalars) with secret-named values masked and every text scrubbed."""
    secrets = known_secrets() if secrets is None else secrets
    if isinstance(value, Mapping):
        return {k: scrub_config(v, str(k), secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub_config(v, key, secrets) for v in value)
    if isinstance(value, str):
        return MASK if value and is_secret_name(key) else scrub(value, secrets)
    return value


def without_password(uri: str) -> str:
    """A URI to store and connect with later, its password left to the environment
    (``PGPASSWORD``, ``MLFLOW_TRACKING_PASSWORD``) or given again on the command line."""
    parts = urlsplit(uri)
    if not parts.password:
        return uri
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[-1]}" if user else netloc[-1]))
