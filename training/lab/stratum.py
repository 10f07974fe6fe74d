"""Stratum v1 mining-pool and miner emulators for generating labelled lab traffic.

Both sides speak real line-delimited JSON-RPC (one object per line, ``\\n``
terminated) over TCP, optionally TLS, so the wire image (message sizes, order,
timing) resembles real mining software.

Dialects
--------
``btc``  Bitcoin stratum (cgminer / ckpool style): optional ``mining.configure``
         (version rolling), ``mining.subscribe``, ``mining.authorize``; the pool
         pushes ``mining.set_difficulty`` and ``mining.notify``; the miner sends
         ``mining.submit``.
``xmr``  Monero (XMRig style): ``login`` returns the first job; the pool pushes
         ``job`` notifications; the miner sends ``submit`` and, after
         ``keepalive`` idle seconds, ``keepalived``.
``eth``  EthProxy ("eth_" stratum): ``eth_submitLogin``, ``eth_getWork``; the
         pool pushes work as ``{"id":0,"jsonrpc":"2.0","result":[header, seed,
         target]}``; the miner sends ``eth_submitWork`` and (optionally)
         ``eth_submitHashrate`` every ``keepalive`` seconds.

Timing model
------------
Pool: per connection, a new job every U(job_min, job_max) seconds.  A job is a
new block ("clean": older jobs become stale) with probability ``clean_prob``;
with probability ``vardiff`` the difficulty is first halved or doubled.
Miner: shares form a Poisson process whose mean interval is
``hashes_per_share / hashrate`` with hashes_per_share = ``difficulty * 2**32``
(btc), ``2**32 / target32`` (xmr, 4-byte little-endian target) or
``2**256 / target`` (eth).  Being memoryless, the next share time is simply
resampled whenever the job or difficulty changes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import random
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from training.lab.options import add_config_options, cap_tls

DIALECTS = ("btc", "xmr", "eth")
DEFAULT_DIFFICULTY = {"btc": 131072.0, "xmr": 100000.0, "eth": 4e9}
DEFAULT_HASHRATE = {"btc": 1.1e14, "xmr": 8000.0, "eth": 1e8}  # ASIC, CPU, GPU
XMRIG_ALGOS = [  # as XMRig 6.16.0 lists them in its login (seen on the wire, training/lab/xmrig.py)
    "cn/0", "cn/1", "cn/2", "cn/r", "cn/fast", "cn/half", "cn/xao", "cn/rto", "cn/rwz", "cn/zls",
    "cn/double", "cn/ccx", "cn-lite/0", "cn-lite/1", "cn-heavy/0", "cn-heavy/tube", "cn-heavy/xhv",
    "cn-pico", "cn-pico/tlo", "cn/upx2", "rx/0", "rx/wow", "rx/arq", "rx/graft", "rx/sfx", "rx/keva",
    "argon2/chukwa", "argon2/chukwav2", "argon2/ninja", "astrobwt", "ghostrider"]
XMR_ALGOS = ["rx/0", "cn/r", "cn/2", "cn-lite/1", "cn-heavy/0", "rx/wow", "argon2/chukwav2"]
"""What other Monero miners (xmr-stak-rx, SRBMiner) offer: a short list, per build."""
XMR_EXTENSIONS = ["algo", "nicehash", "connect", "tls", "keepalive"]
SUBMIT_METHODS = ("mining.submit", "submit", "eth_submitWork")
RETARGET_S = 30.0
"""How often a pool with `target_share_s` retargets a miner's difficulty."""
VARIANCE = 0.3
"""... and by how much the share rate must miss the target for it to."""
VERSION_MASK = "1fffe000"
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
JSON = dict[str, Any]
T = TypeVar("T")


@dataclass
class LogEntry:
    """One captured wire message: ``direction`` is '<' (received) or '>' (sent)."""

    t: float
    direction: str
    msg: JSON


def _opt(default: Any, help: str) -> Any:
    """Dataclass field whose help text also feeds the generated argparse option."""
    return field(default=default, metadata={"help": help})


