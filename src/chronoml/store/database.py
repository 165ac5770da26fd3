"""The one object that owns chronoml's database connections.

SQLite (the embedded default) runs in WAL mode with ``synchronous=FULL``:
a commit is on disk when it returns. Write transactions take SQLite's write
lock up front (``BEGIN IMMEDIATE``) so two writers never both read a stale
ledger head; on PostgreSQL the head row is locked with ``FOR UPDATE``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, inspect, select, text
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from chronoml.domain.snapshot import Snapshot
from chronoml.errors import StoreError
from chronoml.store import id_types, schema

# The Alembic revision this code expects; tests check it matches the scripts.
HEAD_REVISION = "0022"

MIGRATIONS = Path(__file__).parent / "migrations"


RETRIES = 50
T = TypeVar("T")

# A transaction's connection, handed to code that writes several things atomically
# (an alert's state, its ledger event and its webhooks). Only store/ runs SQL on it.
Tx = Connection


def is_busy(exc: OperationalError) -> bool:
    """Whether a failed statement lost a race with another writer (worth a retry)."""
    text = str(exc.orig).lower()
    return "lock" in text or "serializ" in text or "busy" in text


class Store:
    """chronoml's database: ledger, snapshots, decisions.

    Construct with :meth:`open`; nothing is created or migrated implicitly:
    run :meth:`upgrade` (``chronoml db upgrade``) for that.
    """

    def __init__(self, engine: Engine, home: Path) -> None:
        self.engine = engine
        self.home = home
        self.is_sqlite = engine.dialect.name == "sqlite"
        # Parsed ledger events by seq. An event never changes once written
        # (triggers refuse UPDATE and DELETE), so a cached copy stays true.
        self.events: dict[int, Any] = {}
        # Parsed endpoint states by the seq of the event that set them (as immutable).
        self.states: dict[int, Any] = {}
        self.closed = False
        # PostgreSQL lookups get a pool of their own, in autocommit from the
        # start: no isolation switch and no reset when a connection returns.
        self.lookup_engine = engine if self.is_sqlite else _autocommit(engine, 4, 8)
        # Window reads hold a session advisory lock for their length (store.window_lock):
        # on connections of their own, so long reads never leave lookups waiting for one.
        self.lock_engine = engine if self.is_sqlite else _autocommit(engine, 2, 62)
        for eng in {engine, self.lookup_engine, self.lock_engine}:
            event.listen(eng, "checkin", self._close_after_close)
            if not self.is_sqlite:
                event.listen(eng, "connect", _on_connect)

    def _close_after_close(self, dbapi_conn: Any, record: Any) -> None:
        # A thread still busy when the store closed gives its connection back
        # later: close it then, or it would stay open until garbage collection
        # (dispose only closes the connections in the pool).
        if self.closed and dbapi_conn is not None:
            record.invalidate()

    @classmethod
    def open(cls, url: str, home: Path) -> Store:
        if url.startswith("sqlite"):
            private_home(home, url.removeprefix("sqlite:///"))
            engine = create_engine(
                url,
                connect_args={"timeout": 30, "check_same_thread": False},
                pool_size=8,
                max_overflow=16,
            )
            _sqlite_pragmas(engine)
        else:
            # No pre-ping: it costs a round trip on every checkout. A connection
            # the server dropped fails its first statement instead, and that
            # disconnect invalidates every pooled connection opened before it,
            # so the next checkout reconnects (the gateway answers 503 once).
            engine = create_engine(url, pool_size=8, max_overflow=16, pool_recycle=1800)
        return cls(engine, home)

    def close(self) -> None:
        """Close every pooled connection, and each busy one when it comes back."""
        self.closed = True
        self.engine.dispose()
        for eng in {self.lookup_engine, self.lock_engine} - {self.engine}:
            eng.dispose()

    # --- transactions ------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction; on SQLite it holds the write lock from the start."""
        with self.engine.connect() as conn:
            if self.is_sqlite:
                conn.execution_options(sqlite_begin="BEGIN IMMEDIATE")
            with conn.begin():
                yield conn

    def write_retrying(self, fn: Callable[[Connection], T], what: str = "the change") -> T:
        """Run ``fn`` in a write transaction, again if a concurrent writer got in first.

        The one retry loop of the store: a busy database (SQLite's lock, a
        PostgreSQL lock or serialization failure) or a unique key another
        writer just took (two replicas creating the same row) waits a little
        longer each time and tries again, 50 times at most; any other failure
        raises :class:`StoreError` naming ``what`` was being recorded.
        """
        for attempt in range(RETRIES):
            try:
                with self.write() as conn:
                    return fn(conn)
            except IntegrityError:
                time.sleep(0.01 * (attempt + 1))
            except OperationalError as exc:
                if is_busy(exc) and attempt < RETRIES - 1:
                    time.sleep(0.02 * (attempt + 1))
                    continue
                raise StoreError(f"cannot record {what}: {exc.orig}") from exc
        raise StoreError(f"could not record {what} after {RETRIES} attempts")

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction: every statement in it sees the same snapshot.

        PostgreSQL's default (READ COMMITTED) gives each statement a snapshot of its
        own, so two counts in one transaction could straddle a commit (a webhook
        neither pending nor delivered, or both; a window read twice across a
        compaction): reads run REPEATABLE READ and READ ONLY there. SQLite's read
        transaction holds one snapshot of the WAL from its first statement.
        """
        with self.engine.connect() as conn:
            if not self.is_sqlite:
                conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                yield conn

    @contextmanager
    def lookup(self) -> Iterator[Connection]:
        """A connection for reads of rows that never change once written.

        On PostgreSQL it runs in autocommit: no BEGIN and no ROLLBACK round
        trips around a one-row seek. Statements on it do not share a snapshot,
        so use :meth:`read` where they must agree (a window spanning
        compacted blocks and raw rows, say).
        """
        with self.lookup_engine.connect() as conn:
            yield conn

    def database_role(self) -> str | None:
        """The database user this store connects as (PostgreSQL), for the record."""
        if self.is_sqlite:
            return None
        with self.lookup() as conn:
            return str(conn.execute(text("SELECT current_user")).scalar_one())

    # --- schema ------------------------------------------------------------

    def revision(self) -> str | None:
        """The schema revision in the database, or None if it has none."""
        try:
            with self.engine.connect() as conn:
                if not inspect(conn).has_table("alembic_version"):
                    return None
                return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except OperationalError as exc:
            raise StoreError(f"cannot reach the store: {exc.orig}") from exc

    def check_schema(self) -> None:
        rev = self.revision()
        if rev != HEAD_REVISION:
            found = "no schema" if rev is None else f"schema revision {rev}"
            raise StoreError(
                f"the store has {found}, this chronoml needs {HEAD_REVISION}: "
                "run `chronoml db upgrade`"
            )

    def upgrade(self, revision: str = "head") -> str:
        """Apply migrations up to ``revision``; returns the revision reached."""
        self.home.mkdir(parents=True, exist_ok=True)
        return self._migrate("upgrade", revision)

    def downgrade(self, revision: str) -> str:
        """Undo migrations down to ``revision``; returns the revision reached."""
        return self._migrate("downgrade", revision)

    def _migrate(self, direction: str, revision: str) -> str:
        # lazy: the migration machinery loads only for a schema change
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            getattr(command, direction)(cfg, revision)
        # pooled connections' prepared statements keep the parameter types of the old
        # schema (an id compared as text): start from fresh connections
        self.engine.dispose()
        for eng in {self.lookup_engine, self.lock_engine} - {self.engine}:
            eng.dispose()
        id_types.forget(self.engine, self.lookup_engine)
        return self.revision() or "base"

    # --- snapshots ---------------------------------------------------------

    def put_snapshot(self, snap: Snapshot) -> Snapshot:
        """Record a snapshot; if its id is already recorded, return that one."""
        t = schema.snapshots
        with self.write() as conn:
            row = conn.execute(select(t).where(t.c.id == snap.id)).mappings().first()
            if row is not None:
                return _snapshot(row)
            conn.execute(
                t.insert().values(
                    id=snap.id,
                    name=snap.name,
                    rows=snap.rows,
                    columns=json.dumps([list(c) for c in snap.columns]),
                    created_at=snap.created_at,
                    path=snap.path,
                    actor=snap.actor,
                    lineage=json.dumps(dict(snap.lineage)) if snap.lineage is not None else None,
                )
            )
        return snap

    def get_snapshot(self, snapshot_id: str) -> Snapshot | None:
        t = schema.snapshots
        with self.read() as conn:
            row = conn.execute(select(t).where(t.c.id == snapshot_id)).mappings().first()
        return _snapshot(row) if row is not None else None

    def put_profile(
        self, digest: str, name: str, version: str, snapshot_id: str, data: bytes
    ) -> None:
        """Store a version's reference profile (once; a second call keeps the first)."""

        t = schema.profiles
        with self.write() as conn:
            if conn.execute(
                select(t.c.artifact_digest).where(t.c.artifact_digest == digest)
            ).first():
                return
            conn.execute(
                t.insert().values(
                    artifact_digest=digest,
                    model_name=name,
                    model_version=version,
                    snapshot_id=snapshot_id,
                    created_at=time.time_ns() // 1000,
                    data=data,
                )
            )

    def get_profile(self, digest: str) -> bytes | None:
        t = schema.profiles
        with self.read() as conn:
            return conn.execute(select(t.c.data).where(t.c.artifact_digest == digest)).scalar()

    def list_snapshots(self) -> list[Snapshot]:
        t = schema.snapshots
        with self.read() as conn:
            rows = conn.execute(select(t).order_by(t.c.created_at)).mappings().all()
        return [_snapshot(r) for r in rows]


