"""End-to-end tests of the Stratum pool/miner emulators over real loopback sockets."""

from __future__ import annotations

import asyncio
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.ports import free_port
from training.lab.stratum import (
    MinerConfig,
    MinerStats,
    PoolConfig,
    PoolSession,
    StratumPool,
    run_miner,
)

REPO = Path(__file__).resolve().parents[1]
# (pool difficulty, miner hashrate) giving ~8 expected shares per second
FAST = {"btc": (1.0, 3.4e10), "xmr": (1000.0, 8000.0), "eth": (1e6, 8e6)}
HANDSHAKE = {
    "btc": ["mining.subscribe", "mining.authorize"],
    "xmr": ["login"],
    "eth": ["eth_submitLogin", "eth_getWork"],
}
SUBMIT = {"btc": "mining.submit", "xmr": "submit", "eth": "eth_submitWork"}
IDLE = {"keepalived", "eth_submitHashrate"}


def _pool_cfg(dialect: str, **kw: Any) -> PoolConfig:
    base: dict[str, Any] = dict(listen="127.0.0.1:0", dialect=dialect, difficulty=FAST[dialect][0],
                                job_min=0.2, job_max=0.5, clean_prob=0.3, vardiff=0.2, seed=7)
    return PoolConfig(**(base | kw))


def _miner_cfg(dialect: str, port: int, **kw: Any) -> MinerConfig:
    base: dict[str, Any] = dict(connect=f"127.0.0.1:{port}", dialect=dialect,
                                hashrate=FAST[dialect][1], duration=1.2, seed=11,
                                optional_prob=1.0, keepalive=30.0)
    return MinerConfig(**(base | kw))


async def _pair(pool_cfg: PoolConfig, **miner_kw: Any) -> tuple[StratumPool, MinerStats, float]:
    pool = StratumPool(pool_cfg)
    port = await pool.start()
    try:
        t0 = time.monotonic()
        stats = await run_miner(_miner_cfg(pool_cfg.dialect, port, tls=pool_cfg.tls, **miner_kw))
        elapsed = time.monotonic() - t0
        await asyncio.sleep(0.1)  # let the pool see the EOF
    finally:
        await pool.close()
    return pool, stats, elapsed


def _replies(sess: PoolSession, method: str) -> list[dict[str, Any]]:
    """Pool replies to the client requests named ``method``, in order."""
    ids = {e.msg["id"] for e in sess.log if e.direction == "<" and e.msg.get("method") == method}
    return [e.msg for e in sess.log
            if e.direction == ">" and "method" not in e.msg and e.msg.get("id") in ids]


def _check_handshake(sess: PoolSession, dialect: str) -> list[str]:
    """Assert the client handshake order; return the client methods that follow it."""
    methods = sess.methods("<")
    if dialect == "btc" and methods[0] == "mining.configure":
        methods = methods[1:]
    hs = HANDSHAKE[dialect]
    assert methods[: len(hs)] == hs
    for m in hs:
        (reply,) = _replies(sess, m)
        assert reply.get("error") is None and reply["result"] not in (None, False)
    return methods[len(hs):]


def _pushed_jobs(sess: PoolSession, dialect: str) -> list[dict[str, Any]]:
    out = [e.msg for e in sess.log if e.direction == ">"]
    if dialect == "eth":
        return [m for m in out if m.get("id") == 0 and "method" not in m]
    return [m for m in out if m.get("method") == {"btc": "mining.notify", "xmr": "job"}[dialect]]


