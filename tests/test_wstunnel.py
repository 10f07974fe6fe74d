"""End-to-end tests of the WebSocket reverse tunnel (training/lab/wstunnel.py) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.ports import free_port
from training.lab.wstunnel import AgentConfig, ServerConfig, TunnelStats, run_agent, run_server

REPO = Path(__file__).resolve().parents[1]


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(4096):
        writer.write(data)
        await writer.drain()
    writer.close()


async def roundtrip(port: int, payloads: list[bytes], timeout: float = 5.0) -> bytes:
    """Send each payload in turn and read its echo back through the tunnel."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    got = b""
    try:
        for p in payloads:
            writer.write(p)
            await writer.drain()
            got += await asyncio.wait_for(reader.readexactly(len(p)), timeout)
    finally:
        writer.close()
    return got


async def wait_tunnel(port: int, timeout: float = 8.0) -> None:
    """Retry a one-byte round trip until the agent is attached and the tunnel works."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            assert await roundtrip(port, [b"?"], 1.0) == b"?"
            return
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def tunnel(tls_files: tuple[str, str] | None = None) -> AsyncIterator[tuple[int, TunnelStats,
                                                                                   TunnelStats]]:
    echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
    target = echo.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    scfg = ServerConfig(listen="127.0.0.1:0", expose="127.0.0.1:0")
    if tls_files:
        scfg.tls, (scfg.cert, scfg.key) = True, tls_files
    sstats = TunnelStats()
    server = asyncio.create_task(run_server(scfg, stop, sstats))
    await asyncio.wait_for(sstats.ready.wait(), 5)
    scheme = "wss" if tls_files else "ws"
    acfg = AgentConfig(connect=f"{scheme}://127.0.0.1:{sstats.listen_port}/ws",
                       target=f"127.0.0.1:{target}", retry_pause=0.1, seed=1)
    astats = TunnelStats()
    agent = asyncio.create_task(run_agent(acfg, stop, astats))
    await asyncio.wait_for(astats.ready.wait(), 5)
    try:
        await wait_tunnel(sstats.expose_port)
        yield sstats.expose_port, sstats, astats
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(server, agent), 5)
        echo.close()


async def _two_channels() -> None:
    async with tunnel() as (port, sstats, astats):
        big = bytes(range(256)) * 800  # 200 KiB, several frames
        a, b = await asyncio.gather(roundtrip(port, [b"hello", b"world\n", big]),
                                    roundtrip(port, [b"x" * 10 for _ in range(20)]))
        assert a == b"helloworld\n" + big and b == b"x" * 200
        # half-close: the client's EOF reaches the target, which answers and closes
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"last words")
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b"last words"
        writer.close()
    assert sstats.sessions == 1 and sstats.channels >= 3 and astats.channels == sstats.channels
    assert sstats.bytes_up == astats.bytes_up >= len(big) + 200
    assert sstats.bytes_down == astats.bytes_down == sstats.bytes_up


def test_echo_and_concurrent_channels() -> None:
    asyncio.run(_two_channels())


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=tunnel", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)

    async def go() -> None:
        async with tunnel((str(cert), str(key))) as (port, _, astats):
            assert await roundtrip(port, [b"secret", b"stuff"]) == b"secretstuff"
            assert astats.sessions == 1

    asyncio.run(go())


async def _reconnect() -> None:
    echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
    listen, expose = free_port(), free_port()
    scfg = ServerConfig(listen=f"127.0.0.1:{listen}", expose=f"127.0.0.1:{expose}")
    acfg = AgentConfig(connect=f"ws://127.0.0.1:{listen}/ws", retry_pause=0.1, keepalive=0.2,
                       target=f"127.0.0.1:{echo.sockets[0].getsockname()[1]}")
    astop, astats = asyncio.Event(), TunnelStats()
    agent = asyncio.create_task(run_agent(acfg, astop, astats))
    for round_ in (1, 2):
        sstop, sstats = asyncio.Event(), TunnelStats()
        server = asyncio.create_task(run_server(scfg, sstop, sstats))
        await wait_tunnel(expose)
        assert await roundtrip(expose, [b"round %d" % round_]) == b"round %d" % round_
        await asyncio.sleep(0.5)  # idle: keepalive pings flow
        assert sstats.pings >= 1
        sstop.set()
        await asyncio.wait_for(server, 5)
    assert astats.sessions == 2
    astop.set()
    await asyncio.wait_for(agent, 5)
    echo.close()


def test_agent_reconnects_after_server_restart() -> None:
    asyncio.run(_reconnect())


def test_cli_sigterm_exits_zero() -> None:
    listen, expose = free_port(), free_port()
    cmd = [sys.executable, "-m", "training.lab.wstunnel"]

    async def go() -> tuple[int | None, int | None]:
        echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
        target = echo.sockets[0].getsockname()[1]
        server = subprocess.Popen(cmd + ["server", "--listen", f"127.0.0.1:{listen}",
                                         "--expose", f"127.0.0.1:{expose}"], cwd=REPO)
        agent = subprocess.Popen(cmd + ["agent", "--connect", f"ws://127.0.0.1:{listen}/ws",
                                        "--target", f"127.0.0.1:{target}", "--retry-pause", "0.1",
                                        "--bind", "127.0.0.1"], cwd=REPO)
        try:
            await wait_tunnel(expose, 10)
            assert await roundtrip(expose, [b"via cli"]) == b"via cli"
            for p in (agent, server):
                p.send_signal(signal.SIGTERM)
            codes = [await asyncio.to_thread(p.wait, 5) for p in (agent, server)]
        finally:
            for p in (agent, server):
                if p.poll() is None:
                    p.kill()
            echo.close()
        return codes[0], codes[1]

    assert asyncio.run(go()) == (0, 0)
