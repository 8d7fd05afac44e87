"""Where a sweep keeps its state: a local folder, a folder every node mounts (NFS), or an
object store (``s3://bucket/prefix``; S3-compatible stores through ``tune.storage_endpoint``).

Tune's experiment state, every trial's checkpoints and sweeplab's own sweep state live
there, so a sweep can be resumed from any machine that reaches it. Object-store
credentials come from the standard environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, or an instance role) on the driver and on every node, never from
sweeplab's config, which is recorded.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from sweeplab.config import ConfigError
from sweeplab.errors import one_line
from sweeplab.redact import scrub


@dataclass(frozen=True)
class Storage:
    uri: str  # an absolute local path, or scheme://bucket/prefix

    @classmethod
    def from_config(cls, tune_cfg: dict) -> Storage:
        path = str(tune_cfg["storage_path"])
        if scrub(path, []) != path:  # s3://KEY:SECRET@bucket: pyarrow reads it, but the path is recorded
            raise ConfigError(
                f"tune.storage_path={scrub(path, [])} carries the object store's key, and a sweep's storage "
                "path is recorded and shipped to every node; give the key in AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY or ~/.aws/credentials instead"
            )
        if endpoint := tune_cfg.get("storage_endpoint"):
            # pyarrow's S3 client reads it, here and (shipped with the trials) on every node
            os.environ["AWS_ENDPOINT_URL"] = endpoint
        if "://" in path and not path.startswith("file://"):
            return cls(path.rstrip("/"))
        return cls(str(Path(path.removeprefix("file://")).expanduser().resolve()))

    @property
    def is_local(self) -> bool:
        """A path on this machine's file system (it may still be a mount every node shares)."""
        return "://" not in self.uri

    def _fs(self) -> tuple[pafs.FileSystem, str]:
        if self.is_local:
            return pafs.LocalFileSystem(), self.uri
        try:
            return pafs.FileSystem.from_uri(self.uri)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a bad URI
            raise ConfigError(f"tune.storage_path={self.uri}: {one_line(exc)}") from None

    def join(self, *parts: str) -> str:
        return "/".join([self.uri, *parts])

    # -- files relative to the storage root
    def exists(self, rel: str) -> bool:
        fs, root = self._fs()
        return fs.get_file_info(f"{root}/{rel}").type != pafs.FileType.NotFound

    def read_text(self, rel: str) -> str:
        fs, root = self._fs()
        with fs.open_input_stream(f"{root}/{rel}") as fh:
            return fh.read().decode()

    def write_text(self, rel: str, text: str) -> None:
        fs, root = self._fs()
        path = f"{root}/{rel}"
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        tmp = f"{path}.tmp"
        with fs.open_output_stream(tmp) as fh:
            fh.write(text.encode())
        fs.move(tmp, path)  # a reader never sees half a file

    def upload(self, local: Path, rel: str) -> None:
        fs, root = self._fs()
        fs.create_dir(f"{root}/{rel}".rsplit("/", 1)[0], recursive=True)
        pafs.copy_files(str(local), f"{root}/{rel}", destination_filesystem=fs)

    def download(self, rel: str, local: Path) -> bool:
        if not self.exists(rel):
            return False
        fs, root = self._fs()
        local.parent.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(f"{root}/{rel}", str(local), source_filesystem=fs)
        return True

    def delete(self, rel: str) -> None:
        fs, root = self._fs()
        info = fs.get_file_info(f"{root}/{rel}")
        if info.type == pafs.FileType.Directory:
            fs.delete_dir(info.path)
        elif info.type == pafs.FileType.File:
            fs.delete_file(info.path)

    def folders(self) -> dict[str, float]:
        """The folders at the root: name → when it last changed (seconds since the epoch)."""
        fs, root = self._fs()
        infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
        return {
            i.base_name: i.mtime.timestamp() if i.mtime else 0.0
            for i in infos
            if i.type == pafs.FileType.Directory
        }

    def files(self, rel: str) -> dict[str, int]:
        """Every file under ``rel``, recursively: its path relative to ``rel`` → its size in bytes."""
        fs, root = self._fs()
        base = f"{root}/{rel}".rstrip("/")
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        return {i.path.removeprefix(f"{base}/"): i.size for i in infos if i.type == pafs.FileType.File}


AWS_KEYS = {
    "AWS_ACCESS_KEY_ID": "aws_access_key_id",
    "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key",
    "AWS_SESSION_TOKEN": "aws_session_token",
}


def hide_credentials() -> None:
    """Move object-store keys from the environment into a private credentials file.

    Ray Tune copies ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` from the driver's
    environment into every trial's runtime environment, which Ray writes to its logs on
    every node. A credentials file (``AWS_SHARED_CREDENTIALS_FILE``, mode 600) serves this
    machine's processes the same keys without that; other nodes bring their own.
    """
    keys = {AWS_KEYS[k]: os.environ.pop(k) for k in list(AWS_KEYS) if k in os.environ}
    os.environ.pop("AWS_SECURITY_TOKEN", None)
    if not keys:
        return
    folder = Path(tempfile.mkdtemp(prefix="sweeplab-credentials-"))  # private (0700), never on storage
    atexit.register(shutil.rmtree, folder, True)
    path = folder / "credentials"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("[default]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()))
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(path)
    os.environ.pop("AWS_PROFILE", None)  # the file has one profile: default


def fetch(uri: str, file_name: str, dest: Path) -> Path:
    """Copy ``file_name`` of the folder at ``uri`` (a local path or an object-store URI) into ``dest``."""
    target = dest / file_name
    if "://" not in uri:
        shutil.copyfile(Path(uri) / file_name, target)
    else:
        fs, path = pafs.FileSystem.from_uri(uri)
        pafs.copy_files(f"{path}/{file_name}", str(target), source_filesystem=fs)
    return target


def prune_checkpoints(trial_dir: str, keep: list[str]) -> None:
    """Delete a trial's checkpoint folders (``checkpoint_*``) other than ``keep``."""
    if "://" in trial_dir:
        fs, path = pafs.FileSystem.from_uri(trial_dir)
        prefix = trial_dir[: -len(path)] if trial_dir.endswith(path) else ""
    else:
        fs, path, prefix = pafs.LocalFileSystem(), trial_dir, ""
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    for info in infos:
        name = info.path.rsplit("/", 1)[-1]
        is_checkpoint = info.type == pafs.FileType.Directory and name.startswith("checkpoint_")
        if is_checkpoint and f"{prefix}{info.path}" not in keep:
            fs.delete_dir(info.path)


def checkpoint_uri(checkpoint) -> str:
    """Where a Tune checkpoint lives, as a URI that :func:`fetch` understands later."""
    fs = checkpoint.filesystem
    if fs is None or isinstance(fs, pafs.LocalFileSystem):
        return str(checkpoint.path)
    return f"{fs.type_name}://{checkpoint.path}"