def _snapshot(row: Any) -> Snapshot:
    return Snapshot(
        id=row["id"],
        name=row["name"],
        rows=row["rows"],
        created_at=row["created_at"],
        columns=tuple(tuple(c) for c in json.loads(row["columns"])),
        path=row["path"],
        actor=row.get("actor"),
        lineage=json.loads(row["lineage"]) if row.get("lineage") else None,
    )


def private_home(home: Path, *files: str | Path) -> None:
    """Make ``home`` (0700) and the database files in it (0600) private to their owner.

    A database file is created empty with mode 0600 before SQLite opens it;
    SQLite gives its WAL and shared-memory files the database file's mode.
    """
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    if home.stat().st_uid == os.getuid():
        os.chmod(home, 0o700)
    for f in files:
        path = Path(f)
        if path.parent != home and home not in path.parents:
            continue  # a database outside the home is its owner's business
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if p.exists() and p.stat().st_uid == os.getuid():
                os.chmod(p, 0o600)


def _on_connect(dbapi_conn: Any, _record: Any) -> None:
    id_types.register_loaders(dbapi_conn)
    # The driver prepares a statement run five times; PostgreSQL then may switch
    # to a generic plan, which over the decision log's day partitions locks and
    # prunes every partition on each run (3 ms with 370 partitions, against
    # 0.1 ms to plan the lookup afresh for the one partition it reads).
    dbapi_conn.execute("SET plan_cache_mode = force_custom_plan")
    if not dbapi_conn.autocommit:
        dbapi_conn.commit()


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # we issue BEGIN ourselves (below), so the driver must not
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN"))


def reachable(url: str) -> tuple[bool, str]:
    """Whether a database URL answers; the reason when it does not."""
    try:
        eng = create_engine(url)
        with eng.connect() as conn:
            conn.execute(text("SELECT 1"))
        eng.dispose()
        return True, ""
    except (OperationalError, ProgrammingError, ImportError) as exc:
        return False, str(exc).splitlines()[0]


def _autocommit(engine: Engine, pool_size: int, max_overflow: int) -> Engine:
    """A pool of its own on ``engine``'s database, in autocommit from the start (no
    isolation switch and no reset when a connection returns)."""
    return create_engine(
        engine.url,
        isolation_level="AUTOCOMMIT",
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_recycle=1800,
        pool_reset_on_return=None,
    )
