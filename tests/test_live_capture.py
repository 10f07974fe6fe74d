"""Live capture on a veth (root + netns only): it survives its interface going down and coming back
up, and on SIGTERM it classifies and writes the flows still open."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NS_A, NS_B = f"fgif{os.getpid()}-a", f"fgif{os.getpid()}-b"
A_IP, B_IP = "10.253.0.1", "10.253.0.2"

pytestmark = pytest.mark.netns


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check)


@pytest.fixture()
def link() -> Iterator[None]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 (ip netns) for a live capture on a veth")
    if sh("ip", "netns", "add", NS_A, check=False).returncode != 0:
        pytest.skip("`ip netns add` is not permitted here")
    try:
        sh("ip", "netns", "add", NS_B)
        sh("ip", "link", "add", "veth0", "netns", NS_A, "type", "veth",
           "peer", "name", "veth0", "netns", NS_B)
        for ns, ip in ((NS_A, A_IP), (NS_B, B_IP)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "veth0")
            sh("ip", "-n", ns, "link", "set", "veth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield
    finally:
        for ns in (NS_A, NS_B):
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            sh("ip", "netns", "del", ns, check=False)


CHATTER = f"""
import socket, time
while True:  # one long connection, a message every 0.3 s; reconnect when the link drops it
    try:
        s = socket.create_connection(('{B_IP}', 7007), timeout=2)
        while True:
            s.sendall(b'x' * 64); s.recv(64); time.sleep(0.3)
    except OSError:
        time.sleep(0.5)