@dataclass
class PoolConfig:
    listen: str = _opt("0.0.0.0:3333", "HOST:PORT to listen on (port 0: any free port)")
    dialect: str = _opt("btc", "stratum dialect")
    difficulty: float | None = _opt(None, "share difficulty (btc) or hashes per share (xmr/eth); "
                                          "default per dialect")
    job_min: float = _opt(30.0, "min seconds between jobs")
    job_max: float = _opt(90.0, "max seconds between jobs")
    clean_prob: float = _opt(0.1, "probability that a job is a new block (clean)")
    vardiff: float = _opt(0.05, "probability per job of halving/doubling the difficulty")
    target_share_s: float | None = _opt(None, "retarget each miner's difficulty every 30 s so that "
                                              "its shares come about every N s, as real pools do")
    tls: bool = _opt(False, "serve TLS")
    cert: str | None = _opt(None, "PEM certificate (default with --tls: self-signed via openssl)")
    key: str | None = _opt(None, "PEM private key")
    tls_max: str | None = _opt(None, "newest TLS version served: 1.2 or 1.3 (default: 1.3)")
    duration: float | None = _opt(None, "stop after N seconds (default: until SIGTERM)")
    seed: int | None = _opt(None, "random seed")
    verbose: bool = _opt(False, "log every message to stderr")


@dataclass
class MinerConfig:
    connect: str = _opt("127.0.0.1:3333", "pool HOST:PORT")
    dialect: str = _opt("btc", "stratum dialect")
    hashrate: float | None = _opt(None, "hashes per second (default per dialect)")
    duration: float = _opt(300.0, "seconds to mine, then close cleanly")
    reconnect_after: float | None = _opt(None, "drop the connection and reconnect every N s")
    keepalive: float = _opt(60.0, "xmr: keepalived after N idle s; eth: hashrate report period")
    retry_pause: float = _opt(5.0, "first reconnect backoff in s (doubles, max 60)")
    user: str | None = _opt(None, "wallet or user.worker (default: random per dialect)")
    password: str | None = _opt(None, "pool password (default: random, e.g. x or a worker name)")
    agent: str | None = _opt(None, "client agent string (btc/xmr; default: a random miner version)")
    optional_prob: float = _opt(0.5, "probability of mining.configure (btc) / "
                                     "eth_submitHashrate reports (eth)")
    bind: str | None = _opt(None, "source IP address")
    tls: bool = _opt(False, "connect with TLS (certificate not verified)")
    seed: int | None = _opt(None, "random seed")
    verbose: bool = _opt(False, "log every message to stderr")


@dataclass
class PoolSession:
    """Per-connection record kept by the pool (transcript plus counters)."""

    cid: int
    peer: str
    tls: bool
    log: list[LogEntry] = field(default_factory=list)
    jobs: int = 0
    accepted: int = 0
    rejected: int = 0
    end: str = ""  # "eof" (peer closed), "error" or "server"

    def methods(self, direction: str = "<") -> list[str]:
        return [e.msg["method"] for e in self.log if e.direction == direction and "method" in e.msg]


@dataclass
class MinerStats:
    connections: int = 0
    connect_failures: int = 0
    jobs: int = 0
    submitted: int = 0
    accepted: int = 0
    rejected: int = 0
    keepalives: int = 0
    log: list[LogEntry] = field(default_factory=list)


