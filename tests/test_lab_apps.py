"""Loopback tests for training.lab.apps: each server/client pair, TLS, SIGTERM and the typist."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ports import free_port
from training.lab import apps

REPO = Path(__file__).resolve().parents[1]


def start(cmd: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "training.lab.apps", cmd, "--verbose", *args],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_port(port: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"port {port} never opened")


def stats(proc: subprocess.Popen[str], timeout: float = 15.0) -> dict[str, int]:
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    lines = [ln for ln in err.splitlines() if " STATS " in ln]
    assert lines, err
    return json.loads(lines[-1].split(" STATS ", 1)[1])


def run_pair(server: list[str], client: list[str], port: int) -> tuple[dict, dict]:
    """Run the client for 2.5 s against a fresh server, then SIGTERM the server."""
    srv = start(*server, "--listen", f"127.0.0.1:{port}", "--seed", "1")
    try:
        wait_port(port)
        cli = stats(start(*client, "--duration", "2.5", "--seed", "2"))
        srv.send_signal(signal.SIGTERM)
        return stats(srv, timeout=5), cli
    finally:
        srv.kill()


def tls_args(tls: bool, cert: tuple[str, str]) -> list[str]:
    return ["--tls", "--cert", cert[0], "--key", cert[1]] if tls else []


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
def test_websocket_pair(tls: bool, cert: tuple[str, str]) -> None:
    port = free_port()
    scheme = "wss" if tls else "ws"
    srv, cli = run_pair(
        ["ws-server", "--event-interval", "0.3", *tls_args(tls, cert)],
        ["ws-client", "--connect", f"{scheme}://127.0.0.1:{port}/feed",
         "--heartbeat-min", "0.2", "--heartbeat-max", "0.4", "--bind", "127.0.0.1"], port)
    assert srv["connections"] == 1 and cli["connects"] == 1 and cli["errors"] == 0
    assert srv["pings"] >= 4 and srv["pongs"] == srv["pings"]
    assert cli["pings"] >= srv["pings"] and cli["pongs"] >= srv["pongs"] - 1
    assert srv["events"] >= 2 and cli["events"] >= srv["events"] - 1
    assert srv["acks"] == cli["acks"]


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_longpoll_pair(tls: bool, cert: tuple[str, str]) -> None:
    port = free_port()
    scheme = "https" if tls else "http"
    srv, cli = run_pair(
        ["longpoll-server", "--hold-min", "0.3", "--hold-max", "0.6", *tls_args(tls, cert)],
        ["longpoll-client", "--url", f"{scheme}://127.0.0.1:{port}/poll",
         "--bind", "127.0.0.1"], port)
    assert srv["connections"] == 1, "polls must reuse one keep-alive connection"
    assert cli["requests"] >= 3 and cli["errors"] == 0
    assert srv["requests"] >= cli["requests"]


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_json_rpc_pair(tls: bool, cert: tuple[str, str]) -> None:
    port = free_port()
    scheme = "https" if tls else "http"
    srv, cli = run_pair(
        ["json-rpc-server", *tls_args(tls, cert)],
        ["json-rpc-client", "--url", f"{scheme}://127.0.0.1:{port}/",
         "--interval-min", "0.1", "--interval-max", "0.3"], port)
    assert srv["connections"] == 1
    assert cli["requests"] >= 5 and cli["errors"] == 0
    assert srv["requests"] == cli["requests"]
    assert sum(v for k, v in srv.items() if k.startswith("m_eth_") or k == "m_net_version") \
        == srv["requests"]


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_push_channel_pair(tls: bool, cert: tuple[str, str]) -> None:
    """One persistent connection: a login, heartbeats answered one for one, notifications mostly
    acknowledged."""
    port = free_port()
    srv, cli = run_pair(
        ["push-server", "--notify-interval", "0.3", *tls_args(tls, cert)],
        ["push-client", "--connect", f"127.0.0.1:{port}", *(["--tls"] if tls else []),
         "--heartbeat-min", "0.2", "--heartbeat-max", "0.4", "--bind", "127.0.0.1"], port)
    assert srv["logins"] == 1 and cli["connects"] == 1 and cli["errors"] == 0  # (the port probe connects too)
    assert cli["heartbeats"] >= 4 and srv["heartbeats"] >= cli["heartbeats"] - 1
    assert srv["notifications"] >= 2 and cli["notifications"] >= srv["notifications"] - 1
    assert srv["acks"] == cli["acks"] and 0 < cli["acks"] <= cli["notifications"]


def test_json_rpc_responses_in_process() -> None:
    """Importable API: server in a thread, raw requests checked for JSON-RPC shape."""
    import http.client
    import threading

    port = free_port()
    cfg = apps.JsonRpcServerConfig(listen=f"127.0.0.1:{port}", duration=1.5, seed=3)
    out: dict = {}
    th = threading.Thread(target=lambda: out.update(apps.json_rpc_server(cfg)))
    th.start()
    wait_port(port)
    conn = http.client.HTTPConnection("127.0.0.1", port)
    for i, m in enumerate(["eth_blockNumber", "net_version", "eth_getBalance", "bogus"]):
        conn.request("POST", "/", json.dumps({"jsonrpc": "2.0", "method": m, "id": i}),
                     {"Content-Type": "application/json"})
        resp = json.loads(conn.getresponse().read())
        assert resp["id"] == i
        if m == "bogus":
            assert resp["error"]["code"] == -32601
        else:
            assert isinstance(resp["result"], str)
    conn.close()
    th.join(5)
    assert out["requests"] == 4 and out["connections"] == 1


def test_ws_in_process_sizes() -> None:
    """Coroutine API; event messages are 50-400 bytes of JSON."""
    from websockets.asyncio.client import connect

    port = free_port()

    async def go() -> list[str]:
        srv = asyncio.create_task(apps.ws_server(apps.WsServerConfig(
            listen=f"127.0.0.1:{port}", event_interval=0.05, duration=1.5, seed=4)))
        await asyncio.sleep(0.3)
        got: list[str] = []
        async with connect(f"ws://127.0.0.1:{port}/") as ws:
            while len(got) < 10:
                got.append(str(await ws.recv()))
        await srv
        return got

    msgs = asyncio.run(go())
    assert all(json.loads(m)["type"] == "event" and 50 <= len(m) <= 400 for m in msgs)


def test_sigterm_exits_zero() -> None:
    p1, p2 = free_port(), free_port()
    procs = [start("ws-server", "--listen", f"127.0.0.1:{p1}"),
             start("longpoll-server", "--listen", f"127.0.0.1:{p2}")]
    wait_port(p1)
    wait_port(p2)
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        assert stats(p, timeout=5)["connections"] == 0


CHILD = r"""
import os, sys, time
with open(sys.argv[1], "w") as out:
    while True:
        b = os.read(0, 1024)
        if not b:
            break
        out.write(f"{time.monotonic():.6f} {b.hex()}\n")
        out.flush()