"""


ECHO = ("import socket, threading\n"
            "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"s.bind(('{B_IP}', 7007)); s.listen(64)\n"
            "def serve(c):\n    while (d := c.recv(64)):\n        c.sendall(d)\n"
            "while True:\n    c, _ = s.accept(); threading.Thread(target=serve, args=(c,)).start()\n")


def test_capture_goes_on_after_the_interface_flaps(link: None, tmp_path: Path) -> None:
    out = tmp_path / "verdicts.jsonl"
    watch = _echo_and_watch(out, "--active-timeout", "2")

    def flows_after(t_ms: float) -> int:
        if not out.exists():
            return 0
        rows = [json.loads(line) for line in out.read_text().splitlines() if line]
        return sum(1 for r in rows if r["first_seen_ms"] >= t_ms and 7007 in (r["dst_port"], r["src_port"]))

    def wait_for_flows(t_ms: float, deadline_s: float) -> bool:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if flows_after(t_ms) > 0:
                return True
            time.sleep(0.5)
        return False

    try:
        time.sleep(2)
        subprocess.Popen(["ip", "netns", "exec", NS_A, sys.executable, "-c", CHATTER])
        assert wait_for_flows(0, 30), "no verdicts before the flap"
        sh("ip", "-n", NS_B, "link", "set", "veth0", "down")
        time.sleep(3)
        sh("ip", "-n", NS_B, "link", "set", "veth0", "up")
        back_up_ms = time.time() * 1000
        assert watch.poll() is None, f"watch exited when the interface went down: {watch.stderr}"
        assert wait_for_flows(back_up_ms, 40), "no verdicts for traffic after the interface came back up"
    finally:
        err = _stop(watch, 15)
    assert watch.returncode == 0, err
    assert "Traceback" not in err


def _stop(watch: subprocess.Popen[str], timeout: float) -> str:
    """SIGTERM watch (signalled already or not) and collect its stderr; past `timeout`, kill its
    whole process group (nfstream's meter holds the pipe too)."""
    watch.send_signal(signal.SIGTERM)
    try:
        return watch.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        os.killpg(watch.pid, signal.SIGKILL)
        return watch.communicate()[1] + f"\n(killed: still running {timeout} s after SIGTERM)"


ONE_SHOT = f"""
import socket
s = socket.create_connection(('{B_IP}', 7007), timeout=2)
s.sendall(b'hello'); s.recv(64)
"""


def _echo_and_watch(out: Path, *options: str) -> subprocess.Popen[str]:
    """The echo server in namespace b, and `flowguard watch` on its veth writing JSONL to `out`."""
    subprocess.Popen(["ip", "netns", "exec", NS_B, sys.executable, "-c", ECHO])
    return subprocess.Popen(
        ["ip", "netns", "exec", NS_B, sys.executable, "-m", "flowguard", "watch", "--interface", "veth0",
         *options, "--format", "jsonl", "--output", str(out)],
        cwd=REPO, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _echo_flows(out: Path) -> list[dict]:
    if not out.exists():
        return []
    rows = [json.loads(line) for line in out.read_text().splitlines() if line]
    return [r for r in rows if r["protocol"] == 6 and 7007 in (r["dst_port"], r["src_port"])]


def test_sigterm_writes_the_flows_still_open(link: None, tmp_path: Path) -> None:
    """A short connection has ended and a long one is mid-window, both well within their timeouts
    (600 s): on SIGTERM both are exported, classified and written."""
    out = tmp_path / "verdicts.jsonl"
    watch = _echo_and_watch(out, "--active-timeout", "600", "--idle-timeout", "600")
    chatter = None
    try:
        time.sleep(2)
        sh("ip", "netns", "exec", NS_A, sys.executable, "-c", ONE_SHOT)
        chatter = subprocess.Popen(["ip", "netns", "exec", NS_A, sys.executable, "-c", CHATTER])
        time.sleep(3)
        assert not _echo_flows(out), "flows exported before the stop"
    finally:
        err = _stop(watch, 20)
        if chatter is not None:
            chatter.kill()
    assert watch.returncode == 0, err
    conns = _echo_flows(out)
    assert len(conns) == 2, out.read_text()
    packets = sorted(r["packets"] for r in conns)
    assert packets[0] >= 3 and packets[1] >= 10, packets  # the one-shot, then ~10 echoes of chatter
    assert all(r["verdict"] in ("benign", "stratum_mining", "reverse_tunnel") for r in conns)


def test_quiet_link_still_exports_idle_flows_and_stops(link: None, tmp_path: Path) -> None:
    """With no traffic after a short connection (IPv6 off, so no neighbour discovery either), the
    flow is still exported once idle (2 s) and a SIGTERM still ends the capture at once: libpcap
    alone would block in its read until the next packet."""
    for ns in (NS_A, NS_B):
        sh("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1")
    out = tmp_path / "verdicts.jsonl"
    watch = _echo_and_watch(out)
    try:
        time.sleep(2)
        sh("ip", "netns", "exec", NS_A, sys.executable, "-c", ONE_SHOT)
        ended = time.monotonic()
        while not _echo_flows(out) and time.monotonic() - ended < 15:
            time.sleep(0.2)
        exported_after = time.monotonic() - ended
        assert _echo_flows(out), "the idle flow was not exported on a quiet link"
        print(f"idle flow exported {exported_after:.2f} s after its last packet")
        assert exported_after < 7, exported_after  # idle 2 s, the tick (0.4 s behind, every 0.25 s), a batch
    finally:
        stopping = time.monotonic()
        err = _stop(watch, 20)
    assert watch.returncode == 0, err
    assert time.monotonic() - stopping < 5, err
    assert "did not end" not in err


def test_an_idle_flow_does_not_wait_behind_an_older_active_one(link: None, tmp_path: Path) -> None:
    """A long connection keeps talking (windows of 60 s, its first too) while a newer short one
    ends: the short one is exported once idle (2 s), not when the older one's window is cut.
    nfstream's own cache kept flows in order of creation, so its idle scan stopped at the older,
    active flow."""
    out = tmp_path / "verdicts.jsonl"
    watch = _echo_and_watch(out, "--active-timeout", "60", "--idle-timeout", "2", "--opening-timeout", "0")
    chatter = None
    try:
        time.sleep(2)
        chatter = subprocess.Popen(["ip", "netns", "exec", NS_A, sys.executable, "-c", CHATTER])
        time.sleep(1)
        sh("ip", "netns", "exec", NS_A, sys.executable, "-c", ONE_SHOT)
        ended = time.monotonic()
        while len(_echo_flows(out)) < 1 and time.monotonic() - ended < 30:
            time.sleep(0.1)
        exported_after = time.monotonic() - ended
        rows = _echo_flows(out)
        print(f"short flow exported {exported_after:.2f} s after its last packet")
        assert len(rows) == 1 and rows[0]["packets"] < 12, rows  # the one-shot; the chatter goes on
        assert exported_after < 10, exported_after  # idle 2 s and the meter's lag; the window is 60 s
    finally:
        err = _stop(watch, 20)
        if chatter is not None:
            chatter.kill()
    assert watch.returncode == 0, err