def split_hostport(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def make_self_signed_cert(directory: str, cn: str = "pool") -> tuple[str, str]:
    """Create an RSA-2048 self-signed certificate with the openssl CLI; return (cert, key)."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
         "-out", cert, "-days", "365", "-subj", f"/CN={cn}"],
        check=True, capture_output=True,
    )
    return cert, key


def xmr_target(difficulty: float) -> str:
    t = max(1, min(0xFFFFFFFF, int(2**32 / difficulty)))
    return t.to_bytes(4, "little").hex()


def xmr_difficulty(target: str) -> float:
    return 2**32 / max(1, int.from_bytes(bytes.fromhex(target), "little"))


def eth_target(difficulty: float) -> str:
    return f"0x{min(2**256 - 1, int(2**256 // max(difficulty, 1.0))):064x}"


def eth_difficulty(target: str) -> float:
    return 2**256 / max(1, int(target, 16))


def _num(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x


def _ok(reply: JSON) -> bool:
    """A JSON-RPC reply counts as success if it has no error and a non-null, non-false result."""
    result = reply.get("result")
    return reply.get("error") is None and result is not None and result is not False


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _hex(rng: random.Random, nbytes: int) -> str:
    return rng.randbytes(nbytes).hex()


async def _wait_event(ev: asyncio.Event, timeout: float | None) -> bool:
    """Wait for ``ev`` at most ``timeout`` seconds; return whether it was set."""
    try:
        await asyncio.wait_for(ev.wait(), timeout)
    except asyncio.TimeoutError:
        return False
    return True


async def _or_stop(aw: Awaitable[T], stop: asyncio.Event, timeout: float) -> T:
    """Await ``aw``, raising asyncio.TimeoutError after ``timeout`` s or once ``stop`` is set."""
    task = asyncio.ensure_future(aw)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if not task.done():
        task.cancel()
        raise asyncio.TimeoutError
    return task.result()


class _Wire:
    """Line-delimited JSON over an asyncio stream, with transcript and --verbose logging."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 tag: str, log: list[LogEntry], dialect: str, verbose: bool) -> None:
        self.reader, self.writer, self.tag, self.log = reader, writer, tag, log
        self.verbose = verbose
        # cgminer/ckpool-era btc tools emit ", " / ": "; XMRig (rapidjson) and ethminer are compact.
        self.seps = (", ", ": ") if dialect == "btc" else (",", ":")
        self.last_send = time.monotonic()

    def _record(self, direction: str, msg: JSON, line: str) -> None:
        self.log.append(LogEntry(time.time(), direction, msg))
        if self.verbose:
            print(f"{time.time():.3f} {self.tag} {direction} {line.rstrip()}", file=sys.stderr)

    async def send(self, msg: JSON) -> None:
        line = json.dumps(msg, separators=self.seps) + "\n"
        self.writer.write(line.encode())
        await self.writer.drain()
        self.last_send = time.monotonic()
        self._record(">", msg, line)

    async def recv(self) -> JSON | None:
        raw = await self.reader.readline()
        if not raw:
            return None
        msg = json.loads(raw)
        if not isinstance(msg, dict):
            raise ValueError("JSON-RPC message is not an object")
        self._record("<", msg, raw.decode(errors="replace"))
        return msg

    async def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)


# --------------------------------------------------------------------------- pool


@dataclass
class _PoolConn:
    wire: _Wire
    session: PoolSession
    rng: random.Random
    difficulty: float
    prevhash: str
    seed_hash: str
    height: int
    jobs: deque[str] = field(default_factory=lambda: deque(maxlen=8))
    job_seq: int = 0
    pusher: asyncio.Task[None] | None = None
    retargeter: asyncio.Task[None] | None = None


