"""The service's SQLite store: durability, schema versions, decisions over time, threads."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from flowguard.errors import StoreError
from flowguard.store import SCHEMA_VERSION, Store
from flowguard.triage import FlowVerdict
from tests.servicekit import T0

REPO = Path(__file__).resolve().parents[1]


def verdict(n: int = 0, dst: str = "203.0.113.7", kind: str = "stratum_mining") -> FlowVerdict:
    return FlowVerdict(
        pcap="s.pcap", src_ip="10.0.0.5", src_port=40000 + n, dst_ip=dst, dst_port=3333, protocol=6,
        first_seen_ms=1_000 + n, last_seen_ms=2_000 + n, packets=10, bytes=500, application_name="Mining",
        verdict=kind, score=0.97, scores={"benign": 0.03, "stratum_mining": 0.97, "reverse_tunnel": 0.0},
        model="m1",
    )


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "data" / "flowguard.db")
    yield s
    s.close()


def test_wal_full_sync_and_schema_version(store: Store) -> None:
    assert store.journal_mode == "wal"
    with store._lock:
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store.schema_version == SCHEMA_VERSION
    tables = {r[0] for r in store._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"schema_version", "verdicts", "decisions", "feedback", "allowlist"} <= tables


def test_reopening_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "f.db"
    first = Store(path)
    ids = first.add_verdicts([verdict(1), verdict(2)], "sensor", T0)
    first.add_feedback(ids[0], "true_positive", "stratum_mining", "ok", "ana", T0)
    first.add_decision("203.0.113.7", "stratum_mining", T0 + timedelta(hours=1), T0, ids[0], 0.97)
    first.add_allow("10.0.0.0/8", "inside", T0)
    first.close()
    again = Store(path)
    assert again.schema_version == SCHEMA_VERSION
    assert [v.id for v in again.verdicts(descending=False)] == ids
    assert again.verdict(ids[0]).flow == verdict(1)  # type: ignore[union-attr]
    assert [d.value for d in again.active(T0)] == ["203.0.113.7"]
    assert [e.cidr for e in again.allowlist()] == ["10.0.0.0/8"]
    assert next(again.export_feedback())["true_class"] == "stratum_mining"
    again.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f.db"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer than this flowguard"):
        Store(path)


def test_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a flowguard database"):
        Store(path)


def test_an_acknowledged_verdict_survives_sigkill(tmp_path: Path) -> None:
    """A writer stores a batch, says so, and is killed with SIGKILL at once: the batch is there."""
    path = tmp_path / "f.db"
    child = textwrap.dedent(f"""
        import os, signal, sys
        from flowguard.store import Store
        from tests.test_store import verdict
        store = Store({str(path)!r})
        ids = store.add_verdicts([verdict(n) for n in range(50)], "sensor")
        sys.stdout.write("ACK " + ",".join(map(str, ids)) + "\\n")
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", child], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    acked = [int(i) for i in proc.stdout.split()[1].split(",")]
    assert len(acked) == 50
    reopened = Store(path)
    assert [v.id for v in reopened.verdicts(limit=1000, descending=False)] == acked
    reopened.close()


def test_duplicates_keep_their_id(store: Store) -> None:
    first = store.add_verdicts([verdict(1), verdict(2)], "a")
    again = store.add_verdicts([verdict(2), verdict(3), verdict(1)], "b")
    assert again[0] == first[1] and again[2] == first[0] and again[1] not in first
    assert store.count_verdicts() == 3


def test_filters_and_paging(store: Store) -> None:
    ids = store.add_verdicts([verdict(n, dst=f"203.0.113.{n}") for n in range(10)], "s")
    assert [v.id for v in store.verdicts(ip="203.0.113.3")] == [ids[3]]
    assert [v.id for v in store.verdicts(since_ms=2_008)] == [ids[9], ids[8]]
    assert [v.id for v in store.verdicts(limit=3, after_id=ids[5])] == [ids[4], ids[3], ids[2]]
    assert [v.id for v in store.verdicts(limit=2, offset=1, descending=False)] == ids[1:3]
    assert store.verdicts(verdict="benign") == []
    assert store.verdicts(min_score=0.98) == []


def test_decisions_extend_expire_revoke_and_changes(store: Store) -> None:
    later = T0 + timedelta(hours=1)
    a = store.add_decision("192.0.2.1", "stratum_mining", later, T0)
    b = store.add_decision("192.0.2.2", "reverse_tunnel", later, T0)
    dry = store.add_decision("192.0.2.3", "reverse_tunnel", later, T0, dry_run=True)
    new, deleted, seq = store.changes_since(0, T0)
    assert [d.value for d in new] == ["192.0.2.1", "192.0.2.2"] and deleted == []   # dry-run never published
    store.extend_decision(a.decision.id, T0 + timedelta(hours=5), T0 + timedelta(minutes=1))
    store.extend_decision(a.decision.id, T0 + timedelta(hours=2), T0 + timedelta(minutes=2))  # never shorter
    assert store.open_decision("192.0.2.1").decision.expires_at == T0 + timedelta(hours=5)  # type: ignore[union-attr]
    assert store.revoke([b.decision.id, 999], T0)[0].end_reason == "revoked"
    new, deleted, seq2 = store.changes_since(seq, T0)
    assert [d.value for d in new] == ["192.0.2.1"] and [d.value for d in deleted] == ["192.0.2.2"]
    ended = store.expire(T0 + timedelta(hours=1))
    assert [r.decision.value for r in ended] == ["192.0.2.3"]                       # its time was up
    assert [d.value for d in store.active(T0 + timedelta(hours=1))] == ["192.0.2.1"]
    assert store.active(T0, dry_run=True) == []
    assert store.count_active(T0) == {False: 1, True: 0}
    assert dry.dry_run


def test_threads_share_one_store(store: Store) -> None:
    results: list[list[int]] = []

    def work(base: int) -> None:
        results.append(store.add_verdicts([verdict(base + n) for n in range(100)], "t"))
        store.verdicts(limit=50)

    threads = [threading.Thread(target=work, args=(i * 1000,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for batch in results for i in batch]
    assert len(ids) == len(set(ids)) == 800 == store.count_verdicts()
