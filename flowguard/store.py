"""The service's SQLite database: verdicts, decisions, analysts' feedback and the allowlist.

    store = Store("flowguard-data/flowguard.db")     # creates or migrates it
    ids = store.add_verdicts(verdicts, source="sensor-1")
    store.active(now)                               # the decisions a firewall should hold

WAL journal with `synchronous=FULL`: a write is on disk when its method returns, so an acknowledged
verdict survives the process being killed (or the machine losing power). One connection behind a
lock serves every thread. Times are kept as Unix seconds (REAL) and come back as aware UTC datetimes.

The schema is versioned: `schema_version` holds how many of MIGRATIONS have run; opening a database
made by a newer flowguard raises StoreError instead of guessing.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flowguard.decisions import Decision
from flowguard.errors import StoreError
from flowguard.triage import FlowVerdict

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE verdicts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        received_at REAL NOT NULL,
        source TEXT NOT NULL,
        pcap TEXT NOT NULL,
        src_ip TEXT NOT NULL,
        src_port INTEGER NOT NULL,
        dst_ip TEXT NOT NULL,
        dst_port INTEGER NOT NULL,
        protocol INTEGER NOT NULL,
        first_seen_ms INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL,
        packets INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        application_name TEXT NOT NULL,
        verdict TEXT NOT NULL,
        score REAL NOT NULL,
        scores TEXT NOT NULL,
        model TEXT NOT NULL,
        UNIQUE (src_ip, src_port, dst_ip, dst_port, protocol, first_seen_ms, last_seen_ms, pcap, model)
    );
    CREATE INDEX verdicts_by_verdict ON verdicts (verdict, id);
    CREATE INDEX verdicts_by_src ON verdicts (src_ip, id);
    CREATE INDEX verdicts_by_dst ON verdicts (dst_ip, id);
    CREATE INDEX verdicts_by_last_seen ON verdicts (last_seen_ms);

    CREATE TABLE decisions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        value TEXT NOT NULL,
        scenario TEXT NOT NULL,
        origin TEXT NOT NULL,
        type TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        verdict_id INTEGER REFERENCES verdicts (id),
        last_verdict_id INTEGER REFERENCES verdicts (id),
        score REAL,
        dry_run INTEGER NOT NULL DEFAULT 0,
        revoked_at REAL,
        end_reason TEXT
    );
    CREATE INDEX decisions_open_by_value ON decisions (value) WHERE revoked_at IS NULL;
    CREATE INDEX decisions_open_by_expiry ON decisions (expires_at) WHERE revoked_at IS NULL;

    CREATE TABLE decision_changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        decision_id INTEGER NOT NULL REFERENCES decisions (id),
        at REAL NOT NULL
    );
    CREATE TABLE bouncers (
        key_hash TEXT PRIMARY KEY,
        last_seq INTEGER NOT NULL,
        last_pull REAL NOT NULL
    );

    CREATE TABLE feedback (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        verdict_id INTEGER NOT NULL REFERENCES verdicts (id),
        label TEXT NOT NULL,
        true_class TEXT NOT NULL,
        note TEXT NOT NULL,
        analyst TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX feedback_by_verdict ON feedback (verdict_id);

    CREATE TABLE allowlist (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        cidr TEXT NOT NULL UNIQUE,
        note TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    """,
)
"""Each entry brings the schema one version up; never edit one that has shipped, append another."""

SCHEMA_VERSION = len(MIGRATIONS)
_VERDICT_COLUMNS = (
    "pcap", "src_ip", "src_port", "dst_ip", "dst_port", "protocol", "first_seen_ms", "last_seen_ms",
    "packets", "bytes", "application_name", "verdict", "score", "scores", "model",
)
_FLOW_KEY = ("src_ip", "src_port", "dst_ip", "dst_port", "protocol", "first_seen_ms", "last_seen_ms",
             "pcap", "model")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def _dt(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc)


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


@dataclass(frozen=True)
class StoredVerdict:
    """A verdict as the store holds it: the flow verdict, its id, when and from whom it came."""

    id: int
    received_at: datetime
    source: str
    flow: FlowVerdict

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "received_at": self.received_at.isoformat(), "source": self.source,
                **self.flow.to_dict()}


