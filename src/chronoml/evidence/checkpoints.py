"""Signed checkpoints of the evidence log: make them, keep them, publish them.

A checkpoint is the log's origin, its size and root, and the time, in the
C2SP ``tlog-checkpoint`` form signed as a C2SP note with the store's Ed25519
key. The store keeps every checkpoint it issued; the ones that matter to an
auditor are the copies published outside it (a directory, or whatever the
auditor saved from ``chronoml audit checkpoint``), since an insider can edit
the store's copy but cannot sign a new one without the key.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from chronoml.domain import note
from chronoml.evidence.keys import SigningKey, ensure_key_file
from chronoml.settings import Settings
from chronoml.store import Store
from chronoml.store import checkpoints as SC
from chronoml.store import evidence as SE
from chronoml.timeutil import iso, now_us
from chronoml.worker import Worker

TIME_PREFIX = "time "


@dataclass(frozen=True)
class Issued:
    """A checkpoint just signed: its parsed form and the note as published."""

    checkpoint: note.Checkpoint
    note: str
    created_at: int
    path: Path | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON form (the note as text)."""
        return {
            **self.checkpoint.to_dict(),
            "created_at": iso(self.created_at),
            "note": self.note,
            "path": str(self.path) if self.path is not None else None,
        }


def origin(store: Store) -> str:
    """The log's origin line (its name in every checkpoint)."""
    with store.read() as conn:
        return SE.head_in(conn).origin


def signing_key(settings: Settings, store: Store) -> tuple[SigningKey, bool]:
    """The store's signing key, created (0600) on first use; returns (key, created)."""
    return ensure_key_file(settings.signing_key_path, origin(store))


def issue(store: Store, key: SigningKey, now: int | None = None) -> Issued:
    """Sign a checkpoint of the log as it is now and record it in the store."""
    t = now_us() if now is None else now
    with store.read() as conn:
        head = SE.head_in(conn)
    cp = note.Checkpoint(head.origin, head.size, head.root, (f"{TIME_PREFIX}{iso(t)}",))
    signed = key.sign_checkpoint(cp)
    store.write_retrying(
        lambda conn: SC.add_checkpoint(conn, cp.size, cp.root_hash, t, signed), "the checkpoint"
    )
    return Issued(cp, signed, t)


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".cp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def publish(issued: Issued, directory: Path) -> Path:
    """Write the checkpoint into ``directory`` as ``<size>-<time>.txt`` and ``latest.txt``."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{issued.checkpoint.size:012d}-{issued.created_at}.txt"
    target = directory / name
    _atomic_write(target, issued.note)
    _atomic_write(directory / "latest.txt", issued.note)
    return target


def write(issued: Issued, out: Path) -> Path:
    """Write the checkpoint note to the file ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(out, issued.note)
    return out


class CheckpointWorker(Worker):
    """Signs a checkpoint every interval while the log has grown, and publishes it."""

    def __init__(
        self, store: Store, key: SigningKey, interval_s: float, directory: Path | None = None
    ) -> None:
        super().__init__("chronoml-checkpoints", self._step, interval_s)
        self.store = store
        self.key = key
        self.directory = directory
        self.last: Issued | None = None

    def _step(self) -> bool:
        with self.store.read() as conn:
            size = SE.head_in(conn).size
            latest = SC.latest_checkpoint(conn)
        if latest is not None and latest[1] == size and self.last is not None:
            return False  # nothing new to sign
        issued = issue(self.store, self.key)
        if self.directory is not None:
            issued = Issued(
                issued.checkpoint, issued.note, issued.created_at, publish(issued, self.directory)
            )
        self.last = issued
        return False
