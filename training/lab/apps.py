"""Small real network programs for the traffic lab: benign look-alikes and an SSH "human".

``python -m training.lab.apps SUBCOMMAND --help``.  ``ws-*``: long-lived WebSocket, small JSON
both ways (app-level ping/pong heartbeats, Poisson server events, occasional client acks), a
chat/dashboard look-alike of stratum mining.  ``longpoll-*``: HTTP/1.1 keep-alive long polling.
``json-rpc-*``: node-like Ethereum JSON-RPC over HTTP keep-alive.  ``push-*``: a mobile
push-notification channel (login, heartbeats every minutes, rare notifications; line JSON over TCP
or TLS), the quietest look-alike of stratum.  ``typist``: types shell
commands into a child (e.g. ``ssh -tt ...``) one key at a time with human timing.

Every command takes ``--seed``, ``--duration`` (0 = until SIGTERM) and ``--verbose``; it exits
0 at the deadline or on SIGTERM/SIGINT, and with ``--verbose`` prints a final
``<name> STATS {json}`` line on stderr.  Each is also a function taking a dataclass config and
returning that stats dict (``ws_server``/``ws_client`` are coroutines).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import random
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.client import HTTPConnection, HTTPException, HTTPSConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any
from urllib.parse import urlsplit

from training.lab.options import cap_tls

WORDS = ("alpha bravo node sync block peer queue status update user online metric cpu disk "
         "ok ready build deploy green latency chart widget stream room message").split()
DEFAULT_COMMANDS = ["ls -la", "uname -a", "cat /etc/os-release", "ps aux | head -20", "df -h",
                    "id", "w", "ip addr", "echo $HOME", "history | tail", "pwd", "uptime",
                    "free -m", "ls /var/log", "whoami", "hostname", "date", "ss -tln"]


@dataclass(kw_only=True)
class Common:
    seed: int | None = None
    duration: float = 0.0
    verbose: bool = False


@dataclass(kw_only=True)
class ServerOpts(Common):
    listen: str = "127.0.0.1:8080"
    tls: bool = False
    cert: str | None = None
    key: str | None = None
    tls_max: str | None = None  # newest TLS version served (options.TLS_MAX); None: 1.3


@dataclass(kw_only=True)
class WsServerConfig(ServerOpts):
    event_interval: float = 15.0


@dataclass(kw_only=True)
class ClientOpts(Common):
    bind: str | None = None  # source IP


@dataclass(kw_only=True)
class WsClientConfig(ClientOpts):
    connect: str = "ws://127.0.0.1:8080/ws"
    heartbeat_min: float = 20.0
    heartbeat_max: float = 30.0


@dataclass(kw_only=True)
class LongPollServerConfig(ServerOpts):
    hold_min: float = 5.0
    hold_max: float = 25.0


@dataclass(kw_only=True)
class LongPollClientConfig(ClientOpts):
    url: str = "http://127.0.0.1:8080/poll"


@dataclass(kw_only=True)
class JsonRpcServerConfig(ServerOpts):
    pass


@dataclass(kw_only=True)
class JsonRpcClientConfig(ClientOpts):
    url: str = "http://127.0.0.1:8545/"
    interval_min: float = 2.0
    interval_max: float = 10.0


@dataclass(kw_only=True)
class PushServerConfig(ServerOpts):
    notify_interval: float = 120.0


@dataclass(kw_only=True)
class PushClientConfig(ClientOpts):
    connect: str = "127.0.0.1:5223"
    tls: bool = False
    heartbeat_min: float = 30.0
    heartbeat_max: float = 240.0


@dataclass(kw_only=True)
class TypistConfig(Common):
    """Key gaps: lognormal (median 180 ms) clipped to 60..1200 ms, divided by ``speed``."""
    cmd: list[str] = field(default_factory=list)
    start_delay: float = 2.0
    speed: float = 1.0
    idle_prob: float = 0.15
    idle_min: float = 10.0
    idle_max: float = 40.0
    read_min: float = 1.0
    read_max: float = 8.0
    typo_prob: float = 0.02
    commands_file: str | None = None


# ---------------------------------------------------------------- helpers
def _log(cfg: Common, msg: str) -> None:
    if cfg.verbose:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _finish(cfg: Common, name: str, st: dict[str, Any]) -> dict[str, Any]:
    _log(cfg, f"{name} STATS {json.dumps(st, sort_keys=True)}")
    return st


def _hostport(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def _client_ctx() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _server_ctx(cfg: ServerOpts) -> ssl.SSLContext | None:
    if not cfg.tls:
        return None
    if not (cfg.cert and cfg.key):
        raise SystemExit("--tls needs --cert and --key")
    ctx = cap_tls(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), cfg.tls_max)
    ctx.load_cert_chain(cfg.cert, cfg.key)
    return ctx


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n // 2 + 1))[:n]


def _sized(rng: random.Random, lo: int, hi: int, build: Callable[[str], Any]) -> str:
    """JSON of ``build(text)`` padded with words so its length is uniform in lo..hi."""
    target = rng.randint(lo, hi)
    return json.dumps(build(_text(rng, max(0, target - len(json.dumps(build("")))))))


def _loads(raw: str | bytes) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


def _sigterm_to_interrupt() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def _stop_flag() -> threading.Event:
    """An event that SIGTERM/SIGINT set. Unlike KeyboardInterrupt, it cannot land between binding
    a socket and the ``try`` that would print the final STATS line."""
    ev = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: ev.set())
    return ev


def _sleep_until(end: float, stop: threading.Event | None = None) -> None:
    """Sleep in short slices: a SIGTERM delivered to another thread would not wake a long sleep,
    but its Python handler runs in the main thread as soon as a slice ends."""
    while (left := end - time.monotonic()) > 0 and not (stop and stop.is_set()):
        time.sleep(min(left, 0.25))


def _async_stop() -> asyncio.Event:
    ev = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.add_signal_handler(sig, ev.set)
    return ev


async def _wait(stop: asyncio.Event, timeout: float | None) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout if timeout is None else max(0.0, timeout))


# ---------------------------------------------------------------- websocket
async def ws_server(cfg: WsServerConfig) -> dict[str, Any]:
    """Serve WebSocket clients: answer pings with pongs, push Poisson-timed JSON events."""
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    rng = random.Random(cfg.seed)
    st = {"connections": 0, "pings": 0, "pongs": 0, "events": 0, "acks": 0, "other": 0}
    stop = _async_stop()

    async def push(ws: ServerConnection, crng: random.Random) -> None:
        n = 0
        while True:
            await asyncio.sleep(crng.expovariate(1.0 / cfg.event_interval))
            n += 1
            kind = crng.choice(["message", "presence", "metric", "notification"])
            def event(t: str, n: int = n, k: str = kind) -> dict[str, Any]:
                return {"type": "event", "id": n,
                        "data": {"kind": k, "user": f"u{crng.randint(100, 999)}", "text": t}}

            await ws.send(_sized(crng, 50, 400, event))
            st["events"] += 1

    async def handler(ws: ServerConnection) -> None:
        st["connections"] += 1
        _log(cfg, f"ws-server: connection from {ws.remote_address}")
        crng = random.Random(rng.random())
        pusher = asyncio.create_task(push(ws, crng))
        try:
            async for raw in ws:
                msg = _loads(raw)
                kind = msg.get("type")
                if kind == "ping":
                    st["pings"] += 1
                    await ws.send(json.dumps({"type": "pong", "ts": msg.get("ts"),
                                              "server_ts": round(time.time(), 3)}))
                    st["pongs"] += 1
                else:
                    st["acks" if kind == "ack" else "other"] += 1
        except ConnectionClosed:
            pass
        finally:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await pusher

    host, port = _hostport(cfg.listen)
    async with serve(handler, host, port, ssl=_server_ctx(cfg)):
        _log(cfg, f"ws-server: listening on {host}:{port} tls={cfg.tls}")
        await _wait(stop, cfg.duration or None)
    return _finish(cfg, "ws-server", st)


async def ws_client(cfg: WsClientConfig) -> dict[str, Any]:
    """Hold a WebSocket open, sending app-level pings every U(min,max) s; reconnect on loss."""
    from websockets.asyncio.client import ClientConnection, connect
    from websockets.exceptions import WebSocketException

    rng = random.Random(cfg.seed)
    st = {"connects": 0, "pings": 0, "pongs": 0, "events": 0, "acks": 0, "errors": 0}
    stop = _async_stop()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + cfg.duration if cfg.duration > 0 else math.inf
    kw: dict[str, Any] = {"open_timeout": 10}
    if cfg.connect.startswith("wss:"):
        kw["ssl"] = _client_ctx()
    if cfg.bind:
        kw["local_addr"] = (cfg.bind, 0)

    async def heartbeat(ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(rng.uniform(cfg.heartbeat_min, cfg.heartbeat_max))
            st["pings"] += 1
            await ws.send(json.dumps({"type": "ping", "ts": round(time.time(), 3)}))

    async def receive(ws: ClientConnection) -> None:
        async for raw in ws:
            msg = _loads(raw)
            if msg.get("type") == "pong":
                st["pongs"] += 1
            elif msg.get("type") == "event":
                st["events"] += 1
                if rng.random() < 0.3:
                    await asyncio.sleep(rng.uniform(0.05, 0.4))
                    await ws.send(json.dumps({"type": "ack", "id": msg.get("id")}))
                    st["acks"] += 1

    while not stop.is_set() and loop.time() < deadline:
        remaining = None if deadline == math.inf else deadline - loop.time()
        try:
            async with connect(cfg.connect, **kw) as ws:
                st["connects"] += 1
                _log(cfg, f"ws-client: connected to {cfg.connect}")
                tasks = [asyncio.create_task(c) for c in (heartbeat(ws), receive(ws), stop.wait())]
                done, pending = await asyncio.wait(tasks, timeout=remaining,
                                                   return_when=asyncio.FIRST_COMPLETED)
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                for t in done:
                    t.result()  # re-raise a connection error, if any
        except (OSError, WebSocketException, asyncio.TimeoutError, ValueError) as e:
            st["errors"] += 1
            _log(cfg, f"ws-client: {type(e).__name__}: {e}")
            await _wait(stop, min(rng.uniform(1.0, 3.0), deadline - loop.time()))
    return _finish(cfg, "ws-client", st)


# ---------------------------------------------------------------- push channel
async def _send_line(writer: asyncio.StreamWriter, obj: Any) -> None:
    writer.write(json.dumps(obj, separators=(",", ":")).encode() + b"\n")
    await writer.drain()


async def push_server(cfg: PushServerConfig) -> dict[str, Any]:
    """A mobile push-notification channel (line JSON over TCP or TLS): answer the device's login
    and heartbeats, push Poisson-timed notifications; the persistent, quiet look-alike of stratum."""
    rng = random.Random(cfg.seed)
    st = {"connections": 0, "logins": 0, "heartbeats": 0, "notifications": 0, "acks": 0}
    stop = _async_stop()

    async def notify(writer: asyncio.StreamWriter, crng: random.Random) -> None:
        n = 0
        while True:
            await asyncio.sleep(crng.expovariate(1.0 / cfg.notify_interval))
            n += 1
            def message(t: str, n: int = n) -> dict[str, Any]:
                return {"op": "msg", "id": n, "title": t[:24], "body": t[24:]}

            writer.write(_sized(crng, 90, 450, message).encode() + b"\n")
            await writer.drain()
            st["notifications"] += 1

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        st["connections"] += 1
        crng = random.Random(rng.random())
        pusher: asyncio.Task[None] | None = None
        try:
            while line := await reader.readline():
                op = _loads(line).get("op")
                if op == "auth":
                    st["logins"] += 1
                    await _send_line(writer, {"op": "auth_ok", "session": f"{crng.getrandbits(64):016x}",
                                              "hb": crng.choice((60, 120, 180, 240))})
                    pusher = pusher or asyncio.create_task(notify(writer, crng))
                elif op == "sub":
                    await _send_line(writer, {"op": "sub_ok", "n": crng.randint(1, 6)})
                elif op == "hb":
                    st["heartbeats"] += 1
                    await _send_line(writer, {"op": "hb_ack"})
                elif op == "ack":
                    st["acks"] += 1
        except (OSError, ssl.SSLError):
            pass
        finally:
            if pusher is not None:
                pusher.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await pusher
            writer.close()

    host, port = _hostport(cfg.listen)
    server = await asyncio.start_server(handler, host, port, ssl=_server_ctx(cfg))
    async with server:
        _log(cfg, f"push-server: listening on {host}:{port} tls={cfg.tls}")
        await _wait(stop, cfg.duration or None)
    return _finish(cfg, "push-server", st)


async def push_client(cfg: PushClientConfig) -> dict[str, Any]:
    """A device on a push channel: log in (device id, app, token), maybe subscribe, then a
    heartbeat every U(min, max) s and an ack for most notifications; reconnect on loss."""
    rng = random.Random(cfg.seed)
    st = {"connects": 0, "heartbeats": 0, "notifications": 0, "acks": 0, "errors": 0}
    stop = _async_stop()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + cfg.duration if cfg.duration > 0 else math.inf
    host, port = _hostport(cfg.connect)
    kw: dict[str, Any] = {"ssl": _client_ctx() if cfg.tls else None}
    if cfg.bind:
        kw["local_addr"] = (cfg.bind, 0)
    app = rng.choice(("com.example.chat", "net.example.mail", "org.example.news", "io.example.bank"))

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _send_line(writer, {"op": "auth", "device": f"{rng.getrandbits(rng.choice((128, 256))):x}",
                                  "app": app, "ver": f"{rng.randint(3, 9)}.{rng.randint(0, 20)}",
                                  "token": _text(rng, rng.randint(40, 140))})
        if rng.random() < 0.5:
            topics = [rng.choice(WORDS) for _ in range(rng.randint(1, 5))]
            await _send_line(writer, {"op": "sub", "topics": topics})

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(rng.uniform(cfg.heartbeat_min, cfg.heartbeat_max))
                st["heartbeats"] += 1
                await _send_line(writer, {"op": "hb", "t": int(time.time())})

        async def receive() -> None:
            while line := await reader.readline():
                msg = _loads(line)
                if msg.get("op") == "msg":
                    st["notifications"] += 1
                    if rng.random() < 0.8:
                        await asyncio.sleep(rng.uniform(0.02, 0.3))
                        await _send_line(writer, {"op": "ack", "id": msg.get("id")})
                        st["acks"] += 1

        remaining = None if deadline == math.inf else deadline - loop.time()
        tasks = [asyncio.create_task(c) for c in (heartbeat(), receive(), stop.wait())]
        done, pending = await asyncio.wait(tasks, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for t in done:
            t.result()

    while not stop.is_set() and loop.time() < deadline:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, **kw), 10)
            st["connects"] += 1
            try:
                await session(reader, writer)
            finally:
                writer.close()
        except (OSError, ssl.SSLError, asyncio.TimeoutError) as e:
            st["errors"] += 1
            _log(cfg, f"push-client: {type(e).__name__}: {e}")
            await _wait(stop, min(rng.uniform(1.0, 3.0), deadline - loop.time()))
    return _finish(cfg, "push-client", st)


# ---------------------------------------------------------------- HTTP servers
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # don't wait for idle keep-alive connections at shutdown

    def __init__(self, cfg: ServerOpts, mode: str) -> None:
        super().__init__(_hostport(cfg.listen), _Handler)
        self.cfg, self.mode, self.ctx = cfg, mode, _server_ctx(cfg)
        self.stats: dict[str, int] = {"connections": 0, "requests": 0}
        self.lock, self.stopping = threading.Lock(), threading.Event()
        self.rng, self.t0 = random.Random(cfg.seed), time.time()
        self.block0 = self.rng.randint(18_000_000, 20_000_000)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.ctx:  # TLS handshake in the per-connection thread, not the accept loop
            request = self.ctx.wrap_socket(request, server_side=True)
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        _log(self.cfg, f"http: error from {client_address}: {sys.exc_info()[1]!r}")

    def bump(self, key: str) -> None:
        with self.lock:
            self.stats[key] = self.stats.get(key, 0) + 1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nginx/1.24.0"
    sys_version = ""
    timeout = 120  # keep-alive idle limit, like geth/nginx
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.served = 0  # connections are counted at their first answered request

    def log_message(self, format: str, *args: Any) -> None:
        _log(self.server.cfg, "http: " + format % args)

    def _send(self, code: int, body: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        if not self.served:
            self.server.bump("connections")
        self.served += 1
        if code == 200:
            self.server.bump("requests")

    def do_GET(self) -> None:
        srv, rng = self.server, self.server.rng
        if srv.mode != "longpoll" or not self.path.startswith("/poll"):
            return self._send(404, '{"error":"not found"}')
        cfg: Any = srv.cfg
        srv.stopping.wait(rng.uniform(cfg.hold_min, cfg.hold_max))
        ids = [rng.randint(100_000, 999_999) for _ in range(rng.choice([0, 0, 1, 1, 2, 3]))]
        cursor = rng.randint(10**8, 10**9 - 1)

        def build(t: str) -> dict[str, Any]:
            n = max(len(ids), 1)
            return {"cursor": cursor, "events": [
                {"id": e, "type": "update", "msg": t[i * len(t) // n:(i + 1) * len(t) // n]}
                for i, e in enumerate(ids)]}

        self._send(200, _sized(rng, 30, 500, build))

    def do_POST(self) -> None:
        srv, rng = self.server, self.server.rng
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if srv.mode != "rpc":
            return self._send(404, '{"error":"not found"}')
        req = _loads(body)
        method, rid = req.get("method"), req.get("id")
        srv.bump(f"m_{method}")
        results: dict[str, Any] = {
            "eth_blockNumber": hex(srv.block0 + int((time.time() - srv.t0) / 12)),
            "eth_getBalance": hex(rng.randint(0, 10**21)),
            "net_version": "1",
            "eth_call": "0x" + f"{rng.getrandbits(96):064x}",
        }
        out: dict[str, Any] = {"jsonrpc": "2.0", "id": rid}
        if method in results:
            out["result"] = results[method]
        else:
            out["error"] = {"code": -32601, "message": "the method does not exist"}
        self._send(200, json.dumps(out))


def _serve_http(cfg: ServerOpts, mode: str, name: str) -> dict[str, Any]:
    stop = _stop_flag()
    srv = _Server(cfg, mode)
    try:
        threading.Thread(target=srv.serve_forever, args=(0.2,), daemon=True).start()
        _log(cfg, f"{name}: listening on {cfg.listen} tls={cfg.tls}")
        _sleep_until(time.monotonic() + cfg.duration if cfg.duration > 0 else math.inf, stop)
    finally:
        srv.stopping.set()
        srv.shutdown()
        srv.server_close()
    with srv.lock:
        return _finish(cfg, name, dict(srv.stats))


def longpoll_server(cfg: LongPollServerConfig) -> dict[str, Any]:
    """Hold each GET /poll for U(hold_min, hold_max) s, then answer 30-500 bytes of JSON."""
    return _serve_http(cfg, "longpoll", "longpoll-server")


def json_rpc_server(cfg: JsonRpcServerConfig) -> dict[str, Any]:
    """Answer eth_blockNumber / eth_getBalance / net_version / eth_call POSTs."""
    return _serve_http(cfg, "rpc", "json-rpc-server")


# ---------------------------------------------------------------- HTTP clients
def _http_loop(cfg: ClientOpts, url: str, name: str,
               step: Callable[[HTTPConnection, float], None]) -> dict[str, Any]:
    """Run ``step(conn, deadline)`` repeatedly on one keep-alive connection until the deadline."""
    _sigterm_to_interrupt()
    u = urlsplit(url)
    cls = HTTPSConnection if u.scheme == "https" else HTTPConnection
    kw: dict[str, Any] = {"context": _client_ctx()} if u.scheme == "https" else {}
    conn = cls(u.hostname or "127.0.0.1", u.port, timeout=60,
               source_address=(cfg.bind, 0) if cfg.bind else None, **kw)
    deadline = time.monotonic() + cfg.duration if cfg.duration > 0 else math.inf
    st: dict[str, Any] = {"requests": 0, "errors": 0}
    try:
        while time.monotonic() < deadline:
            try:
                step(conn, deadline)
                st["requests"] += 1
            except (OSError, HTTPException) as e:
                conn.close()
                if time.monotonic() >= deadline:
                    break
                st["errors"] += 1
                _log(cfg, f"{name}: {type(e).__name__}: {e}")
                time.sleep(min(random.uniform(0.5, 2.0), max(0.0, deadline - time.monotonic())))
    except KeyboardInterrupt:
        pass
    finally:
        conn.close()
    return _finish(cfg, name, st)


def _bounded(conn: HTTPConnection, deadline: float) -> None:
    """Cap the socket timeout so a held request never outlives the deadline."""
    if conn.sock is not None and deadline != math.inf:
        conn.sock.settimeout(max(0.05, deadline - time.monotonic()))


def longpoll_client(cfg: LongPollClientConfig) -> dict[str, Any]:
    """GET the poll URL again as soon as each held response arrives (same connection)."""
    u = urlsplit(cfg.url)
    path = (u.path or "/poll") + (f"?{u.query}" if u.query else "")
    rng = random.Random(cfg.seed)
    headers = {"Accept": "application/json", "User-Agent": "Mozilla/5.0 (X11; Linux x86_64)"}

    def step(conn: HTTPConnection, deadline: float) -> None:
        if conn.sock is None:
            conn.connect()
        _bounded(conn, deadline)
        conn.request("GET", path, headers=headers)
        conn.getresponse().read()
        time.sleep(rng.uniform(0.002, 0.03))

    return _http_loop(cfg, cfg.url, "longpoll-client", step)


def json_rpc_client(cfg: JsonRpcClientConfig) -> dict[str, Any]:
    """POST small JSON-RPC calls at U(interval_min, interval_max) s intervals."""
    u = urlsplit(cfg.url)
    rng = random.Random(cfg.seed)
    addrs = [f"0x{rng.getrandbits(160):040x}" for _ in range(3)]
    headers = {"Content-Type": "application/json", "User-Agent": "web3.py/6.15.1"}
    ids = iter(range(1, 1 << 62))

    def step(conn: HTTPConnection, deadline: float) -> None:
        time.sleep(min(rng.uniform(cfg.interval_min, cfg.interval_max),
                       max(0.0, deadline - time.monotonic())))
        if time.monotonic() >= deadline:
            raise TimeoutError("deadline")
        method = rng.choices(["eth_blockNumber", "eth_getBalance", "eth_call", "net_version"],
                             [5, 2, 2, 1])[0]
        by_method: dict[str, list[Any]] = {
            "eth_getBalance": [rng.choice(addrs), "latest"],
            "eth_call": [{"to": rng.choice(addrs),
                          "data": "0x70a08231" + f"{rng.getrandbits(160):064x}"}, "latest"],
        }
        params = by_method.get(method, [])
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": next(ids)})
        if conn.sock is None:
            conn.connect()
        _bounded(conn, deadline)
        conn.request("POST", u.path or "/", body=body, headers=headers)
        conn.getresponse().read()

    return _http_loop(cfg, cfg.url, "json-rpc-client", step)


# ---------------------------------------------------------------- typist
def _drain(stream: IO[bytes], verbose: bool) -> None:
    for chunk in iter(lambda: stream.read(4096), b""):
        if verbose:
            sys.stderr.buffer.write(chunk)
            sys.stderr.flush()


def typist(cfg: TypistConfig) -> dict[str, Any]:
    """Type commands into ``cfg.cmd``'s stdin one key at a time; ``exit`` at the deadline."""
    if not cfg.cmd:
        raise SystemExit("typist: no command given (use: typist [opts] -- CMD ARGS...)")
    _sigterm_to_interrupt()
    rng = random.Random(cfg.seed)
    cmds = DEFAULT_COMMANDS
    if cfg.commands_file:
        with open(cfg.commands_file) as f:
            cmds = [ln.rstrip("\n") for ln in f if ln.strip() and not ln.startswith("#")]
    proc = subprocess.Popen(cfg.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0)
    assert proc.stdin and proc.stdout and proc.stderr
    stdin = proc.stdin
    for s in (proc.stdout, proc.stderr):
        threading.Thread(target=_drain, args=(s, cfg.verbose), daemon=True).start()
    deadline = time.monotonic() + cfg.duration if cfg.duration > 0 else math.inf
    st: dict[str, Any] = {"chars": 0, "commands": 0, "typos": 0, "idles": 0, "child_rc": None}

    def nap(sec: float) -> None:
        _sleep_until(min(time.monotonic() + sec, deadline))

    def key(ch: str) -> None:
        stdin.write(ch.encode())
        stdin.flush()
        st["chars"] += 1
        gap = min(max(rng.lognormvariate(math.log(0.18), 0.45), 0.06), 1.2)
        time.sleep(gap / max(cfg.speed, 1e-3))

    def line(text: str) -> None:
        for ch in text:
            if ch.isalnum() and rng.random() < cfg.typo_prob:
                key(rng.choice("qwertyuiopasdfghjklzxcvbnm"))
                key("\x7f")
                st["typos"] += 1
            key(ch)
        key("\n")

    interrupted = False
    try:
        nap(cfg.start_delay)
        last = None
        while time.monotonic() < deadline and proc.poll() is None:
            last = rng.choice([c for c in cmds if c != last] or cmds)
            line(last)
            st["commands"] += 1
            nap(rng.uniform(cfg.read_min, cfg.read_max))
            if rng.random() < cfg.idle_prob:
                st["idles"] += 1
                nap(rng.uniform(cfg.idle_min, cfg.idle_max))
        if proc.poll() is None:
            line("exit")
    except KeyboardInterrupt:
        interrupted = True
    except OSError as e:
        _log(cfg, f"typist: child stdin closed: {e}")
    finally:
        with contextlib.suppress(OSError):
            if interrupted and proc.poll() is None:
                stdin.write(b"\x15exit\n")
            stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    st["child_rc"] = proc.returncode
    if proc.returncode:
        _log(cfg, f"typist: child exited with {proc.returncode}")
    return _finish(cfg, "typist", st)


