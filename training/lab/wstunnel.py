"""Reverse TCP tunnel over one WebSocket, in the style of chisel / frp / cloudflared agents.

The *agent* (inside) keeps one long-lived outbound WebSocket (ws:// or wss://) to the
*server* (outside).  The server listens on a local TCP port (``--expose``); each TCP
connection to it becomes a channel multiplexed over the WebSocket to the agent, which
connects it to ``--target`` on its side (e.g. 127.0.0.1:22, an sshd).

Usage::

    python -m training.lab.wstunnel server --listen 0.0.0.0:8080 --expose 127.0.0.1:2222 \\
        [--path /ws] [--tls --cert cert.pem --key key.pem] [--duration S] [--verbose]
    python -m training.lab.wstunnel agent --connect ws://10.0.0.1:8080/ws --target 127.0.0.1:22 \\
        [--bind SRC_IP] [--keepalive 25] [--retry-pause 1] [--duration S] [--seed N] [--verbose]

Framing: binary messages ``[4-byte channel id][1-byte type][payload]`` (network order)
with types OPEN (server -> agent), DATA, CLOSE (half-close: no more data from the
sender), PING and PONG (application-level keepalive: the agent pings after
``--keepalive`` seconds without sending, the server echoes the payload).  TCP data is
forwarded as soon as it is read, so interactive keystrokes keep their timing on the
wire.  The agent reconnects with jittered exponential backoff when the WebSocket drops.
Both sides exit 0 on SIGTERM/SIGINT or after ``--duration``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import random
import signal
import ssl
import struct
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Request, Response, ServerConnection, serve
from websockets.exceptions import WebSocketException

from training.lab.options import add_config_options, cap_tls

OPEN, DATA, CLOSE, PING, PONG = 1, 2, 3, 4, 5
HEADER = struct.Struct("!IB")
CHUNK = 32768
MAX_BACKOFF = 30.0


def _opt(default: Any, help: str) -> Any:
    """Dataclass field whose help text also feeds the generated argparse option."""
    return field(default=default, metadata={"help": help})


@dataclass
class ServerConfig:
    listen: str = _opt("0.0.0.0:8080", "HOST:PORT of the WebSocket server (port 0: any free port)")
    expose: str = _opt("127.0.0.1:2222", "HOST:PORT whose TCP connections are tunnelled to the agent")
    path: str = _opt("/ws", "WebSocket URL path (others get 404)")
    tls: bool = _opt(False, "serve wss:// (needs --cert and --key)")
    cert: str | None = _opt(None, "PEM certificate for --tls")
    key: str | None = _opt(None, "PEM private key for --tls")
    tls_max: str | None = _opt(None, "newest TLS version served: 1.2 or 1.3 (default: 1.3)")
    duration: float | None = _opt(None, "stop after N seconds (default: until SIGTERM)")
    verbose: bool = _opt(False, "log sessions and channels to stderr")


@dataclass
class AgentConfig:
    connect: str = _opt("ws://127.0.0.1:8080/ws", "server URL, ws:// or wss:// (cert not verified)")
    target: str = _opt("127.0.0.1:22", "HOST:PORT each channel is connected to")
    bind: str | None = _opt(None, "source IP address")
    keepalive: float = _opt(25.0, "app-level PING after N s without sending (0: off)")
    retry_pause: float = _opt(1.0, "first reconnect backoff in s (jittered, doubles, max 30)")
    duration: float | None = _opt(None, "stop after N seconds (default: until SIGTERM)")
    seed: int | None = _opt(None, "random seed (backoff jitter, ping payloads)")
    verbose: bool = _opt(False, "log sessions and channels to stderr")


@dataclass
class TunnelStats:
    """Counters for one side; ``bytes_up`` flows towards the target, ``bytes_down`` back."""

    listen_port: int = 0  # server: bound WebSocket port
    expose_port: int = 0  # server: bound exposed TCP port
    sessions: int = 0  # WebSocket connections accepted (server) / established (agent)
    connect_failures: int = 0  # agent: failed or dropped connection attempts
    channels: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    pings: int = 0  # sent (agent) / answered (server)
    ready: asyncio.Event = field(default_factory=asyncio.Event, repr=False)  # listening / connected


def split_hostport(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def _log(verbose: bool, msg: str) -> None:
    if verbose:
        print(f"wstunnel: {msg}", file=sys.stderr, flush=True)


class _Mux:
    """One WebSocket session carrying many channels (``side`` is 'server' or 'agent')."""

    def __init__(self, ws: ServerConnection | ClientConnection, stats: TunnelStats, side: str,
                 verbose: bool, target: str = "") -> None:
        self.ws, self.stats, self.side, self.verbose, self.target = ws, stats, side, verbose, target
        self.queues: dict[int, asyncio.Queue[bytes | None]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.next_id = 1
        self.last_send = self.last_recv = time.monotonic()
        self.ping_at: float | None = None

    async def send(self, cid: int, typ: int, payload: bytes = b"") -> None:
        await self.ws.send(HEADER.pack(cid, typ) + payload)
        self.last_send = time.monotonic()

    def open_local(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Server: a client connected to the exposed port; announce a new channel."""
        cid, self.next_id = self.next_id, self.next_id + 1
        self._spawn(cid, self._channel(cid, reader, writer))

    def _spawn(self, cid: int, coro: Coroutine[Any, Any, None]) -> None:
        self.queues[cid] = asyncio.Queue()
        self.stats.channels += 1
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def serve(self) -> None:
        """Dispatch incoming messages until the WebSocket closes."""
        async for msg in self.ws:
            self.last_recv = time.monotonic()
            if isinstance(msg, str) or len(msg) < HEADER.size:
                continue
            cid, typ = HEADER.unpack_from(msg)
            payload = msg[HEADER.size:]
            if typ == PING:
                self.stats.pings += 1
                await self.send(cid, PONG, payload)
            elif typ == OPEN and self.side == "agent" and cid not in self.queues:
                self._spawn(cid, self._channel(cid, None, None))
            elif typ in (DATA, CLOSE) and (queue := self.queues.get(cid)) is not None:
                queue.put_nowait(payload if typ == DATA else None)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _channel(self, cid: int, reader: asyncio.StreamReader | None,
                       writer: asyncio.StreamWriter | None) -> None:
        queue = self.queues[cid]
        try:
            if reader is None:
                try:
                    reader, writer = await asyncio.open_connection(*split_hostport(self.target))
                except OSError as e:
                    _log(self.verbose, f"channel {cid}: connect {self.target} failed: {e}")
                    await self.send(cid, CLOSE)
                    return
            else:
                await self.send(cid, OPEN)
            assert writer is not None
            _log(self.verbose, f"{self.side} channel {cid} open")
            tasks = [asyncio.create_task(self._tcp_to_ws(cid, reader)),
                     asyncio.create_task(self._ws_to_tcp(queue, writer))]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                for task in tasks:
                    task.cancel()
                results = await asyncio.gather(*tasks, return_exceptions=True)
            if any(isinstance(r, Exception) for r in results):  # reset or write error: abort
                with contextlib.suppress(WebSocketException, OSError):
                    await self.send(cid, CLOSE)
            _log(self.verbose, f"{self.side} channel {cid} closed")
        finally:
            self.queues.pop(cid, None)
            if writer is not None:
                writer.close()

    def _count(self, n: int, up: bool) -> None:
        if up:
            self.stats.bytes_up += n
        else:
            self.stats.bytes_down += n

    async def _tcp_to_ws(self, cid: int, reader: asyncio.StreamReader) -> None:
        while data := await reader.read(CHUNK):
            await self.send(cid, DATA, data)
            self._count(len(data), self.side == "server")
        await self.send(cid, CLOSE)

    async def _ws_to_tcp(self, queue: asyncio.Queue[bytes | None], writer: asyncio.StreamWriter) -> None:
        while (data := await queue.get()) is not None:
            writer.write(data)
            await writer.drain()
            self._count(len(data), self.side == "agent")
        if writer.can_write_eof():
            writer.write_eof()