class StratumPool:
    """Stratum pool server; ``start()`` returns the bound port, ``close()`` stops it."""

    def __init__(self, cfg: PoolConfig) -> None:
        if cfg.dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {cfg.dialect!r}")
        self.cfg = cfg
        self.difficulty = cfg.difficulty or DEFAULT_DIFFICULTY[cfg.dialect]
        self.sessions: dict[int, PoolSession] = {}
        self.port = 0
        self._conns: dict[int, _PoolConn] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._tmpdir: str | None = None
        self._next_cid = 0

    async def start(self) -> int:
        ctx: ssl.SSLContext | None = None
        if self.cfg.tls:
            if self.cfg.cert and self.cfg.key:
                cert, key = self.cfg.cert, self.cfg.key
            else:
                self._tmpdir = tempfile.mkdtemp(prefix="stratum-tls-")
                cert, key = await asyncio.to_thread(make_self_signed_cert, self._tmpdir)
            ctx = cap_tls(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), self.cfg.tls_max)
            ctx.load_cert_chain(cert, key)
        host, port = split_hostport(self.cfg.listen)
        self._server = await asyncio.start_server(self._handle, host, port, ssl=ctx)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.cfg.verbose:
            print(f"pool listening on {host}:{self.port} ({self.cfg.dialect})", file=sys.stderr)
        return self.port

    async def close(self) -> None:
        if self._server:
            self._server.close()
        for c in list(self._conns.values()):
            c.session.end = c.session.end or "server"
            await c.wire.close()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=3.0)
        if self._server:
            await self._server.wait_closed()
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task:
            self._tasks.add(task)
        self._next_cid += 1
        cid = self._next_cid
        peer = writer.get_extra_info("peername")
        sess = PoolSession(cid, str(peer), writer.get_extra_info("ssl_object") is not None)
        self.sessions[cid] = sess
        seed = None if self.cfg.seed is None else f"{self.cfg.seed}:{cid}"
        rng = random.Random(seed)
        wire = _Wire(reader, writer, f"pool#{cid}", sess.log, self.cfg.dialect, self.cfg.verbose)
        c = _PoolConn(wire, sess, rng, self.difficulty, _hex(rng, 32), _hex(rng, 32),
                      rng.randint(3_000_000, 3_200_000))
        self._conns[cid] = c
        try:
            while (msg := await wire.recv()) is not None:
                await self._dispatch(c, msg)
            sess.end = sess.end or "eof"
        except (OSError, EOFError, ValueError, LookupError, TypeError):  # I/O or malformed request
            sess.end = sess.end or "error"
        finally:
            for t in (c.pusher, c.retargeter):
                if t:
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await t
            await wire.close()
            del self._conns[cid]
            if task:
                self._tasks.discard(task)

    async def _reply(self, c: _PoolConn, mid: Any, result: Any, error: Any = None) -> None:
        d = self.cfg.dialect
        if d == "btc":
            msg: JSON = {"id": mid, "result": result, "error": error}
        elif d == "xmr":
            msg = {"id": mid, "jsonrpc": "2.0", "error": error, "result": result}
        else:
            msg = {"id": mid, "jsonrpc": "2.0", "result": result}
            if error is not None:
                msg["error"] = error
        await c.wire.send(msg)

    async def _dispatch(self, c: _PoolConn, msg: JSON) -> None:
        method, mid, params = msg.get("method"), msg.get("id"), msg.get("params")
        start_jobs = False
        if method == "mining.configure":
            result: Any = {"version-rolling": True, "version-rolling.mask": VERSION_MASK}
        elif method == "mining.subscribe":
            sid = _hex(c.rng, 8)
            result = [[["mining.set_difficulty", sid], ["mining.notify", sid]], _hex(c.rng, 4), 4]
        elif method in ("mining.authorize", "eth_submitLogin"):
            result, start_jobs = True, True
        elif method == "login":
            login_id = str(uuid.UUID(int=c.rng.getrandbits(128), version=4))
            result = {"id": login_id, "job": self._make_job(c, clean=True),
                      "extensions": XMR_EXTENSIONS, "status": "OK"}
            start_jobs = True
        elif method == "eth_getWork":
            result = self._make_job(c, clean=False)
        elif method in SUBMIT_METHODS:
            job_id = params["job_id"] if isinstance(params, dict) else (params or [None, None])[1]
            if job_id in c.jobs:
                c.session.accepted += 1
                await self._reply(c, mid, {"status": "OK"} if method == "submit" else True)
            else:
                c.session.rejected += 1
                err: Any = {"btc": [21, "Job not found", None],
                            "xmr": {"code": -1, "message": "Block expired"},
                            "eth": {"code": 21, "message": "Stale share"}}[self.cfg.dialect]
                await self._reply(c, mid, None if method == "submit" else False, err)
            return
        elif method == "keepalived":
            result = {"status": "KEEPALIVED"}
        elif method == "eth_submitHashrate":
            result = True
        else:
            await self._reply(c, mid, None, [20, f"Unknown method {method}", None])
            return
        await self._reply(c, mid, result)
        if start_jobs and c.pusher is None:
            if self.cfg.dialect == "btc":
                await self._set_difficulty(c)
                await self._push_job(c, clean=True)
            c.pusher = asyncio.create_task(self._pusher(c))
            if self.cfg.target_share_s:
                c.retargeter = asyncio.create_task(self._retarget(c, self.cfg.target_share_s))

    async def _set_difficulty(self, c: _PoolConn) -> None:
        params = [_num(c.difficulty)]
        await c.wire.send({"id": None, "method": "mining.set_difficulty", "params": params})

    async def _pusher(self, c: _PoolConn) -> None:
        cfg = self.cfg
        while True:
            await asyncio.sleep(c.rng.uniform(cfg.job_min, cfg.job_max))
            if c.rng.random() < cfg.vardiff:
                c.difficulty = max(c.difficulty * c.rng.choice((0.5, 2.0)), 1e-3)
                if cfg.dialect == "btc":
                    await self._set_difficulty(c)
            await self._push_job(c, clean=c.rng.random() < cfg.clean_prob)

    async def _retarget(self, c: _PoolConn, target_s: float) -> None:
        """Variable difficulty as pools run it (node-cryptonote-pool, ckpool): every RETARGET_S,
        estimate the miner's hashrate from its shares and set the difficulty that gives a share
        every `target_s`, at most halving or doubling it, and only when it is off by more than
        VARIANCE; the new difficulty comes with a new job (Bitcoin: mining.set_difficulty first)."""
        counted = c.session.accepted
        while True:
            await asyncio.sleep(RETARGET_S)
            shares, counted = c.session.accepted - counted, c.session.accepted
            ratio = min(2.0, max(0.5, shares / RETARGET_S * target_s))
            if abs(ratio - 1.0) > VARIANCE:
                c.difficulty = max(c.difficulty * ratio, 1e-3)
                if self.cfg.dialect == "btc":
                    await self._set_difficulty(c)
                await self._push_job(c, clean=False)

    async def _push_job(self, c: _PoolConn, clean: bool) -> None:
        job = self._make_job(c, clean)
        if self.cfg.dialect == "btc":
            await c.wire.send({"id": None, "method": "mining.notify", "params": job})
        elif self.cfg.dialect == "xmr":
            await c.wire.send({"jsonrpc": "2.0", "method": "job", "params": job})
        else:
            await c.wire.send({"id": 0, "jsonrpc": "2.0", "result": job})

    def _make_job(self, c: _PoolConn, clean: bool) -> Any:
        """Build the next job payload (notify params / job object / work triple)."""
        rng = c.rng
        c.job_seq += 1
        c.session.jobs += 1
        if clean:
            c.jobs.clear()
            c.prevhash = _hex(rng, 32)
            c.height += 1
            if c.height % 2048 == 0:
                c.seed_hash = _hex(rng, 32)
        if self.cfg.dialect == "btc":
            job_id = f"{c.job_seq:x}"
            # coinbase tx: version, 1 input spending the null outpoint, then scriptSig bytes
            coinb1 = "0100000001" + "00" * 32 + "ffffffff" + _hex(rng, rng.randint(9, 59))
            coinb2 = _hex(rng, rng.randint(36, 56)) + "00000000"
            branch = [_hex(rng, 32) for _ in range(rng.randint(0, 12))]
            job: Any = [job_id, c.prevhash, coinb1, coinb2, branch, "20000000", "1703a30c",
                        f"{int(time.time()):08x}", clean]
        elif self.cfg.dialect == "xmr":
            job_id = f"{rng.getrandbits(60):015d}"
            blob = (bytes([16, 16]) + _varint(int(time.time())) + bytes.fromhex(c.prevhash)
                    + bytes(4) + rng.randbytes(32) + bytes([rng.randint(1, 127)]))
            job = {"blob": blob.hex(), "job_id": job_id, "target": xmr_target(c.difficulty),
                   "algo": "rx/0", "height": c.height, "seed_hash": c.seed_hash}
        else:
            job_id = "0x" + _hex(rng, 32)
            job = [job_id, "0x" + c.seed_hash, eth_target(c.difficulty)]
        c.jobs.append(job_id)
        return job


