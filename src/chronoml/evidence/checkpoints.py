"""Signed checkpoints of the evidence log: make them, keep them, publish them.

A checkpoint is the log's origin, its size and root, and the time, in the
C2SP ``tlog-checkpoint`` form signed as a C2SP note with the store's Ed25519
key. The store keeps every checkpoint it issued; the ones that matter to an
auditor are the copies published outside it (a directory, or whatever the
auditor saved from ``chronoml audit checkpoint``), since an insider can edit
the store's copy but cannot sign a new one without the key.

Publishing: a directory (``--checkpoint-dir``), webhooks (``--checkpoint-webhook``,
through the durable outbox: the delivery rows are written in the transaction
that records the checkpoint, so a crash loses both or neither, and the outbox
retries with backoff until the receiver takes it), and optionally an RFC 3161
timestamp from an authority (``--tsa-url``), asked for before that
transaction and kept beside the checkpoint (database, ``.tsr`` files, and the
webhook body). A checkpoint whose authority does not answer is still issued,
without a timestamp: the log's own signature does not depend on a third party.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from chronoml.domain import note
from chronoml.evidence.keys import SigningKey, ensure_key_file
from chronoml.evidence.timestamps import Authority, TimestampError, beside
from chronoml.monitor import outbox
from chronoml.monitor.leader import Leadership
from chronoml.settings import Settings
from chronoml.store import Store
from chronoml.store import checkpoints as SC
from chronoml.store import evidence as SE
from chronoml.store.database import Tx
from chronoml.timeutil import iso, now_us
from chronoml.worker import Worker

TIME_PREFIX = "time "
# A checkpoint sent to an authority says so inside the note it signs, so a timestamp
# deleted from the store later is named by ``audit verify`` (the note says there was one).
TIMESTAMPED = "timestamp rfc3161"
log = logging.getLogger("chronoml.evidence")


@dataclass(frozen=True)
class Issued:
    """A checkpoint just signed: its parsed form and the note as published."""

    checkpoint: note.Checkpoint
    note: str
    created_at: int
    path: Path | None = None
    id: int | None = None  # its number in the store
    timestamp: bytes | None = None  # the authority's DER TimeStampResp over the note
    deliveries: tuple[int, ...] = ()  # outbox ids of its webhooks
    timestamp_error: str | None = None  # why the authority gave none

    def to_dict(self) -> dict[str, object]:
        """JSON form (the note as text, the timestamp as base64); what webhooks receive."""
        return {
            **self.checkpoint.to_dict(),
            "id": self.id,
            "created_at": iso(self.created_at),
            "note": self.note,
            "timestamp": base64.b64encode(self.timestamp).decode() if self.timestamp else None,
            "path": str(self.path) if self.path is not None else None,
        }


def origin(store: Store) -> str:
    """The log's origin line (its name in every checkpoint)."""
    with store.read() as conn:
        return SE.head_in(conn).origin


def signing_key(settings: Settings, store: Store) -> tuple[SigningKey, bool]:
    """The store's signing key, created (0600) on first use; returns (key, created)."""
    return ensure_key_file(settings.signing_key_path, origin(store))


def issue(
    store: Store,
    key: SigningKey,
    now: int | None = None,
    *,
    authority: Authority | None = None,
    webhooks: Sequence[str] = (),
) -> Issued:
    """Sign a checkpoint of the log as it is now and record it in the store, with its
    timestamp (from ``authority``) and its webhook deliveries (to ``webhooks``)."""
    t = now_us() if now is None else now
    with store.read() as conn:
        head = SE.head_in(conn)
    cp = note.Checkpoint(head.origin, head.size, head.root, (f"{TIME_PREFIX}{iso(t)}",))
    stamp: bytes | None = None
    why: str | None = None
    if authority is not None:
        claimed = replace(cp, extensions=(*cp.extensions, TIMESTAMPED))
        signed = key.sign_checkpoint(claimed)
        try:
            stamp = authority.stamp(signed.encode("utf-8"))
            cp = claimed
        except TimestampError as exc:
            why = exc.message
            log.warning("checkpoint of size %d has no timestamp: %s", cp.size, why)
    if stamp is None:  # no authority, or none answered: the note claims no timestamp
        signed = key.sign_checkpoint(cp)
    draft = Issued(cp, signed, t, timestamp=stamp, timestamp_error=why)

    def record(conn: Tx) -> Issued:
        cid = SC.add_checkpoint(conn, cp.size, cp.root_hash, t, signed)
        if stamp is not None and authority is not None:
            SC.add_timestamp(conn, cid, authority.url, stamp, t)
        body = json.dumps(
            {k: v for k, v in replace(draft, id=cid).to_dict().items() if k != "path"},
            sort_keys=True,
        ).encode()
        ids = tuple(outbox.enqueue(conn, url, body, now=t) for url in webhooks)
        return replace(draft, id=cid, deliveries=ids)

    return store.write_retrying(record, "the checkpoint")


def _atomic_write(path: Path, content: str | bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".cp-")
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_stamp(issued: Issued, note_path: Path) -> None:
    # a stale timestamp beside a newer note would read as a forged one
    if issued.timestamp is not None:
        _atomic_write(beside(note_path), issued.timestamp)
    else:
        beside(note_path).unlink(missing_ok=True)


def publish(issued: Issued, directory: Path) -> Path:
    """Write the checkpoint into ``directory`` as ``<size>-<time>.txt`` and ``latest.txt``,
    each with its timestamp beside it (``.tsr``) when it has one."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{issued.checkpoint.size:012d}-{issued.created_at}.txt"
    target = directory / name
    for path in (target, directory / "latest.txt"):
        _write_stamp(issued, path)
        _atomic_write(path, issued.note)
    return target


def write(issued: Issued, out: Path) -> Path:
    """Write the checkpoint note to the file ``out`` (and its timestamp to ``out.tsr``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_stamp(issued, out)
    _atomic_write(out, issued.note)
    return out


class CheckpointWorker(Worker):
    """Signs a checkpoint every interval while the log has grown, and publishes it.

    One process per store does it (:class:`Leadership` ``checkpoints``): with
    ``--workers N`` or replicas, each would otherwise sign, timestamp and post
    its own copy of every checkpoint.
    """

    def __init__(
        self,
        store: Store,
        key: SigningKey,
        interval_s: float,
        directory: Path | None = None,
        *,
        authority: Authority | None = None,
        webhooks: Sequence[str] = (),
        on_enqueue: Callable[[], None] | None = None,
    ) -> None:
        super().__init__("chronoml-checkpoints", self._step, interval_s)
        self.store = store
        self.key = key
        self.directory = directory
        self.authority = authority
        self.webhooks = tuple(webhooks)
        self.on_enqueue = on_enqueue  # wakes the outbox after a checkpoint with webhooks
        self.last: Issued | None = None
        self.leader = Leadership(store, "checkpoints")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the pass in flight, and let another process lead."""
        super().stop(timeout_s)
        self.leader.release()

    def _step(self) -> bool:
        if not self.leader.held():  # another process signs this store's checkpoints
            return False
        with self.store.read() as conn:
            size = SE.head_in(conn).size
            latest = SC.latest_checkpoint(conn)
        if latest is not None and latest[1] == size and self.last is not None:
            return False  # nothing new to sign
        issued = issue(self.store, self.key, authority=self.authority, webhooks=self.webhooks)
        if issued.deliveries and self.on_enqueue is not None:
            self.on_enqueue()
        if self.directory is not None:
            issued = replace(issued, path=publish(issued, self.directory))
        self.last = issued
        return False