async def _run_until(coro: Coroutine[Any, Any, None], stop: asyncio.Event | None,
                     duration: float | None) -> None:
    """Run ``coro`` until it ends, ``stop`` is set or ``duration`` elapses; then cancel it."""
    task = asyncio.ensure_future(coro)
    waiter = asyncio.ensure_future((stop or asyncio.Event()).wait())
    try:
        await asyncio.wait({task, waiter}, timeout=duration, return_when=asyncio.FIRST_COMPLETED)
    finally:
        task.cancel()
        waiter.cancel()
        result = (await asyncio.gather(task, waiter, return_exceptions=True))[0]
    if isinstance(result, Exception):
        raise result


async def _server_main(cfg: ServerConfig, stats: TunnelStats) -> None:
    agents: list[_Mux] = []  # the newest agent gets the new channels

    async def on_ws(ws: ServerConnection) -> None:
        mux = _Mux(ws, stats, "server", cfg.verbose)
        stats.sessions += 1
        agents.append(mux)
        _log(cfg.verbose, f"agent connected from {ws.remote_address}")
        try:
            await mux.serve()
        except WebSocketException as e:
            _log(cfg.verbose, f"agent session error: {e}")
        finally:
            agents.remove(mux)
            await mux.close()
            _log(cfg.verbose, "agent disconnected")

    async def on_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if agents:
            agents[-1].open_local(reader, writer)
        else:
            writer.close()

    def check_path(conn: ServerConnection, request: Request) -> Response | None:
        if request.path.split("?")[0] != cfg.path:
            return conn.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        return None

    ctx = None
    if cfg.tls:
        if not (cfg.cert and cfg.key):
            raise ValueError("--tls needs --cert and --key")
        ctx = cap_tls(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), cfg.tls_max)
        ctx.load_cert_chain(cfg.cert, cfg.key)
    host, port = split_hostport(cfg.listen)
    tcp = await asyncio.start_server(on_tcp, *split_hostport(cfg.expose))
    try:
        async with serve(on_ws, host, port, ssl=ctx, process_request=check_path, compression=None,
                         ping_interval=None, max_size=2 * CHUNK) as server:
            stats.listen_port = server.sockets[0].getsockname()[1]
            stats.expose_port = tcp.sockets[0].getsockname()[1]
            _log(cfg.verbose, f"listening on {host}:{stats.listen_port}{cfg.path}, "
                              f"exposing {cfg.expose.rpartition(':')[0]}:{stats.expose_port}")
            stats.ready.set()
            await asyncio.Future()  # until cancelled; leaving ``serve`` closes sessions and channels
    finally:
        stats.ready.clear()
        tcp.close()


