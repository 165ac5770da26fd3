"""Archived decision files: their evidence leaf and where they live (pure).

An archive file holds decisions of one endpoint and one input layout, in time
order, as Parquet. Its name is the sha256 of its bytes. The evidence log
commits each file by an :func:`file_leaf_hash` over that digest and what the
file claims to hold, in the same transaction that deletes its rows, so a
file swapped, truncated or dropped from the object store is named by
``audit verify``. The decisions inside stay covered by their own leaves,
which are recomputed from the file's content. A file written with an index of
its unit keys (:func:`unit_index`: which subjects it holds, so an erasure opens
only their files) has that index's digest in its leaf too, so an index edited
to hide a subject's file is named by ``audit verify`` like any other edit.

A target is where files go: a local folder (``file:///path`` or a plain
path) or an S3-compatible bucket (``s3://bucket/prefix``) with an optional
endpoint URL. Credentials are never stored: only references to them
(``${ENV_VAR}`` or an AWS profile name), resolved when the store is opened.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from chronoml.errors import ChronomlError

_TAG = b"chronoml/archive-file/v1"
_TAG_UNITS = b"chronoml/archive-file/v2"  # with the digest of the file's unit index
_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
SHA_HEX = re.compile(r"^[0-9a-f]{64}$")


class ArchiveError(ChronomlError):
    """A bad archive target, or an archive file that does not check out."""


@dataclass(frozen=True)
class FileLeaf:
    """What the evidence log commits about one archive file."""

    sha256: str
    endpoint: str
    layout: str
    ts_min: int
    ts_max: int
    rows: int
    min_id: str
    max_id: str
    units_sha256: str | None = None  # the digest of its unit index (None: no index)

    def leaf_hash(self) -> bytes:
        """RFC 6962 leaf hash of a canonical encoding (length-prefixed fields)."""
        if not SHA_HEX.match(self.sha256):
            raise ArchiveError("the file digest is not 64 hex digits", "sha256")
        tag = _TAG if self.units_sha256 is None else _TAG_UNITS
        parts = [b"\x00", _s(tag), bytes.fromhex(self.sha256), _s(self.endpoint.encode())]
        parts += [
            _s(self.layout.encode()),
            struct.pack(">qqq", self.ts_min, self.ts_max, self.rows),
        ]
        parts += [_s(self.min_id.encode()), _s(self.max_id.encode())]
        if self.units_sha256 is not None:
            if not SHA_HEX.match(self.units_sha256):
                raise ArchiveError("the unit index digest is not 64 hex digits", "units")
            parts.append(bytes.fromhex(self.units_sha256))
        return hashlib.sha256(b"".join(parts)).digest()


# --- the unit index: which unit keys a file holds --------------------------------

UNIT_HASH_BYTES = 4  # per distinct unit key; a false match only makes an erasure open a file


def unit_hash(unit: str) -> bytes:
    """A unit key's entry in an index: the first bytes of its sha256."""
    return hashlib.sha256(unit.encode()).digest()[:UNIT_HASH_BYTES]


def unit_index(units: Iterable[str]) -> bytes:
    """The index of a file holding ``units`` (its distinct unit keys): their hashes
    sorted and unique, end to end."""
    sha, w = hashlib.sha256, UNIT_HASH_BYTES  # unit_hash, inlined: a file has many units
    return b"".join(sorted({sha(u.encode()).digest()[:w] for u in units}))


def index_digest(index: bytes) -> str:
    """What a file's leaf commits of its unit index."""
    return hashlib.sha256(index).hexdigest()


def may_hold(index: bytes, unit: str) -> bool:
    """Whether a file with this index may hold ``unit`` (False: it certainly does not)."""
    want, w = unit_hash(unit), UNIT_HASH_BYTES
    lo, hi = 0, len(index) // w
    while lo < hi:  # a binary search over the fixed-width entries (bytes sort as numbers)
        mid = (lo + hi) // 2
        at = index[mid * w : (mid + 1) * w]
        if at == want:
            return True
        if at < want:
            lo = mid + 1
        else:
            hi = mid
    return False


def _s(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


@dataclass(frozen=True)
class Target:
    """Where archive files are written: a folder or an S3-compatible prefix."""

    url: str  # file:///abs/folder or s3://bucket/prefix (no trailing slash)
    endpoint_url: str | None = None
    access_key: str | None = None  # a ${ENV} reference, never the key itself
    secret_key: str | None = None
    profile: str | None = None  # an AWS profile name (~/.aws/credentials)

    @property
    def is_s3(self) -> bool:
        return self.url.startswith("s3://")

    def bucket_prefix(self) -> tuple[str, str]:
        rest = self.url.removeprefix("s3://")
        bucket, _, prefix = rest.partition("/")
        return bucket, prefix.strip("/")

    def to_dict(self) -> dict[str, Any]:
        """JSON form (references only: safe to store and to show)."""
        out: dict[str, Any] = {"url": self.url}
        for k in ("endpoint_url", "access_key", "secret_key", "profile"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Target:
        return cls(
            str(d["url"]),
            d.get("endpoint_url"),
            d.get("access_key"),
            d.get("secret_key"),
            d.get("profile"),
        )


def parse_target(
    url: str,
    *,
    endpoint_url: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    profile: str | None = None,
) -> Target:
    """A checked target. Raises :class:`ArchiveError` naming the bad field."""
    url = url.strip()
    if url.startswith("s3://"):
        bucket = url.removeprefix("s3://").partition("/")[0]
        if not _BUCKET.match(bucket):
            raise ArchiveError(f"{bucket!r} is not an S3 bucket name", "to")
        url = url.rstrip("/")
    elif url.startswith("file://"):
        path = url.removeprefix("file://")
        if not path.startswith("/"):
            raise ArchiveError("a file:// URL needs an absolute path (file:///...)", "to")
        url = "file://" + path.rstrip("/")
    else:
        raise ArchiveError(f"{url!r}: give s3://bucket/prefix or file:///folder", "to")
    if endpoint_url is not None and not re.match(r"^https?://[^\s/]+(/\S*)?$", endpoint_url):
        raise ArchiveError(f"{endpoint_url!r} is not an http(s) URL", "s3_endpoint_url")
    for name, value in (("access_key", access_key), ("secret_key", secret_key)):
        if value is not None and not _REF.match(value):
            raise ArchiveError(
                f"give the {name.replace('_', ' ')} by reference, as ${{ENV_VAR}}: "
                "keys are never stored in plain text",
                name,
            )
    if (access_key is None) != (secret_key is None):
        raise ArchiveError("give both the access key and the secret key, or neither", "access_key")
    if not url.startswith("s3://") and (endpoint_url or access_key or profile):
        raise ArchiveError("an endpoint URL and credentials apply to s3:// targets only", "to")
    return Target(url, endpoint_url, access_key, secret_key, profile)


def resolve_ref(ref: str, env: dict[str, str]) -> str:
    """The value a ``${ENV}`` reference points to."""
    m = _REF.match(ref)
    if m is None:
        raise ArchiveError(f"{ref!r} is not a ${{ENV}} reference", "credentials")
    if m.group(1) not in env:
        raise ArchiveError(
            f"the environment has no {m.group(1)} (referenced by the target)", "credentials"
        )
    return env[m.group(1)]


def file_name(sha256: str) -> str:
    """The object key of a file under its target's prefix: its digest."""
    return f"{sha256}.parquet"