def pool_stats(pool: StratumPool) -> dict[str, int]:
    """What the pool saw of its miners, all connections together: the pool's own account of a lab
    session (a share it accepted was mined), printed as ``pool STATS {json}`` when it stops."""
    sessions = list(pool.sessions.values())
    return {"connections": len(sessions), "jobs": sum(c.jobs for c in sessions),
            "accepted": sum(c.accepted for c in sessions), "rejected": sum(c.rejected for c in sessions)}


async def run_pool(cfg: PoolConfig, stop: asyncio.Event | None = None) -> StratumPool:
    """Serve until ``stop`` is set or ``cfg.duration`` elapses; return the pool (with sessions)."""
    pool = StratumPool(cfg)
    await pool.start()
    try:
        await _wait_event(stop or asyncio.Event(), cfg.duration)
    finally:
        await pool.close()
    return pool


# --------------------------------------------------------------------------- miner


def _worker(rng: random.Random) -> str:
    return rng.choice(("rig", "worker", "gpu", "node", "box", "")) + str(rng.randint(0, 999))


def default_user(dialect: str, rng: random.Random) -> str:
    """A wallet or account of one of the forms pools accept (lengths vary, as in the wild)."""
    form = rng.random()
    if dialect == "btc":
        chars = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
        if form < 0.3:  # an account name at the pool
            return "".join(rng.choice(chars) for _ in range(rng.randint(4, 16))) + "." + _worker(rng)
        wallet = "bc1q" + "".join(rng.choice(chars) for _ in range(rng.choice((38, 58))))
        return wallet + (f".{_worker(rng)}" if form < 0.8 else "")
    if dialect == "xmr":
        wallet = "4" + rng.choice("3456789AB") + "".join(
            rng.choice(B58) for _ in range(rng.choice((93, 93, 104))))  # standard or integrated
        if form < 0.3:
            return wallet + f"+{rng.choice((1000, 25000, 100000, 480000))}"  # fixed difficulty
        return wallet + (f".{_worker(rng)}" if form < 0.6 else "")
    return "0x" + _hex(rng, 20) + (f".{_worker(rng)}" if form < 0.5 else "")


