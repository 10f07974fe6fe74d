"""The lab's AsyncSSH client (training/lab/pyssh.py) against a real OpenSSH server on loopback."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.ports import free_port

REPO = Path(__file__).resolve().parents[1]


def connect_when_listening(port: int, timeout: float = 15.0) -> socket.socket:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listened on {port} within {timeout} s")


@pytest.fixture
def sshd(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A real sshd on 127.0.0.1 that lets our key in as root: (port, key file)."""
    if shutil.which("ssh-keygen") is None or not Path("/usr/sbin/sshd").exists():
        pytest.skip("pyssh test skipped: needs sshd and ssh-keygen (apt-get install openssh-server)")
    if os.geteuid() != 0:
        pytest.skip("pyssh test skipped: sshd logs in as root only when started by root")
    pytest.importorskip("asyncssh", reason="pyssh test skipped: no asyncssh (pip install -e '.[lab]')")
    for name in ("id", "host"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)],
                       check=True)
    (tmp_path / "authorized_keys").write_text((tmp_path / "id.pub").read_text())
    port = free_port()
    cfg = tmp_path / "sshd.conf"
    cfg.write_text("\n".join([
        f"ListenAddress 127.0.0.1:{port}", f"HostKey {tmp_path / 'host'}",
        f"AuthorizedKeysFile {tmp_path / 'authorized_keys'}", f"PidFile {tmp_path / 'sshd.pid'}",
        "PermitRootLogin yes", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "UsePAM no", "StrictModes no", "AllowTcpForwarding yes", "LogLevel ERROR", "",
    ]))
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(cfg)])
    try:
        connect_when_listening(port).close()
        yield port, tmp_path / "id"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def pyssh(*args: str) -> list[str]:
    return [sys.executable, "-m", "training.lab.pyssh", *args]


def stats(stderr: str) -> dict[str, Any]:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("pyssh STATS ")]
    assert lines, stderr
    out: dict[str, Any] = json.loads(lines[-1].removeprefix("pyssh STATS "))
    return out