async def run_server(cfg: ServerConfig, stop: asyncio.Event | None = None,
                     stats: TunnelStats | None = None) -> TunnelStats:
    """Serve until ``stop`` is set or ``cfg.duration`` elapses; ``stats.ready`` is set once listening."""
    stats = stats if stats is not None else TunnelStats()
    await _run_until(_server_main(cfg, stats), stop, cfg.duration)
    return stats


async def _keepalive(mux: _Mux, every: float, rng: random.Random) -> None:
    while True:
        await asyncio.sleep(max(0.05, mux.last_send + every - time.monotonic()))
        now = time.monotonic()
        if mux.ping_at is not None and mux.last_recv < mux.ping_at and now - mux.ping_at >= every:
            _log(mux.verbose, "keepalive: no answer, dropping the session")
            await mux.ws.close()
            return
        if now - mux.last_send >= every:
            mux.ping_at = now
            await mux.send(0, PING, rng.randbytes(8))
            mux.stats.pings += 1


async def _agent_main(cfg: AgentConfig, stats: TunnelStats) -> None:
    rng = random.Random(cfg.seed)
    kwargs: dict[str, Any] = {"local_addr": (cfg.bind, 0)} if cfg.bind else {}
    if cfg.connect.startswith("wss:"):
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        kwargs["ssl"] = ctx
    pause = cfg.retry_pause
    while True:
        try:
            async with connect(cfg.connect, compression=None, ping_interval=None, proxy=None,
                               max_size=2 * CHUNK, **kwargs) as ws:
                stats.sessions += 1
                pause = cfg.retry_pause
                _log(cfg.verbose, f"connected to {cfg.connect}")
                mux = _Mux(ws, stats, "agent", cfg.verbose, cfg.target)
                stats.ready.set()
                ka = asyncio.create_task(_keepalive(mux, cfg.keepalive, rng)) if cfg.keepalive > 0 else None
                try:
                    await mux.serve()
                finally:
                    stats.ready.clear()
                    if ka is not None:
                        ka.cancel()
                    await mux.close()
            _log(cfg.verbose, "session closed")
        except (OSError, asyncio.TimeoutError, WebSocketException) as e:
            stats.connect_failures += 1
            _log(cfg.verbose, f"connection failed: {e!r}")
        await asyncio.sleep(pause * (0.5 + rng.random()))
        pause = min(pause * 2, MAX_BACKOFF)


async def run_agent(cfg: AgentConfig, stop: asyncio.Event | None = None,
                    stats: TunnelStats | None = None) -> TunnelStats:
    """Keep the tunnel up (reconnecting) until ``stop`` is set or ``cfg.duration`` elapses."""
    stats = stats if stats is not None else TunnelStats()
    await _run_until(_agent_main(cfg, stats), stop, cfg.duration)
    return stats


def _parser() -> argparse.ArgumentParser:
    """Build the CLI from the config dataclasses (one option per field, same defaults)."""
    p = argparse.ArgumentParser(prog="python -m training.lab.wstunnel",
                                description=(__doc__ or "").split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, cls in (("server", ServerConfig), ("agent", AgentConfig)):
        sp = sub.add_parser(name, help=f"run the tunnel {name}")
        add_config_options(sp, cls)
    return p


async def _amain(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    def options(cls: type) -> dict[str, Any]:
        return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}

    if args.cmd == "server":
        await run_server(ServerConfig(**options(ServerConfig)), stop)
    else:
        await run_agent(AgentConfig(**options(AgentConfig)), stop)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cmd == "server" and args.tls and not (args.cert and args.key):
        _parser().error("--tls needs --cert and --key")
    return asyncio.run(_amain(args))


if __name__ == "__main__":
    sys.exit(main())
