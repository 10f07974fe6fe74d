"""XMPP chat for the lab (training/lab/chat.py): a real prosody and two slixmpp clients on loopback."""

from __future__ import annotations

import random
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ports import free_port
from training.lab.run import plan

REPO = Path(__file__).resolve().parents[1]


def wait_listening(port: int, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"prosody never listened on {port}")


@pytest.mark.parametrize(("tls", "tls12"), [(True, False), (True, True), (False, False)],
                         ids=["starttls", "starttls-tls1.2", "clear"])
def test_two_clients_chat_through_prosody(tmp_path: Path, cert: tuple[str, str], tls: bool,
                                          tls12: bool) -> None:
    if shutil.which("prosody") is None:
        pytest.skip("chat test skipped: no `prosody` (scripts/bootstrap.sh installs it as root)")
    pytest.importorskip("slixmpp", reason="chat test skipped: no slixmpp (pip install -e '.[lab]')")
    from training.lab.chat import prosody_config, register

    port, domain = free_port(), "chat.example.net"
    config = tmp_path / "prosody.cfg.lua"
    config.write_text(prosody_config(tmp_path, "127.0.0.1", port, domain,
                                     (Path(cert[0]), Path(cert[1])) if tls else None, tls12,
                                     queries=True))
    for user in ("me", "peer"):
        register(config, f"{user}@{domain}", "secret")
    server = subprocess.Popen(["prosody", "--config", str(config)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT)

    def client(me: str, peer: str, *extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "training.lab.chat", "client", "--jid", f"{me}@{domain}",
             "--password", "secret", "--server", f"127.0.0.1:{port}", "--peer", f"{peer}@{domain}",
             "--ping", "5", *extra], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)

    try:
        wait_listening(port)
        peer = client("peer", "me", "--replies", "--mean-gap", "1000", "--duration", "14", "--seed", "2")
        time.sleep(1)
        me = client("me", "peer", "--bind", "127.0.0.1", "--mean-gap", "1", "--duration", "8",
                    "--seed", "1", "--queries", "1")
        out_me, out_peer = me.communicate(timeout=60)[0], peer.communicate(timeout=60)[0]
    finally:
        server.terminate()
        server.wait(timeout=10)
    stats = [re.search(r"chat STATS sent=(\d+) received=(\d+)", out) for out in (out_me, out_peer)]
    assert all(stats), (out_me, out_peer)
    sent, _ = map(int, stats[0].groups())  # type: ignore[union-attr]
    _, got = map(int, stats[1].groups())  # type: ignore[union-attr]
    assert sent >= 1 and got == sent, (out_me, out_peer)
    # every query (chat.QUERIES: pings, features, vCards, a room's) was answered, with a result or an error
    asked, answered = map(int, re.search(r"asked=(\d+) answered=(\d+)", out_me).groups())  # type: ignore[union-attr]
    assert asked >= 3 and answered == asked, out_me
    # ... and it joined a group chat room first, which answered with presence
    joined, room = map(int, re.search(r"joined=(\d+) room=(\d+)", out_me).groups())  # type: ignore[union-attr]
    assert joined >= 1 and room >= joined, out_me
    log = (tmp_path / "prosody.log").read_text()
    assert log.count("Authenticated as") == 2
    assert ("Stream encrypted" in log) == tls
    if tls:  # the version `run --tls12-share` asks for, or the newest
        assert f"Stream encrypted (TLSv1.{2 if tls12 else 3}" in log, log


def test_the_messaging_plan_adds_chats_last() -> None:
    """`messaging` runs XMPP chats (STARTTLS or clear) beside mining and push channels; drawn after
    every other family, so the other plans draw as before."""
    sessions = plan("messaging", random.Random(221), 600, "rx")
    chats = [s for s in sessions if s.scenario.startswith("chat-")]
    assert len(chats) == 20 and sessions[-len(chats):] == chats
    assert {s.scenario for s in chats} == {"chat-tls", "chat-clear"}
    assert all(s.label == "benign" and 8 <= s.params["gap_s"] <= 180 for s in chats)  # type: ignore[operator]
    assert {s.label for s in sessions} == {"stratum_mining", "reverse_tunnel", "benign"}
    for kind in ("train", "breadth", "lan", "shells", "push", "handshakes"):
        assert not any(s.scenario.startswith("chat-") for s in plan(kind, random.Random(1), 600, "rx"))