# ---------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.lab.apps",
                                description=(__doc__ or "").split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, cls: type, **extra: Any) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=(RUNNERS[cls].__doc__ or "").split("\n")[0])
        sp.set_defaults(cls=cls)
        for f in dataclasses.fields(cls):
            if f.name == "cmd":
                continue
            flag = "--" + f.name.replace("_", "-")
            if f.type in ("bool", bool):
                sp.add_argument(flag, action="store_true")
            else:
                conv = {"float": float, "int | None": int}.get(str(f.type), str)
                sp.add_argument(flag, type=conv, default=extra.get(f.name, f.default),
                                help="default: %(default)s")
        return sp

    add("ws-server", WsServerConfig, listen="127.0.0.1:8765")
    add("ws-client", WsClientConfig, connect="ws://127.0.0.1:8765/ws")
    add("longpoll-server", LongPollServerConfig)
    add("longpoll-client", LongPollClientConfig)
    add("json-rpc-server", JsonRpcServerConfig, listen="127.0.0.1:8545")
    add("json-rpc-client", JsonRpcClientConfig)
    add("push-server", PushServerConfig, listen="127.0.0.1:5223")
    add("push-client", PushClientConfig)
    add("typist", TypistConfig).add_argument("cmd", nargs=argparse.REMAINDER)
    return p


RUNNERS: dict[type, Callable[[Any], Any]] = {
    WsServerConfig: ws_server, WsClientConfig: ws_client,
    LongPollServerConfig: longpoll_server, LongPollClientConfig: longpoll_client,
    JsonRpcServerConfig: json_rpc_server, JsonRpcClientConfig: json_rpc_client,
    PushServerConfig: push_server, PushClientConfig: push_client,
    TypistConfig: typist,
}


def main(argv: list[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    if getattr(ns, "cmd", None) and ns.cmd[0] == "--":
        ns.cmd = ns.cmd[1:]
    cfg = ns.cls(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(ns.cls)})
    with contextlib.suppress(KeyboardInterrupt):
        res = RUNNERS[ns.cls](cfg)
        if asyncio.iscoroutine(res):
            asyncio.run(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