@pytest.mark.parametrize("tls", [False, True], ids=["clear", "tls"])
@pytest.mark.parametrize("dialect", ["btc", "xmr", "eth"])
def test_mining_session(dialect: str, tls: bool) -> None:
    pool, stats, elapsed = asyncio.run(_pair(_pool_cfg(dialect, tls=tls)))
    assert stats.connections == 1 and stats.connect_failures == 0
    (sess,) = pool.sessions.values()
    assert sess.tls is tls
    assert sess.end == "eof", "miner must close the connection itself"
    assert 1.2 <= elapsed < 2.2

    after = _check_handshake(sess, dialect)
    assert set(after) <= {SUBMIT[dialect]} | IDLE
    sent = [e.msg for e in sess.log if e.direction == ">"]
    if dialect == "btc":
        sub = _replies(sess, "mining.subscribe")[0]["result"]
        assert [s[0] for s in sub[0]] == ["mining.set_difficulty", "mining.notify"]
        pushes = [m["method"] for m in sent if m.get("method")]
        assert pushes[:2] == ["mining.set_difficulty", "mining.notify"]
        notify = _pushed_jobs(sess, dialect)[0]["params"]
        assert len(notify) == 9 and len(notify[1]) == 64 and notify[8] is True
        assert all(len(h) == 64 for h in notify[4]) and len(notify[4]) <= 12
    elif dialect == "xmr":
        login = _replies(sess, "login")[0]["result"]
        assert login["status"] == "OK" and len(login["job"]["blob"]) == 152
        assert len(login["job"]["target"]) == 8 and len(login["job"]["seed_hash"]) == 64
    else:
        work = _replies(sess, "eth_getWork")[0]["result"]
        assert [len(h) for h in work] == [66, 66, 66]
    assert len(_pushed_jobs(sess, dialect)) >= 2

    submits = [m for m in after if m == SUBMIT[dialect]]
    assert len(submits) >= 3 and stats.submitted == len(submits)
    replies = _replies(sess, SUBMIT[dialect])
    assert stats.accepted == sess.accepted >= 3 and stats.rejected <= 1
    ok = [r for r in replies if r.get("error") is None]
    assert all(r["result"] in (True, {"status": "OK"}) for r in ok)


def test_xmr_keepalived_when_idle() -> None:
    pool_cfg = _pool_cfg("xmr", job_min=5.0, job_max=5.0)
    pool, stats, _ = asyncio.run(_pair(pool_cfg, hashrate=1e-6, keepalive=0.3, duration=1.2))
    (sess,) = pool.sessions.values()
    after = _check_handshake(sess, "xmr")
    assert after and set(after) == {"keepalived"} and stats.keepalives == len(after) >= 3
    assert stats.submitted == 0
    assert all(r["result"] == {"status": "KEEPALIVED"} for r in _replies(sess, "keepalived"))
    keep = next(e.msg for e in sess.log if e.msg.get("method") == "keepalived")
    login_id = _replies(sess, "login")[0]["result"]["id"]
    assert keep["params"] == {"id": login_id}


def test_eth_hashrate_reports() -> None:
    pool, _, _ = asyncio.run(_pair(_pool_cfg("eth"), keepalive=0.4, duration=1.0))
    (sess,) = pool.sessions.values()
    assert _check_handshake(sess, "eth").count("eth_submitHashrate") >= 2


def test_reconnect_after_opens_new_connections() -> None:
    pool, stats, elapsed = asyncio.run(_pair(_pool_cfg("btc"), reconnect_after=0.5))
    assert stats.connections == 3 and len(pool.sessions) == 3
    for sess in pool.sessions.values():
        _check_handshake(sess, "btc")
        assert sess.end == "eof"
    assert elapsed < 2.2


def test_many_concurrent_miners() -> None:
    async def scenario() -> tuple[StratumPool, list[MinerStats]]:
        pool = StratumPool(_pool_cfg("xmr"))
        port = await pool.start()
        try:
            cfgs = [_miner_cfg("xmr", port, seed=i, duration=1.0) for i in range(8)]
            stats = await asyncio.gather(*(run_miner(c) for c in cfgs))
            await asyncio.sleep(0.1)
        finally:
            await pool.close()
        return pool, list(stats)

    pool, stats = asyncio.run(scenario())
    assert len(pool.sessions) == 8 and all(s.connections == 1 for s in stats)
    logins = set()
    for sess in pool.sessions.values():
        _check_handshake(sess, "xmr")
        assert sess.end == "eof" and sess.jobs >= 2
        logins.add(sess.log[0].msg["params"]["login"])
    assert len(logins) == 8, "each seeded miner uses its own wallet"
    assert sum(s.accepted for s in stats) == sum(s.accepted for s in pool.sessions.values()) > 8


def test_miner_backs_off_until_pool_appears() -> None:
    port = free_port()

    async def scenario() -> tuple[StratumPool, MinerStats]:
        miner = asyncio.create_task(run_miner(_miner_cfg("xmr", port, retry_pause=0.1)))
        await asyncio.sleep(0.5)
        pool = StratumPool(_pool_cfg("xmr", listen=f"127.0.0.1:{port}"))
        await pool.start()
        try:
            stats = await miner
        finally:
            await pool.close()
        return pool, stats

    pool, stats = asyncio.run(scenario())
    assert stats.connect_failures >= 2 and stats.connections == 1
    (sess,) = pool.sessions.values()
    _check_handshake(sess, "xmr")