"""


def test_typist_types_char_by_char(tmp_path: Path) -> None:
    log, cmds = tmp_path / "keys.log", tmp_path / "cmds.txt"
    cmds.write_text("echo hello\nuname -a\n")
    p = start("typist", "--duration", "2", "--start-delay", "0.2", "--speed", "3",
              "--read-min", "0.1", "--read-max", "0.3", "--idle-prob", "0", "--typo-prob", "0",
              "--commands-file", str(cmds), "--seed", "5",
              "--", sys.executable, "-c", CHILD, str(log))
    st = stats(p, timeout=20)
    assert st["child_rc"] == 0 and st["commands"] >= 2
    rows = [(float(t), bytes.fromhex(h)) for t, h in
            (ln.split() for ln in log.read_text().splitlines())]
    text = b"".join(b for _, b in rows).decode()
    assert st["chars"] == len(text)
    lines = text.splitlines()
    assert lines[-1] == "exit" and set(lines[:-1]) <= {"echo hello", "uname -a"}
    assert sum(len(b) == 1 for _, b in rows) >= 0.8 * len(rows), "keys must arrive one by one"
    gaps = sorted(b[0] - a[0] for a, b in zip(rows, rows[1:], strict=False))
    assert sum(g > 0.01 for g in gaps) >= 0.8 * len(gaps)  # human gaps (60..1200 ms / speed 3)
    assert 0.03 < gaps[len(gaps) // 2] < 0.3