def _default_agent(dialect: str, rng: random.Random) -> str:
    """A client agent string like those of the common miners, versions and builds varying."""
    if dialect == "xmr":
        name = rng.choice(("XMRig", "XMRig", "xmr-stak-rx", "SRBMiner-MULTI"))
        os_ = rng.choice(("Linux x86_64", "Windows NT 10.0; Win64; x64", "Ubuntu 22.04; x86_64",
                          "macOS 14.2; arm64"))
        return (f"{name}/{rng.randint(5, 6)}.{rng.randint(0, 22)}.{rng.randint(0, 3)} ({os_}) "
                f"libuv/1.{rng.randint(38, 48)}.{rng.randint(0, 2)} "
                + rng.choice((f"gcc/{rng.randint(9, 13)}.{rng.randint(1, 3)}.0",
                              f"clang/{rng.randint(12, 17)}.0.0", "msvc/2022")))
    if dialect == "btc":
        name = rng.choice(("cgminer", "bfgminer", "bmminer", "NiceHash", "Antminer S19"))
        return f"{name}/{rng.randint(1, 5)}.{rng.randint(0, 14)}.{rng.randint(0, 9)}"
    return f"ethminer/0.{rng.randint(15, 19)}.{rng.randint(0, 2)}"


def xmr_login(user: str, password: str, agent: str, rng: random.Random) -> JSON:
    """A Monero-style login's params as the miner named by `agent` sends them. XMRig lists every
    algorithm its build has (31 in 6.16, some families left out of some builds) and names a rig
    only when told one; the others offer a few algorithms and an empty rig id."""
    if agent.startswith("XMRig"):
        dropped = {f for f in ("cn-heavy", "argon2", "astrobwt", "ghostrider") if rng.random() < 0.2}
        algos = [a for a in XMRIG_ALGOS if a.split("/")[0] not in dropped]
        login: JSON = {"login": user, "pass": password, "agent": agent, "algo": algos}
        if rng.random() < 0.3:
            login["rigid"] = _worker(rng)
        return login
    algos = [a for a in XMR_ALGOS if a == "rx/0" or rng.random() < 0.7]  # per build
    return {"login": user, "pass": password, "agent": agent, "algo": algos, "rigid": ""}