def test_cli_sigterm_exits_cleanly() -> None:
    port = str(free_port())
    cmd = [sys.executable, "-m", "training.lab.stratum"]
    pool = subprocess.Popen(
        [*cmd, "pool", "--listen", f"127.0.0.1:{port}", "--dialect", "btc", "--difficulty", "1",
         "--job-min", "0.2", "--job-max", "0.4", "--verbose", "--tls"],
        cwd=REPO, stderr=subprocess.PIPE, text=True)
    miner = subprocess.Popen(
        [*cmd, "miner", "--connect", f"127.0.0.1:{port}", "--dialect", "btc", "--tls",
         "--hashrate", "3e10", "--duration", "60", "--retry-pause", "0.1"],
        cwd=REPO, stderr=subprocess.PIPE, text=True)
    assert pool.stderr is not None
    pool_err = ""
    try:  # wait (bounded) until the pool has logged a share, then stop both
        deadline = time.monotonic() + 15
        while "mining.submit" not in pool_err and time.monotonic() < deadline:
            if select.select([pool.stderr], [], [], 0.2)[0]:
                pool_err += pool.stderr.readline()
        miner.send_signal(signal.SIGTERM)
        _, miner_err = miner.communicate(timeout=5)
        pool.send_signal(signal.SIGTERM)
        pool_err += pool.communicate(timeout=5)[1]
    finally:
        for proc in (miner, pool):
            if proc.poll() is None:
                proc.kill()
    assert miner.returncode == 0 and miner_err == ""
    assert pool.returncode == 0
    assert "mining.authorize" in pool_err and "mining.submit" in pool_err


def test_xmr_logins_offer_what_their_miner_offers() -> None:
    from training.lab.stratum import XMR_ALGOS, XMRIG_ALGOS, xmr_login

    logins = [xmr_login("4w", "x", "XMRig/6.16.0 (Linux x86_64)", random.Random(i)) for i in range(40)]
    assert all("rx/0" in x["algo"] and set(x["algo"]) <= set(XMRIG_ALGOS) for x in logins)
    assert any(x["algo"] == XMRIG_ALGOS for x in logins)  # a build with every family
    assert any(len(x["algo"]) < len(XMRIG_ALGOS) for x in logins)
    assert {("rigid" in x) for x in logins} == {True, False}  # a rig id only when one is set
    other = xmr_login("4w", "x", "SRBMiner-MULTI/2.4.1", random.Random(1))
    assert set(other["algo"]) <= set(XMR_ALGOS) and other["rigid"] == ""


@pytest.mark.parametrize("dialect", ["btc", "xmr"])
def test_vardiff_retargets_toward_the_share_interval(dialect: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool with `target_share_s` halves the difficulty of a miner whose shares are too rare
    (at most halving it each retarget) and sends it with a new job."""
    import training.lab.stratum as stratum

    monkeypatch.setattr(stratum, "RETARGET_S", 0.4)
    start = FAST[dialect][0] * 40  # shares every ~5 s at FAST's hashrate: far too rare for 0.1 s
    cfg = _pool_cfg(dialect, difficulty=start, job_min=30, job_max=30, vardiff=0.0,
                    target_share_s=0.1)
    pool, stats, _ = asyncio.run(_pair(cfg, duration=2.2))
    (sess,) = pool.sessions.values()
    jobs = _pushed_jobs(sess, dialect)
    assert len(jobs) >= 3  # one per retarget (the pool's own jobs are 30 s apart)
    if dialect == "xmr":  # the first job comes with the login's reply
        first = _replies(sess, "login")[0]["result"]["job"]
        diffs = [stratum.xmr_difficulty(j["target"]) for j in [first, *(j["params"] for j in jobs)]]
    else:
        diffs = [e.msg["params"][0] for e in sess.log if e.msg.get("method") == "mining.set_difficulty"]
    assert diffs[0] == pytest.approx(start, rel=0.01)
    assert all(b < a for a, b in zip(diffs, diffs[1:], strict=False))
    assert all(b >= a * 0.49 for a, b in zip(diffs, diffs[1:], strict=False))  # at most halved
    assert stats.accepted >= 2  # shares came once the difficulty fell
