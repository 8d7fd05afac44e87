"""Where the tracking store is: its URI resolved, what kind it is, how to name it in a message.

Light on purpose (no MLflow): commands that only read the store, and every message about it,
use these without paying for MLflow's import.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sweeplab.errors import one_line
from sweeplab.redact import scrub

CONNECT_TIMEOUT_S = 5


class StoreError(RuntimeError):
    """The tracking store cannot be used; the message is one line saying why and what to do."""


def resolve_uri(uri: str | None) -> str:
    """``tracking.uri``, else ``$MLFLOW_TRACKING_URI``, else a SQLite file ``./mlflow.db``."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):  # relative: pin it down
        return f"sqlite:///{(Path.cwd() / uri.removeprefix('sqlite:///')).resolve()}"
    return uri


def is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:", "/", "postgresql", "mysql"))


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def is_database(uri: str) -> bool:
    """A database MLflow reaches through SQLAlchemy (SQLite, PostgreSQL, MySQL, MSSQL)."""
    return uri.split(":", 1)[0].split("+", 1)[0] in ("sqlite", "postgresql", "postgres", "mysql", "mssql")


def sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def store_host(uri: str) -> str:
    """Where a store lives, for messages: the server or database host, or the SQLite file."""
    path = sqlite_path(uri)
    return str(path) if path else (urlsplit(uri).hostname or scrub(uri))


def reason(exc: BaseException) -> str:
    """A store's error as the end of a one-line message (:func:`sweeplab.errors.one_line`), with
    the two everyday causes named plainly."""
    text = str(getattr(exc, "orig", None) or exc)
    if "Connection refused" in text or "ConnectionRefused" in text:
        return "connection refused"
    if "timed out" in text.lower():
        return "timed out"
    return one_line(exc)


def ui_command(tracking_cfg: Mapping[str, Any], port: int | None = None) -> tuple[list[str], str]:
    """The ``mlflow ui`` command line for the configured store, bound to loopback, and its URL.

    The store itself travels in the environment (``MLFLOW_BACKEND_STORE_URI``), not on the
    command line, where ``ps`` would show its password."""
    uri = resolve_uri(tracking_cfg.get("uri"))
    port = port or int(tracking_cfg.get("ui_port", 5000))
    if is_server(uri):
        return [], scrub(uri)
    cmd = ["mlflow", "ui", "--host", "127.0.0.1", "--port", str(port)]
    return cmd, f"http://127.0.0.1:{port}"


def ui_base(tracking_cfg: Mapping[str, Any]) -> str:
    """The MLflow UI's address for links: the server itself, or `sweeplab ui` on loopback."""
    uri = resolve_uri(tracking_cfg.get("uri"))
    return scrub(uri if is_server(uri) else f"http://127.0.0.1:{tracking_cfg.get('ui_port', 5000)}")
