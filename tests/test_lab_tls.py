"""The lab's TLS variety: `--tls-max 1.2` on its TLS servers, `run --tls12-share`, and the Go TLS
relay (`training/lab/gotls`, `run --go-tls-share`)."""

from __future__ import annotations

import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.ports import free_port
from training.lab.netns import LabError
from training.lab.options import cap_tls
from training.lab.run import cap_tls12, plan, relay_go
from training.lab.scenarios import build_gotls, tls12, uses_stunnel, uses_tls

REPO = Path(__file__).resolve().parents[1]


def negotiated(port: int, timeout: float = 10.0) -> str | None:
    """Connect with a client that offers TLS 1.2 and 1.3; the version the server picked."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as raw, \
                    ctx.wrap_socket(raw) as tls:
                return tls.version()
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"no TLS server on port {port}")


SERVERS = {  # lab program -> its argv, given a port and the certificate
    "ws-server": lambda p, c: ["training.lab.apps", "ws-server", "--listen", f"127.0.0.1:{p}",
                               "--tls", "--cert", c[0], "--key", c[1]],
    "longpoll-server": lambda p, c: ["training.lab.apps", "longpoll-server", "--listen",
                                     f"127.0.0.1:{p}", "--tls", "--cert", c[0], "--key", c[1]],
    "stratum pool": lambda p, c: ["training.lab.stratum", "pool", "--listen", f"127.0.0.1:{p}",
                                  "--tls", "--cert", c[0], "--key", c[1]],
    "wstunnel server": lambda p, c: ["training.lab.wstunnel", "server", "--listen",
                                     f"127.0.0.1:{p}", "--expose", f"127.0.0.1:{free_port()}",
                                     "--tls", "--cert", c[0], "--key", c[1]],
}


@pytest.mark.parametrize("server", list(SERVERS))
@pytest.mark.parametrize("tls_max", [None, "1.2"], ids=["default", "tls-max-1.2"])
def test_servers_honour_tls_max(server: str, tls_max: str | None, cert: tuple[str, str]) -> None:
    port = free_port()
    argv = [sys.executable, "-m", *SERVERS[server](port, cert)]
    if tls_max:
        argv += ["--tls-max", tls_max]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert negotiated(port) == ("TLSv1.2" if tls_max else "TLSv1.3")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_cap_tls_names_the_allowed_values() -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    assert cap_tls(ctx, "1.2").maximum_version is ssl.TLSVersion.TLSv1_2
    with pytest.raises(ValueError, match="allowed values are 1.2, 1.3"):
        cap_tls(ctx, "1.1")


def test_tls12_share_marks_tls_sessions_of_every_label_and_nothing_else() -> None:
    def marked(share: float, seed: int = 128) -> list[bool]:
        sessions = plan("breadth", random.Random(seed), 600, "rx")
        cap_tls12(sessions, share, seed)
        assert not any(tls12(s) and not uses_tls(s) for s in sessions)
        return [tls12(s) for s in sessions]

    sessions = plan("breadth", random.Random(128), 600, "rx")
    with_tls = [uses_tls(s) for s in sessions]
    assert marked(0.0) == [False] * len(sessions)  # the runs behind shipped models are unchanged
    assert marked(1.0) == with_tls
    half = marked(0.5)
    assert half == marked(0.5) and 0.25 < sum(half) / sum(with_tls) < 0.75
    cap_tls12(sessions, 0.5, 128)
    assert {s.label for s in sessions if tls12(s)} == {"stratum_mining", "reverse_tunnel", "benign"}
    with pytest.raises(LabError, match="allowed values are 0 to 1"):
        cap_tls12(sessions, 1.5, 128)


@pytest.fixture(scope="module")
def gotls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("go") is None:
        pytest.skip("Go TLS relay test skipped: no `go` (scripts/bootstrap.sh installs golang-go as root)")
    return build_gotls(tmp_path_factory.mktemp("gotls"))


def echo_server() -> int:
    """A loopback TCP server that answers each connection's bytes with the same bytes, upper-cased."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            conn, _ = srv.accept()
            with conn:
                while data := conn.recv(4096):
                    conn.sendall(data.upper())

    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1]