@contextmanager
def reverse_forward(port: int, key: Path, duration: int):  # type: ignore[no-untyped-def]
    """pyssh's tunnel to the sshd on `port`, forwarding a new port on its loopback to an echo socket
    here, yielded once the forward is in place (.echo, .listen, .proc); stopped on exit, its stderr
    then in .err."""
    fwd = SimpleNamespace(echo=socket.socket(), listen=free_port(), proc=None, err="")
    fwd.echo.bind(("127.0.0.1", 0))
    fwd.echo.listen()
    fwd.echo.settimeout(10)
    fwd.proc = subprocess.Popen(
        pyssh("tunnel", "--connect", f"127.0.0.1:{port}", "--key", str(key), "--keepalive", "5",
              "--listen-port", str(fwd.listen), "--dest", f"127.0.0.1:{fwd.echo.getsockname()[1]}",
              "--duration", str(duration), "--verbose"),
        cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        assert fwd.proc.stderr is not None
        assert fwd.proc.stderr.readline().strip() == f"pyssh forwarding {fwd.listen}"
        yield fwd
    finally:
        fwd.proc.terminate()
        _, fwd.err = fwd.proc.communicate(timeout=15)
        fwd.echo.close()


def test_reverse_forward_carries_a_connection_to_this_side(sshd) -> None:  # type: ignore[no-untyped-def]
    port, key = sshd
    with reverse_forward(port, key, duration=20) as fwd:
        outside = socket.create_connection(("127.0.0.1", fwd.listen), timeout=5)
        inside, _ = fwd.echo.accept()
        inside.settimeout(5)
        outside.sendall(b"hello through the tunnel")
        assert inside.recv(100) == b"hello through the tunnel"
        inside.sendall(b"and back")
        assert outside.recv(100) == b"and back"
        outside.close()
        inside.close()
    assert fwd.proc.returncode == 0, fwd.err
    assert stats(fwd.err)["forwarded"] == fwd.listen


def test_automation_runs_commands_in_batches_on_new_connections(sshd) -> None:  # type: ignore[no-untyped-def]
    port, key = sshd
    done = subprocess.run(
        pyssh("exec", "--connect", f"127.0.0.1:{port}", "--key", str(key), "--duration", "4",
              "--gap-mean", "0.3", "--per-connection", "3", "--seed", "5", "--verbose"),
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    st = stats(done.stderr)
    assert st["commands"] >= 3 and st["connections"] >= 2, st
    assert st["bytes_out"] > 0  # the commands answered


def test_slow_tasks_send_a_module_and_answer_after_working(sshd) -> None:  # type: ignore[no-untyped-def]
    port, key = sshd
    started = time.monotonic()
    done = subprocess.run(  # seed 1: the first task is "sleep 2; ps aux | head -n 30"
        pyssh("exec", "--connect", f"127.0.0.1:{port}", "--key", str(key), "--duration", "1",
              "--tasks", "slow", "--seed", "1", "--verbose"),
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    st = stats(done.stderr)
    assert st["commands"] == 1 and st["bytes_out"] > 0  # the module was read, then ps answered
    assert time.monotonic() - started >= 2


def test_unreachable_server_is_an_exit_code_not_a_traceback() -> None:
    pytest.importorskip("asyncssh", reason="pyssh test skipped: no asyncssh (pip install -e '.[lab]')")
    done = subprocess.run(
        pyssh("exec", "--connect", f"127.0.0.1:{free_port()}", "--key", "/nonexistent",
              "--duration", "2"),
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "pyssh exec:" in done.stderr and "Traceback" not in done.stderr


@contextmanager
def capture_loopback(port: int, path: Path):  # type: ignore[no-untyped-def]
    """tcpdump on lo for the sshd's port while the block runs."""
    if shutil.which("tcpdump") is None:
        pytest.skip("capture skipped: needs tcpdump (apt-get install tcpdump)")
    proc = subprocess.Popen(["tcpdump", "-i", "lo", "-U", "-w", str(path), "tcp", "port", str(port)],
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        assert "listening on" in proc.stderr.readline()
        yield
    finally:
        time.sleep(0.5)
        proc.terminate()
        proc.wait(timeout=10)


def connection_so_far(path: Path, port: int) -> list[Any]:
    """The sshd connections of a capture as the live pipeline's tracker last saw each."""
    from flowguard.capture import live_options, read_flows
    from flowguard.connections import ConnectionTracker, connection_key
    from flowguard.model import FlowClassifier, default_model_dir

    options = live_options(FlowClassifier.load(default_model_dir()).metadata.capture)
    windows = [w for w in read_flows(path, options) if port in (w.src_port, w.dst_port)]
    last = {connection_key(w): c for w, c in zip(windows, ConnectionTracker().add(windows), strict=True)}
    return list(last.values())


def test_automation_is_driven_from_inside_and_a_used_tunnel_from_outside(sshd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """What the live pipeline waits for before a tunnel verdict (connections.tunnel_evidence), on
    real SSH: commands on one connection, seconds apart, are exchanges begun by the client; a
    reverse tunnel's keepalives are keepalives, and its use from outside an exchange begun by the
    server."""
    from flowguard.connections import tunnel_evidence

    port, key = sshd
    with capture_loopback(port, tmp_path / "automation.pcap"):
        done = subprocess.run(  # seed 5: gaps of 5.4, 7.3 and 4.2 s
            pyssh("exec", "--connect", f"127.0.0.1:{port}", "--key", str(key), "--duration", "18",
                  "--gap-mean", "4", "--per-connection", "0", "--seed", "5"),
            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    [automation] = connection_so_far(tmp_path / "automation.pcap", port)
    assert automation.outbound_exchanges >= 2 and automation.inbound_exchanges == 0
    assert not tunnel_evidence(automation)

    with capture_loopback(port, tmp_path / "tunnel.pcap"), reverse_forward(port, key, duration=30) as fwd:
        time.sleep(7.7)  # idle, but for a keepalive at 5 s; then used, after 2.7 s of silence
        outside = socket.create_connection(("127.0.0.1", fwd.listen), timeout=5)
        inside, _ = fwd.echo.accept()
        outside.sendall(b"used from outside")
        assert inside.recv(100) == b"used from outside"
        outside.close()
        inside.close()
        time.sleep(3)  # the tunnel stays open after its use (an exchange that closes it says nothing)
    [used] = connection_so_far(tmp_path / "tunnel.pcap", port)
    assert used.keepalive_exchanges >= 1 and used.inbound_exchanges >= 1
    assert used.outbound_exchanges == 0 and tunnel_evidence(used)