@dataclass(frozen=True)
class DecisionRecord:
    """A decision with what the store knows beyond `Decision`: dry-run, last change, how it ended."""

    decision: Decision
    dry_run: bool
    updated_at: datetime
    last_verdict_id: int | None
    revoked_at: datetime | None
    end_reason: str | None

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and not self.decision.expired(now)


@dataclass(frozen=True)
class Feedback:
    id: int
    verdict_id: int
    label: str
    true_class: str
    note: str
    analyst: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "verdict_id": self.verdict_id, "label": self.label,
                "true_class": self.true_class, "note": self.note, "analyst": self.analyst,
                "created_at": self.created_at.isoformat()}


@dataclass(frozen=True)
class AllowEntry:
    id: int
    cidr: str
    note: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "cidr": self.cidr, "note": self.note,
                "created_at": self.created_at.isoformat(), "source": "api"}


@dataclass(frozen=True)
class FeedState:
    """What the pull lists depend on: the last change, when the next active decision expires, and
    the time the list last changed (a change or an expiry)."""

    seq: int
    next_expiry: datetime | None
    last_modified: datetime | None


class Store:
    """Thread-safe access to the database; every method is one transaction."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(path), check_same_thread=False, isolation_level=None, timeout=30
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{path}: cannot open the database ({exc})") from exc
        self._lock = threading.RLock()
        self._depth = 0
        self.writes = 0
        """Write transactions this Store has committed: a cheap, lock-free sign of change for
        caches (the service is the database's only writer)."""
        self._db.row_factory = sqlite3.Row
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"{path}: not a flowguard database or unreadable ({exc})") from exc

    # -- plumbing ---------------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self._tx() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else 0
            if row is None:
                db.execute("INSERT INTO schema_version (version) VALUES (0)")
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: schema version {version} is newer than this flowguard knows "
                    f"({SCHEMA_VERSION}); upgrade flowguard"
                )
            for number in range(version, SCHEMA_VERSION):
                for statement in _statements(MIGRATIONS[number]):
                    db.execute(statement)
                db.execute("UPDATE schema_version SET version = ?", (number + 1,))

    class _Tx:
        """One transaction under the store's lock; nested ones join the outer one (see transaction)."""

        def __init__(self, store: Store, write: bool) -> None:
            self.store, self.write = store, write

        def __enter__(self) -> sqlite3.Connection:
            store = self.store
            store._lock.acquire()
            if store._depth == 0:
                try:
                    store._db.execute("BEGIN IMMEDIATE" if self.write else "BEGIN")
                except BaseException:
                    store._lock.release()
                    raise
            store._depth += 1
            return store._db

        def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
            store = self.store
            store._depth -= 1
            try:
                if store._depth == 0:
                    try:
                        store._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
                    except sqlite3.Error as failed:
                        # a COMMIT that failed (a full disk) leaves the transaction open: end it, or
                        # every later BEGIN on this connection fails too
                        if store._db.in_transaction:
                            with suppress(sqlite3.Error):
                                store._db.execute("ROLLBACK")
                        raise _failure(store.path, failed) from failed
                    if self.write and exc_type is None:
                        store.writes += 1
                if isinstance(exc, sqlite3.OperationalError):
                    raise _failure(store.path, exc) from exc
            finally:
                store._lock.release()

    def _tx(self, write: bool = True) -> Store._Tx:
        return Store._Tx(self, write)

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """Make several calls one write transaction (one commit, one fsync); other threads wait.

            with store.transaction():
                store.add_decision(...); store.extend_decision(...)
        """
        return Store._Tx(self, write=True)

    @property
    def schema_version(self) -> int:
        with self._tx(write=False) as db:
            return int(db.execute("SELECT version FROM schema_version").fetchone()[0])

    @property
    def journal_mode(self) -> str:
        with self._lock:
            return str(self._db.execute("PRAGMA journal_mode").fetchone()[0])

    def ping(self) -> None:
        """Raise StoreError unless the database answers."""
        try:
            with self._tx(write=False) as db:
                db.execute("SELECT count(*) FROM schema_version").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- verdicts ---------------------------------------------------------------------------------

    def add_verdicts(
        self, verdicts: Sequence[FlowVerdict], source: str, now: datetime | None = None
    ) -> list[int]:
        """Store a batch in one transaction; the ids, in order. A flow verdict already stored (same
        flow, window, capture and model) is not stored twice: its existing id comes back."""
        received = _ts(now or utcnow())
        insert = (
            f"INSERT INTO verdicts (received_at, source, {', '.join(_VERDICT_COLUMNS)}) "
            f"VALUES ({', '.join('?' * (len(_VERDICT_COLUMNS) + 2))}) "
            "ON CONFLICT DO NOTHING RETURNING id"
        )
        lookup = f"SELECT id FROM verdicts WHERE {' AND '.join(f'{c} = ?' for c in _FLOW_KEY)}"
        ids = []
        with self._tx() as db:
            for v in verdicts:
                row = db.execute(insert, (received, source, *_verdict_values(v))).fetchone()
                if row is None:
                    row = db.execute(lookup, [getattr(v, c) for c in _FLOW_KEY]).fetchone()
                ids.append(int(row[0]))
        return ids

    def verdict(self, verdict_id: int) -> StoredVerdict | None:
        with self._tx(write=False) as db:
            row = db.execute("SELECT * FROM verdicts WHERE id = ?", (verdict_id,)).fetchone()
        return _verdict(row) if row else None

    def verdicts(
        self,
        verdict: str | None = None,
        ip: str | None = None,
        since_ms: int | None = None,
        min_score: float | None = None,
        limit: int = 100,
        offset: int = 0,
        after_id: int | None = None,
        descending: bool = True,
    ) -> list[StoredVerdict]:
        """Verdicts matching every filter given, by id (newest first unless `descending=False`).

        ip: source or destination address; since_ms: flows seen at or after (last_seen_ms);
        after_id: continue a listing after this id (in the listing's order), instead of offset.
        """
        where: list[str] = []
        args: list[Any] = []
        if verdict is not None:
            where.append("verdict = ?")
            args.append(verdict)
        if ip is not None:
            where.append("(src_ip = ? OR dst_ip = ?)")
            args += [ip, ip]
        if since_ms is not None:
            where.append("last_seen_ms >= ?")
            args.append(since_ms)
        if min_score is not None:
            where.append("score >= ?")
            args.append(min_score)
        if after_id is not None:
            where.append("id < ?" if descending else "id > ?")
            args.append(after_id)
        sql = "SELECT * FROM verdicts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY id {'DESC' if descending else 'ASC'} LIMIT ? OFFSET ?"
        with self._tx(write=False) as db:
            rows = db.execute(sql, (*args, limit, offset)).fetchall()
        return [_verdict(r) for r in rows]

    def count_verdicts(self) -> int:
        with self._tx(write=False) as db:
            return int(db.execute("SELECT count(*) FROM verdicts").fetchone()[0])

    # -- feedback ---------------------------------------------------------------------------------

    def add_feedback(
        self, verdict_id: int, label: str, true_class: str, note: str = "", analyst: str = "",
        now: datetime | None = None,
    ) -> Feedback | None:
        """Record an analyst's judgement of a verdict; None when there is no such verdict."""
        created = _ts(now or utcnow())
        with self._tx() as db:
            if db.execute("SELECT 1 FROM verdicts WHERE id = ?", (verdict_id,)).fetchone() is None:
                return None
            cur = db.execute(
                "INSERT INTO feedback (verdict_id, label, true_class, note, analyst, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (verdict_id, label, true_class, note, analyst, created),
            )
            feedback_id = int(cur.lastrowid or 0)
        return Feedback(feedback_id, verdict_id, label, true_class, note, analyst, _at(created))

    def feedback_for(self, verdict_id: int) -> list[Feedback]:
        with self._tx(write=False) as db:
            rows = db.execute(
                "SELECT * FROM feedback WHERE verdict_id = ? ORDER BY id", (verdict_id,)
            ).fetchall()
        return [_feedback(r) for r in rows]

    def export_feedback(self) -> Iterator[dict[str, Any]]:
        """For training: each feedback with its verdict's fields and the class the analyst gave."""
        with self._tx(write=False) as db:
            rows = db.execute(
                "SELECT f.id AS feedback_id, f.label, f.true_class, f.note, f.analyst, "
                "f.created_at AS feedback_at, v.* FROM feedback f JOIN verdicts v ON v.id = f.verdict_id "
                "ORDER BY f.id"
            ).fetchall()
        for row in rows:
            record = _verdict(row).to_dict()
            record["verdict_id"] = record.pop("id")
            record.update(feedback_id=row["feedback_id"], label=row["label"], true_class=row["true_class"],
                          note=row["note"], analyst=row["analyst"],
                          feedback_at=_at(row["feedback_at"]).isoformat())
            yield record

    # -- decisions --------------------------------------------------------------------------------

    def open_decision(self, value: str) -> DecisionRecord | None:
        """The decision on `value` not yet ended (it may have expired since the last expiry run)."""
        with self._tx(write=False) as db:
            row = db.execute(
                "SELECT * FROM decisions WHERE value = ? AND revoked_at IS NULL ORDER BY id DESC LIMIT 1",
                (value,),
            ).fetchone()
        return _record(row) if row else None

    def add_decision(
        self, value: str, scenario: str, expires_at: datetime, now: datetime,
        verdict_id: int | None = None, score: float | None = None, origin: str = "flowguard",
        dry_run: bool = False,
    ) -> DecisionRecord:
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO decisions (value, scenario, origin, type, created_at, expires_at, updated_at, "
                "verdict_id, last_verdict_id, score, dry_run) VALUES (?, ?, ?, 'ban', ?, ?, ?, ?, ?, ?, ?)",
                (value, scenario, origin, _ts(now), _ts(expires_at), _ts(now), verdict_id, verdict_id,
                 score, int(dry_run)),
            )
            decision_id = int(cur.lastrowid or 0)
            _changed(db, decision_id, _ts(now))
            row = db.execute("SELECT * FROM decisions WHERE id = ?", (decision_id,)).fetchone()
        return _record(row)

    def extend_decision(
        self, decision_id: int, expires_at: datetime, now: datetime,
        verdict_id: int | None = None, score: float | None = None, enforce: bool = False,
    ) -> DecisionRecord:
        """Push an open decision's expiry to `expires_at` (never earlier); `enforce` ends dry-run."""
        with self._tx() as db:
            db.execute(
                "UPDATE decisions SET expires_at = max(expires_at, ?), updated_at = ?, "
                "last_verdict_id = coalesce(?, last_verdict_id), score = max(coalesce(score, 0), ?), "
                "dry_run = CASE WHEN ? THEN 0 ELSE dry_run END WHERE id = ?",
                (_ts(expires_at), _ts(now), verdict_id, score or 0.0, int(enforce), decision_id),
            )
            _changed(db, decision_id, _ts(now))
            row = db.execute("SELECT * FROM decisions WHERE id = ?", (decision_id,)).fetchone()
        return _record(row)

    def active(self, now: datetime | None = None, dry_run: bool = False) -> list[Decision]:
        """The decisions in force at `now` (the dry-run ones instead, with dry_run=True)."""
        return [r.decision for r in self.decisions(now, dry_run=dry_run)]

    def decisions(
        self, now: datetime | None = None, dry_run: bool | None = False, value: str | None = None,
        active_only: bool = True, decision_id: int | None = None,
    ) -> list[DecisionRecord]:
        """Decision records, newest first: active at `now` unless active_only=False; enforced ones
        (dry_run=False), dry-run ones (True) or both (None)."""
        where: list[str] = []
        args: list[Any] = []
        if active_only:
            where.append("revoked_at IS NULL AND expires_at > ?")
            args.append(_ts(now or utcnow()))
        if dry_run is not None:
            where.append("dry_run = ?")
            args.append(int(dry_run))
        if value is not None:
            where.append("value = ?")
            args.append(value)
        if decision_id is not None:
            where.append("id = ?")
            args.append(decision_id)
        sql = "SELECT * FROM decisions" + (" WHERE " + " AND ".join(where) if where else "")
        with self._tx(write=False) as db:
            rows = db.execute(sql + " ORDER BY id DESC", args).fetchall()
        return [_record(r) for r in rows]

    def count_active(self, now: datetime | None = None) -> dict[bool, int]:
        """Active decisions by dry-run flag."""
        with self._tx(write=False) as db:
            rows = db.execute(
                "SELECT dry_run, count(*) FROM decisions WHERE revoked_at IS NULL AND expires_at > ? "
                "GROUP BY dry_run", (_ts(now or utcnow()),)
            ).fetchall()
        counts = {False: 0, True: 0}
        for dry, n in rows:
            counts[bool(dry)] = int(n)
        return counts

    def created_since(self, since: datetime) -> list[datetime]:
        """Creation times of decisions made by the policy at or after `since` (for the rate limit)."""
        with self._tx(write=False) as db:
            rows = db.execute(
                "SELECT created_at FROM decisions WHERE origin = 'flowguard' AND created_at >= ? "
                "ORDER BY created_at", (_ts(since),)
            ).fetchall()
        return [_at(r[0]) for r in rows]

    def expire(self, now: datetime | None = None) -> list[DecisionRecord]:
        """End the decisions whose time is up; the records just ended."""
        moment = _ts(now or utcnow())
        with self._tx() as db:
            rows = db.execute(
                "UPDATE decisions SET revoked_at = expires_at, end_reason = 'expired', updated_at = ? "
                "WHERE revoked_at IS NULL AND expires_at <= ? RETURNING *", (moment, moment)
            ).fetchall()
            db.executemany("INSERT INTO decision_changes (decision_id, at) VALUES (?, ?)",
                           [(r["id"], moment) for r in rows])
        return [_record(r) for r in rows]

    def revoke(
        self, decision_ids: Sequence[int], now: datetime | None = None, reason: str = "revoked"
    ) -> list[DecisionRecord]:
        """End open decisions before their time; the records just ended (unknown or ended ids are
        skipped)."""
        moment = _ts(now or utcnow())
        ended = []
        with self._tx() as db:
            for decision_id in decision_ids:
                row = db.execute(
                    "UPDATE decisions SET revoked_at = ?, end_reason = ?, updated_at = ? "
                    "WHERE id = ? AND revoked_at IS NULL RETURNING *",
                    (moment, reason, moment, decision_id),
                ).fetchone()
                if row is not None:
                    _changed(db, decision_id, moment)
                    ended.append(_record(row))
        return ended

    def changes_since(
        self, seq: int, now: datetime | None = None
    ) -> tuple[list[Decision], list[Decision], int]:
        """(new, deleted, last seq): enforced decisions changed after change number `seq`, split by
        whether they are in force at `now`. A value both deleted and new is only in new."""
        with self._tx(write=False) as db:
            return self._changes(db, seq, _ts(now or utcnow()))

    def _changes(
        self, db: sqlite3.Connection, seq: int, now: float
    ) -> tuple[list[Decision], list[Decision], int]:
        last = int(db.execute("SELECT coalesce(max(seq), 0) FROM decision_changes").fetchone()[0])
        rows = db.execute(
            "SELECT d.* FROM decisions d WHERE d.dry_run = 0 AND d.id IN "
            "(SELECT decision_id FROM decision_changes WHERE seq > ?) ORDER BY d.id", (seq,)
        ).fetchall()
        new: list[Decision] = []
        deleted: list[Decision] = []
        for row in rows:
            record = _record(row)
            live = record.revoked_at is None and row["expires_at"] > now
            (new if live else deleted).append(record.decision)
        values = {d.value for d in new}
        return new, [d for d in deleted if d.value not in values], last

    def stream(
        self, bouncer: str, startup: bool, now: datetime | None = None
    ) -> tuple[list[Decision], list[Decision]]:
        """CrowdSec's decisions stream for one bouncer (by key digest): every active decision at
        startup (or on its first call), later what changed since its previous call."""
        moment = _ts(now or utcnow())
        with self._tx() as db:
            row = db.execute("SELECT last_seq FROM bouncers WHERE key_hash = ?", (bouncer,)).fetchone()
            if startup or row is None:
                active = db.execute(
                    "SELECT * FROM decisions WHERE dry_run = 0 AND revoked_at IS NULL AND expires_at > ? "
                    "ORDER BY id", (moment,)
                ).fetchall()
                new = [_record(r).decision for r in active]
                deleted: list[Decision] = []
                last = int(db.execute("SELECT coalesce(max(seq), 0) FROM decision_changes").fetchone()[0])
            else:
                new, deleted, last = self._changes(db, int(row[0]), moment)
            db.execute(
                "INSERT INTO bouncers (key_hash, last_seq, last_pull) VALUES (?, ?, ?) "
                "ON CONFLICT (key_hash) DO UPDATE SET last_seq = excluded.last_seq, "
                "last_pull = excluded.last_pull",
                (bouncer, last, moment),
            )
        return new, deleted

    def change_seq(self) -> int:
        """The number of the latest decision change (0 when none)."""
        with self._tx(write=False) as db:
            return int(db.execute("SELECT coalesce(max(seq), 0) FROM decision_changes").fetchone()[0])

    def feed_state(self, now: datetime | None = None) -> FeedState:
        """What decides whether a cached pull list is still right (see FeedState)."""
        moment = _ts(now or utcnow())
        with self._tx(write=False) as db:
            seq, changed = db.execute(
                "SELECT coalesce(max(seq), 0), max(at) FROM decision_changes"
            ).fetchone()
            (next_expiry,) = db.execute(
                "SELECT min(expires_at) FROM decisions WHERE revoked_at IS NULL AND dry_run = 0 "
                "AND expires_at > ?", (moment,)
            ).fetchone()
            (lapsed,) = db.execute(
                "SELECT max(expires_at) FROM decisions WHERE revoked_at IS NULL AND dry_run = 0 "
                "AND expires_at <= ?", (moment,)
            ).fetchone()
        last = max((t for t in (changed, lapsed) if t is not None), default=None)
        return FeedState(int(seq), _dt(next_expiry), _dt(last))

    # -- allowlist --------------------------------------------------------------------------------

    def allowlist(self) -> list[AllowEntry]:
        with self._tx(write=False) as db:
            rows = db.execute("SELECT * FROM allowlist ORDER BY id").fetchall()
        return [AllowEntry(r["id"], r["cidr"], r["note"], _at(r["created_at"])) for r in rows]

    def add_allow(self, cidr: str, note: str = "", now: datetime | None = None) -> tuple[AllowEntry, bool]:
        """Add a CIDR (already normalised); (entry, True) if new, (entry, False) if it was there
        (its note is then updated)."""
        created = _ts(now or utcnow())
        with self._tx() as db:
            row = db.execute(
                "INSERT INTO allowlist (cidr, note, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (cidr) DO NOTHING RETURNING *", (cidr, note, created)
            ).fetchone()
            fresh = row is not None
            if row is None:
                row = db.execute(
                    "UPDATE allowlist SET note = ? WHERE cidr = ? RETURNING *", (note, cidr)
                ).fetchone()
        return AllowEntry(row["id"], row["cidr"], row["note"], _at(row["created_at"])), fresh

    def remove_allow(self, cidr: str) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM allowlist WHERE cidr = ?", (cidr,)).rowcount > 0