@pytest.mark.parametrize("tls_max", ["1.3", "1.2"])
def test_go_relay_carries_a_stream_over_go_tls(gotls: Path, tls_max: str, cert: tuple[str, str]) -> None:
    backend, tls_port, local = echo_server(), free_port(), free_port()
    procs = [subprocess.Popen([str(gotls), "server", "-accept", f"127.0.0.1:{tls_port}", "-connect",
                               f"127.0.0.1:{backend}", "-cert", cert[0], "-key", cert[1], "-max", tls_max]),
             subprocess.Popen([str(gotls), "client", "-accept", f"127.0.0.1:{local}", "-connect",
                               f"127.0.0.1:{tls_port}", "-local", "127.0.0.1"])]
    try:
        assert negotiated(tls_port) == f"TLSv{tls_max}"
        with socket.create_connection(("127.0.0.1", local), timeout=5) as c:
            c.sendall(b"mining.subscribe\n")
            got = b""
            while len(got) < 17:
                got += c.recv(100)
        assert got == b"MINING.SUBSCRIBE\n"
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        assert [p.wait(timeout=5) for p in procs] == [0, 0]


def test_go_tls_share_marks_stunnel_sessions_only() -> None:
    sessions = plan("breadth", random.Random(134), 600, "rx")
    relay_go(sessions, 1.0, 134)
    assert [s.params.get("tls_relay") == "go" for s in sessions] == [uses_stunnel(s) for s in sessions]
    assert {s.label for s in sessions if uses_stunnel(s)} == {"stratum_mining", "reverse_tunnel", "benign"}
    fresh = plan("breadth", random.Random(134), 600, "rx")
    relay_go(fresh, 0.0, 134)
    assert not any("tls_relay" in s.params for s in fresh)


def test_heldout_variant_names() -> None:
    from training.heldout import variant

    assert variant({}) == "default"
    assert variant({"tls_max": "1.2"}) == "tls1.2"
    assert variant({"tls_relay": "go"}) == "go"
    assert variant({"tls_relay": "go", "tls_max": "1.2"}) == "go+tls1.2"
    assert variant({"tool": "asyncssh"}) == variant({"client": "asyncssh"}) == "asyncssh"
    assert variant({"tool": "dbclient"}) == "default"


def test_nginx_serves_tls13_and_a_tls12_listener(tmp_path: Path, cert: tuple[str, str]) -> None:
    """nginx 1.22 agrees to TLS 1.2 at most unless told otherwise: the lab's main listener must
    offer TLS 1.3 as well, and its TLS 1.2 listener only TLS 1.2."""
    from training.lab.run import nginx_conf

    if shutil.which("nginx") is None:
        pytest.skip("nginx test skipped: no `nginx` (scripts/bootstrap.sh installs it as root)")
    for sub in ("tls", "files", "nginx"):
        (tmp_path / sub).mkdir()
    shutil.copy(cert[0], tmp_path / "tls" / "cert.pem")
    shutil.copy(cert[1], tmp_path / "tls" / "key.pem")
    main, capped = free_port(), free_port()
    conf = tmp_path / "nginx" / "nginx.conf"
    conf.write_text(nginx_conf(tmp_path, f"127.0.0.1:{main}", f"127.0.0.1:{capped}"))
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp_path / "nginx")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert negotiated(main) == "TLSv1.3"
        assert negotiated(capped) == "TLSv1.2"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_handshakes_plan_adds_unused_tls_connections_last() -> None:
    """`handshakes` runs TLS pre-connections (a handshake, held idle or not, sometimes one request,
    then a close) beside mining and tunnels over TLS; drawn after every other family, so the other
    plans draw as before. They speak TLS, so `--tls12-share` can cap them."""
    sessions = plan("handshakes", random.Random(211), 600, "rx")
    pre = [s for s in sessions if s.scenario == "tls-preconnect"]
    assert len(pre) == 20 and sessions[-len(pre):] == pre
    assert all(s.label == "benign" and uses_tls(s) for s in pre)
    probes = [p for s in pre for p in s.params["probes"]]  # type: ignore[attr-defined]
    assert all(2 <= len(s.params["probes"]) <= 8 for s in pre)  # type: ignore[arg-type]
    assert all(0 <= hold <= 90 for hold, _ in probes) and {used for _, used in probes} == {True, False}
    assert any(hold == 0 for hold, _ in probes) and any(hold > 60 for hold, _ in probes)
    assert {s.label for s in sessions} == {"stratum_mining", "reverse_tunnel", "benign"}
    for kind in ("train", "breadth", "lan", "shells", "push"):
        assert not any(s.scenario == "tls-preconnect" for s in plan(kind, random.Random(1), 600, "rx"))
