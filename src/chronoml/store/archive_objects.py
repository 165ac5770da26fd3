"""The object stores archive files live in: a local folder or an S3-compatible bucket.

The one seam between the archive and the network: :func:`open_objects` gives
an :class:`Objects` with put, get and list by key. Any failure to reach the
store is an :class:`Unreachable` (archiving pauses and retries); a file that
is there but wrong is an :class:`~chronoml.domain.archive.ArchiveError`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from chronoml.domain.archive import ArchiveError, Target, resolve_ref
from chronoml.errors import StoreError


class Unreachable(StoreError):
    """The object store cannot be reached (or refused the request)."""


class Objects(Protocol):
    """Put and get whole objects by key under one target."""

    target: Target

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def keys(self) -> list[str]: ...

    def delete(self, key: str) -> None: ...


class Folder:
    """Files in a local folder; each written to a temporary name, fsync'd, then renamed."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.root = Path(target.url.removeprefix("file://"))

    def put(self, key: str, data: bytes) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.root / key)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            dfd = os.open(self.root, os.O_RDONLY)
            try:
                os.fsync(dfd)  # the rename itself survives a crash
            finally:
                os.close(dfd)
        except OSError as exc:
            raise Unreachable(f"cannot write {self.root / key}: {exc.strerror}") from exc

    def get(self, key: str) -> bytes:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            raise ArchiveError(f"archive file {self.root / key} is missing", "archive") from None
        except OSError as exc:
            raise Unreachable(f"cannot read {self.root / key}: {exc.strerror}") from exc

    def keys(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if not p.name.startswith("."))

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)


class S3:
    """Objects under ``s3://bucket/prefix`` through boto3 (any S3-compatible server)."""

    def __init__(self, target: Target, env: Mapping[str, str]) -> None:
        # lazy: boto3 takes 0.3 s to import and only S3 targets need it
        import boto3
        from botocore.config import Config

        self.target = target
        self.bucket, self.prefix = target.bucket_prefix()
        kwargs: dict[str, Any] = {}
        if target.access_key is not None and target.secret_key is not None:
            kwargs["aws_access_key_id"] = resolve_ref(target.access_key, dict(env))
            kwargs["aws_secret_access_key"] = resolve_ref(target.secret_key, dict(env))
        session = boto3.session.Session(profile_name=target.profile, **kwargs)
        self.client = session.client(
            "s3",
            endpoint_url=target.endpoint_url,
            region_name=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            # fail fast when the store is down: the archiver retries with its own backoff
            config=Config(
                connect_timeout=5, read_timeout=60, retries={"max_attempts": 2, "mode": "standard"}
            ),
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, fn: Any, **kw: Any) -> Any:
        # lazy: botocore comes with boto3, which only S3 targets load
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kw)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in {"NoSuchKey", "404"}:
                raise ArchiveError(
                    f"archive object {kw.get('Key')} is missing", "archive"
                ) from None
            raise Unreachable(f"{self.target.url}: {what} failed: {code or exc}") from exc
        except BotoCoreError as exc:
            raise Unreachable(f"{self.target.url}: {what} failed: {exc}") from exc

    def put(self, key: str, data: bytes) -> None:
        self._call("put", self.client.put_object, Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes:
        got = self._call("get", self.client.get_object, Key=self._key(key))
        try:
            return bytes(got["Body"].read())
        except Exception as exc:  # the connection dropped mid-body
            raise Unreachable(f"{self.target.url}: reading {key} failed: {exc}") from exc

    def keys(self) -> list[str]:
        out: list[str] = []
        token: str | None = None
        while True:
            kw: dict[str, Any] = {"Prefix": f"{self.prefix}/" if self.prefix else ""}
            if token:
                kw["ContinuationToken"] = token
            page = self._call("list", self.client.list_objects_v2, **kw)
            out += [o["Key"].rsplit("/", 1)[-1] for o in page.get("Contents", [])]
            token = page.get("NextContinuationToken")
            if not token:
                return sorted(out)

    def delete(self, key: str) -> None:
        self._call("delete", self.client.delete_object, Key=self._key(key))


_OPEN: dict[str, Objects] = {}


def open_objects(target: Target, env: Mapping[str, str] | None = None) -> Objects:
    """The object store of ``target`` (S3 clients are kept per target: they pool connections)."""
    if not target.is_s3:
        return Folder(target)
    key = repr(sorted(target.to_dict().items()))
    got = _OPEN.get(key)
    if got is None:
        got = _OPEN[key] = S3(target, os.environ if env is None else env)
    return got