class DiskFullError(StoreError):
    """The disk holding the database is full: the write that failed was not stored."""


def _failure(path: Path, exc: sqlite3.Error) -> StoreError:
    """A StoreError saying what went wrong with the database (DiskFullError for a full disk)."""
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc):
        return DiskFullError(
            f"{path}: cannot write the database, its disk is full ({exc}): this write was not "
            "stored; free space on that disk and retry"
        )
    return StoreError(f"{path}: the database failed: {exc}")


def _changed(db: sqlite3.Connection, decision_id: int, at: float) -> None:
    """Log a change to a decision, for the CrowdSec stream and the pull lists' validators."""
    db.execute("INSERT INTO decision_changes (decision_id, at) VALUES (?, ?)", (decision_id, at))


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration, so each runs inside the migration's transaction."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer.strip()
            buffer = ""
    if buffer.strip():
        yield buffer.strip()


def _verdict_values(v: FlowVerdict) -> list[Any]:
    values: list[Any] = [getattr(v, c) for c in _VERDICT_COLUMNS]
    values[_VERDICT_COLUMNS.index("scores")] = json.dumps(v.scores, separators=(",", ":"))
    return values


def _verdict(row: sqlite3.Row) -> StoredVerdict:
    fields = {c: row[c] for c in _VERDICT_COLUMNS}
    fields["scores"] = json.loads(row["scores"])
    return StoredVerdict(int(row["id"]), _at(row["received_at"]), row["source"], FlowVerdict(**fields))


def _feedback(row: sqlite3.Row) -> Feedback:
    return Feedback(row["id"], row["verdict_id"], row["label"], row["true_class"], row["note"],
                    row["analyst"], _at(row["created_at"]))


def _record(row: sqlite3.Row) -> DecisionRecord:
    decision = Decision(
        id=int(row["id"]), value=row["value"], scenario=row["scenario"],
        created_at=_at(row["created_at"]), expires_at=_at(row["expires_at"]),
        verdict_id=row["verdict_id"], score=row["score"], origin=row["origin"], type=row["type"],
    )
    return DecisionRecord(decision, bool(row["dry_run"]), _at(row["updated_at"]), row["last_verdict_id"],
                          _dt(row["revoked_at"]), row["end_reason"])