class _MinerSession:
    """One TCP connection's worth of mining: handshake, then shares and keepalives."""

    def __init__(self, cfg: MinerConfig, rng: random.Random, stats: MinerStats, wire: _Wire,
                 user: str) -> None:
        self.cfg, self.rng, self.stats, self.wire, self.user = cfg, rng, stats, wire, user
        self.hashrate = cfg.hashrate or DEFAULT_HASHRATE[cfg.dialect]
        self.pending: dict[int, tuple[str, asyncio.Future[JSON]]] = {}
        self.next_id = 1
        self.changed = asyncio.Event()
        self.job: Any = None
        self.difficulty = 0.0
        self.login_id = ""
        self.en2 = 0
        self.en2_size = 4
        self.vmask = 0
        self.report = cfg.dialect == "eth" and rng.random() < cfg.optional_prob
        self.last_report = time.monotonic()

    async def run(self, end: float, stop: asyncio.Event) -> bool:
        """Mine until ``end`` (loop time) or ``stop``; return True if the connection was lost."""
        loop = asyncio.get_running_loop()
        stopper = asyncio.create_task(stop.wait())
        # reader/worker only finish on EOF or error (the share loop never returns)
        tasks = {asyncio.create_task(self._read_loop()), asyncio.create_task(self._work()), stopper}
        try:
            done, _ = await asyncio.wait(tasks, timeout=max(0.0, end - loop.time()),
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.wire.close()
        return bool(done - {stopper})

    async def _request(self, method: str, params: Any) -> asyncio.Future[JSON]:
        mid, self.next_id = self.next_id, self.next_id + 1
        fut: asyncio.Future[JSON] = asyncio.get_running_loop().create_future()
        self.pending[mid] = (method, fut)
        msg: JSON = {"id": mid, "method": method, "params": params}
        if self.cfg.dialect != "btc":
            msg = {"id": mid, "jsonrpc": "2.0", "method": method, "params": params}
        if self.cfg.dialect == "eth":
            msg["worker"] = "rig1"
        await self.wire.send(msg)
        return fut

    async def _call(self, method: str, params: Any) -> Any:
        reply = await (await self._request(method, params))
        if not _ok(reply):
            raise ConnectionError(f"{method} refused: {reply.get('error')}")
        return reply["result"]

    async def _work(self) -> None:
        cfg, rng = self.cfg, self.rng
        if cfg.dialect == "btc":
            if rng.random() < cfg.optional_prob:
                res = await (await self._request("mining.configure", [["version-rolling"], {
                    "version-rolling.mask": VERSION_MASK, "version-rolling.min-bit-count": 2}]))
                vr = res.get("result") or {}
                if isinstance(vr, dict) and vr.get("version-rolling"):
                    self.vmask = int(vr.get("version-rolling.mask", VERSION_MASK), 16)
            sub = await self._call("mining.subscribe", [cfg.agent])
            self.en2_size = int(sub[2])
            await self._call("mining.authorize", [self.user, cfg.password])
        elif cfg.dialect == "xmr":
            assert cfg.password is not None and cfg.agent is not None  # filled in by run_miner
            res = await self._call("login", xmr_login(self.user, cfg.password, cfg.agent, rng))
            self.login_id = res["id"]
            self._set_job(res["job"])
        else:
            await self._call("eth_submitLogin", [self.user])
            self._set_job(await self._call("eth_getWork", []))
        await self._share_loop()

    def _set_job(self, job: Any) -> None:
        if self.cfg.dialect == "xmr":
            self.difficulty = xmr_difficulty(job["target"])
        elif self.cfg.dialect == "eth":
            self.difficulty = eth_difficulty(job[2])
        self.job = job
        self.stats.jobs += 1
        self.changed.set()

    async def _read_loop(self) -> None:
        while (msg := await self.wire.recv()) is not None:
            method, mid = msg.get("method"), msg.get("id")
            if method == "mining.set_difficulty":
                self.difficulty = float(msg["params"][0])
                self.changed.set()
            elif method in ("mining.notify", "job"):
                self._set_job(msg["params"])
            elif method is None and mid == 0 and isinstance(msg.get("result"), list):
                self._set_job(msg["result"])  # eth work push
            elif isinstance(mid, int) and mid in self.pending:
                req, fut = self.pending.pop(mid)
                if req in SUBMIT_METHODS:
                    ok = _ok(msg)
                    self.stats.accepted += ok
                    self.stats.rejected += not ok
                if not fut.done():
                    fut.set_result(msg)

    def _hashes_per_share(self) -> float:
        return self.difficulty * 2**32 if self.cfg.dialect == "btc" else self.difficulty

    def _next_ping(self) -> float:
        if self.cfg.dialect == "xmr":
            return self.wire.last_send + self.cfg.keepalive
        if self.report:
            return self.last_report + self.cfg.keepalive
        return math.inf

    async def _share_loop(self) -> None:
        next_share = math.inf
        while True:
            now = time.monotonic()
            if self.changed.is_set() or next_share == math.inf:
                self.changed.clear()
                hps = self._hashes_per_share()
                ok = self.job is not None and hps > 0
                next_share = now + self.rng.expovariate(self.hashrate / hps) if ok else math.inf
            wake = min(next_share, self._next_ping())
            if await _wait_event(self.changed, None if wake == math.inf else max(0.0, wake - now)):
                continue
            if time.monotonic() >= next_share:
                await self._submit()
                next_share = math.inf
            elif self.cfg.dialect == "xmr":
                self.stats.keepalives += 1
                await self._request("keepalived", {"id": self.login_id})
            else:
                self.last_report = time.monotonic()
                jitter = self.rng.uniform(0.97, 1.03)
                rate = f"0x{int(self.hashrate * jitter):064x}"
                await self._request("eth_submitHashrate", [rate, "0x" + _hex(self.rng, 32)])

    async def _submit(self) -> None:
        rng, job = self.rng, self.job
        self.stats.submitted += 1
        if self.cfg.dialect == "btc":
            self.en2 += 1
            en2 = f"{self.en2:0{2 * self.en2_size}x}"[-2 * self.en2_size:]
            params: Any = [self.user, job[0], en2, job[7], f"{rng.getrandbits(32):08x}"]
            if self.vmask:
                params.append(f"{rng.getrandbits(32) & self.vmask:08x}")
            await self._request("mining.submit", params)
        elif self.cfg.dialect == "xmr":
            t32 = int.from_bytes(bytes.fromhex(job["target"]), "little")
            result = rng.randbytes(28) + rng.randrange(max(1, t32)).to_bytes(4, "little")
            await self._request("submit", {
                "id": self.login_id, "job_id": job["job_id"], "nonce": f"{rng.getrandbits(32):08x}",
                "result": result.hex(), "algo": job.get("algo", "rx/0")})
        else:
            nonce = f"0x{rng.getrandbits(64):016x}"
            await self._request("eth_submitWork", [nonce, job[0], "0x" + _hex(rng, 32)])


async def _open(cfg: MinerConfig) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = split_hostport(cfg.connect)
    ctx: ssl.SSLContext | None = None
    if cfg.tls:  # like a miner run with --tls and no pinned fingerprint
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    local = (cfg.bind, 0) if cfg.bind else None
    return await asyncio.open_connection(host, port, ssl=ctx, local_addr=local)


async def run_miner(cfg: MinerConfig, stop: asyncio.Event | None = None) -> MinerStats:
    """Mine for ``cfg.duration`` seconds (reconnecting as configured); return statistics."""
    if cfg.dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {cfg.dialect!r}")
    rng = random.Random(cfg.seed)
    stop = stop or asyncio.Event()
    cfg = dataclasses.replace(
        cfg, agent=cfg.agent or _default_agent(cfg.dialect, rng),
        password=cfg.password if cfg.password is not None else rng.choice(("x", "x", _worker(rng), "")))
    user = cfg.user or default_user(cfg.dialect, rng)
    stats = MinerStats()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + cfg.duration
    failures = 0
    while not stop.is_set() and loop.time() < deadline:
        if failures:  # exponential backoff with jitter, capped at 60 s
            pause = min(60.0, cfg.retry_pause * 2 ** (failures - 1)) * rng.uniform(0.8, 1.2)
            await _wait_event(stop, min(pause, deadline - loop.time()))
            if stop.is_set() or loop.time() >= deadline:
                break
        try:
            reader, writer = await _or_stop(_open(cfg), stop, min(10.0, deadline - loop.time()))
        except (OSError, asyncio.TimeoutError) as exc:
            stats.connect_failures += 1
            failures += 1
            if cfg.verbose:
                print(f"miner connect failed: {exc!r}", file=sys.stderr)
            continue
        stats.connections += 1
        wire = _Wire(reader, writer, "miner", stats.log, cfg.dialect, cfg.verbose)
        end = deadline
        if cfg.reconnect_after is not None:
            end = min(deadline, loop.time() + cfg.reconnect_after)
        lost = await _MinerSession(cfg, rng, stats, wire, user).run(end, stop)
        failures = 1 if lost else 0
    return stats


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    """Build the CLI from the config dataclasses (one option per field, same defaults)."""
    p = argparse.ArgumentParser(prog="python -m training.lab.stratum",
                                description=(__doc__ or "").split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, cls in (("pool", PoolConfig), ("miner", MinerConfig)):
        sp = sub.add_parser(name, help=f"run the {name} emulator")
        add_config_options(sp, cls, choices={"dialect": DIALECTS})
    return p


async def _amain(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    cls = PoolConfig if args.cmd == "pool" else MinerConfig
    cfg = cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})
    if isinstance(cfg, PoolConfig):
        pool = await run_pool(cfg, stop)
        print(f"pool STATS {json.dumps(pool_stats(pool), sort_keys=True)}", file=sys.stderr, flush=True)
        return 0
    stats = await run_miner(cfg, stop)
    return 0 if stats.connections or stop.is_set() else 1


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(_amain(_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
