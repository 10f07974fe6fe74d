"""Scenarios: what runs in the lab, and the label of each conversation it makes.

A scenario instance is a *session*: the server side starts in the outside namespace, the client side
from one inside host, on a timeline run by its own thread. Labels come from construction: every
session has its own inside host address, so (client, server, server port) names its conversations.
"""

from __future__ import annotations

import random
import shlex
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from training.lab.netns import Topology

SSH_OPTS = [
    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
    "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
]
POOL_PORTS = (3333, 4444, 5555, 7777, 14444, 443, 80)
SSH_PORTS = (22, 22, 443, 2222, 8022)


@dataclass(frozen=True)
class Conversation:
    """A labelled conversation: any flow between client_ip and server_ip:server_port."""

    session: str
    scenario: str
    label: str
    client_ip: str
    server_ip: str
    server_port: int
    protocol: int = 6


@dataclass
class Lab:
    """What sessions share: the topology, keys, certificates, files, and the clock."""

    topo: Topology
    rng: random.Random
    duration: float
    t0: float = 0.0
    conversations: list[Conversation] = field(default_factory=list)
    _next_in: int = 10
    _next_out: int = 1
    _next_fwd: int = 20000
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def dir(self) -> Path:
        return self.topo.workdir

    def hosts(self) -> tuple[str, str]:
        """A fresh inside host and outside server address for one session."""
        with self._lock:
            pair = self.topo.inside_ip(self._next_in), self.topo.outside_ip(self._next_out)
            self._next_in += 1
            self._next_out += 1
        return pair

    def forward_port(self) -> int:
        with self._lock:
            self._next_fwd += 1
            return self._next_fwd

    def label(self, conv: Conversation) -> None:
        with self._lock:
            self.conversations.append(conv)

    def remaining(self) -> float:
        return self.duration - (time.monotonic() - self.t0)

    def sleep_until(self, offset: float) -> bool:
        """Sleep until `offset` s into the run; False when the run ends first."""
        wait = offset - (time.monotonic() - self.t0)
        if wait > 0:
            time.sleep(min(wait, max(self.remaining(), 0)))
        return self.remaining() > 3


@dataclass
class Session:
    id: str
    scenario: str
    label: str
    start: float
    params: dict[str, object]
    body: Callable[[Lab, Session], None]

    def describe(self) -> dict[str, object]:
        return {"id": self.id, "scenario": self.scenario, "label": self.label,
                "start_s": round(self.start, 1), "params": self.params}


def py(module: str, *args: object) -> list[str]:
    return [sys.executable, "-m", module, *map(str, args)]


# -- servers ------------------------------------------------------------------------------------
def start_sshd(lab: Lab, where: str, listen: str, port: int, name: str) -> None:
    cfg = lab.dir / "ssh" / f"sshd-{name}.conf"
    cfg.write_text("\n".join([
        f"ListenAddress {listen}:{port}", f"HostKey {lab.dir / 'ssh' / 'host_ed25519'}",
        f"AuthorizedKeysFile {lab.dir / 'ssh' / 'authorized_keys'}", f"PidFile {cfg}.pid",
        "PermitRootLogin yes", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "UsePAM no", "StrictModes no", "AllowTcpForwarding yes", "GatewayPorts no",
        "PrintMotd no", "MaxStartups 100", "MaxSessions 50", "LogLevel ERROR",
        "Subsystem sftp internal-sftp", "",
    ]))
    lab.topo.spawn(where, ["/usr/sbin/sshd", "-D", "-e", "-f", str(cfg)], f"sshd-{name}")
    time.sleep(0.3)


def stunnel_pair(lab: Lab, s: Session, client: str, server: str, port: int) -> tuple[int, int]:
    """TLS by OpenSSH's neighbour OpenSSL (stunnel) on both ends, for apps that speak cleartext.

    The app's client talks plain TCP to a stunnel client on the inside host's loopback; stunnel
    connects from the session's inside address to a stunnel server outside, which hands the plain
    stream to the app's server on the outside loopback. Only the TLS leg crosses the router.
    Returns (local port for the client app, backend port for the server app).
    """
    local, backend = lab.forward_port(), lab.forward_port()
    tls = lab.dir / "tls"
    for where, name, lines in (
        ("out", "srv", [f"accept = {server}:{port}", f"connect = 127.0.0.1:{backend}",
                        f"cert = {tls / 'cert.pem'}", f"key = {tls / 'key.pem'}"]),
        ("in", "cli", ["client = yes", f"accept = 127.0.0.1:{local}", f"connect = {server}:{port}",
                       f"local = {client}"]),
    ):
        conf = lab.dir / "tls" / f"stunnel-{s.id}-{name}.conf"
        conf.write_text("\n".join(["foreground = yes", "pid =", "syslog = no", "debug = 3",
                                    f"[{s.id}]", *lines, ""]))
        lab.topo.spawn(where, ["stunnel4", str(conf)], f"{s.id}-stunnel-{name}")
    time.sleep(0.3)
    return local, backend


def ssh_client(lab: Lab, *extra: str) -> list[str]:
    return ["ssh", "-i", str(lab.dir / "ssh" / "id_ed25519"), *SSH_OPTS, *extra]


def dbclient(lab: Lab, *extra: str) -> list[str]:
    return ["dbclient", "-y", "-y", "-i", str(lab.dir / "ssh" / "id_dropbear"), *extra]


def typist(lab: Lab, duration: float, seed: int, cmd: list[str]) -> list[str]:
    return py("training.lab.apps", "typist", "--duration", round(duration), "--seed", seed, "--", *cmd)


# -- mining ---------------------------------------------------------------------------------------
def mining(lab: Lab, s: Session) -> None:
    """A stratum pool outside and a miner inside. tls: False, True (Python ssl) or "stunnel"."""
    client, server = lab.hosts()
    p = s.params
    port = int(p["port"])  # type: ignore[call-overload]
    lab.label(Conversation(s.id, s.scenario, s.label, client, server, port))
    listen, connect, bind = f"{server}:{port}", f"{server}:{port}", ["--bind", client]
    if p["tls"] == "stunnel":
        local, backend = stunnel_pair(lab, s, client, server, port)
        listen, connect, bind = f"127.0.0.1:{backend}", f"127.0.0.1:{local}", []
    pool = py("training.lab.stratum", "pool", "--listen", listen, "--dialect",
              p["dialect"], "--job-min", p["job_min"], "--job-max", p["job_max"],
              "--seed", p["seed"])
    if p["tls"] is True:
        pool += ["--tls", "--cert", lab.dir / "tls" / "cert.pem", "--key", lab.dir / "tls" / "key.pem"]
    lab.topo.spawn("out", [str(a) for a in pool], f"{s.id}-pool")
    if not lab.sleep_until(s.start):
        return
    miner = py("training.lab.stratum", "miner", "--connect", connect, "--dialect",
               p["dialect"], "--hashrate", p["hashrate"], *bind,
               "--duration", max(lab.remaining() - 4, 5), "--seed", p["seed"])
    if p["tls"] is True:
        miner.append("--tls")
    if p.get("reconnect_after"):
        miner += ["--reconnect-after", str(p["reconnect_after"])]
    lab.topo.spawn("in", miner, f"{s.id}-miner")


# -- reverse tunnels ------------------------------------------------------------------------------
def reverse_tunnel(lab: Lab, s: Session) -> None:
    """`ssh -N -R` (or autossh) from inside; the outside later uses it: a shell, a file, or nothing."""
    client, server = lab.hosts()
    p = s.params
    port = int(p["port"])  # type: ignore[call-overload]
    fwd = lab.forward_port()
    lab.label(Conversation(s.id, s.scenario, s.label, client, server, port))
    start_sshd(lab, "out", server, port, s.id)
    if not lab.sleep_until(s.start):
        return
    alive = int(p["alive"])  # type: ignore[call-overload]
    opts = ["-N", "-R", f"127.0.0.1:{fwd}:127.0.0.1:22", "-b", client, "-p", str(port),
            "-o", "ExitOnForwardFailure=yes"]
    if alive:
        opts += ["-o", f"ServerAliveInterval={alive}", "-o", "ServerAliveCountMax=3"]
    argv = ssh_client(lab, *opts, f"root@{server}")
    env = None
    if p["tool"] == "autossh":
        argv = ["autossh", "-M", "0", *argv[1:]]
        env = {"AUTOSSH_GATETIME": "0", "AUTOSSH_PATH": "/usr/bin/ssh"}
    elif p["tool"] == "dbclient":  # Dropbear's client: another SSH implementation on the wire
        argv = dbclient(lab, "-N", "-R", f"127.0.0.1:{fwd}:127.0.0.1:22", "-b", client,
                        "-p", str(port), "-K", str(alive), f"root@{server}")
    lab.topo.spawn("in", argv, f"{s.id}-tunnel", env=env)
    t = s.start + 3 + float(p["idle_before"])  # type: ignore[arg-type]
    use_ssh = ssh_client(lab, "-tt", "-p", str(fwd), "root@127.0.0.1")
    for step, length in p["uses"]:  # type: ignore[attr-defined]
        if not lab.sleep_until(t):
            return
        if step == "shell":
            dur = min(float(length), lab.remaining() - 5)
            lab.topo.spawn("out", typist(lab, dur, int(p["seed"]), use_ssh), f"{s.id}-use-{t:.0f}")  # type: ignore[call-overload]
            t += dur + 2
        elif step == "pull":
            src = lab.dir / "files" / f"f{int(length)}"
            pull = ["scp", "-i", str(lab.dir / "ssh" / "id_ed25519"), *SSH_OPTS, "-P", str(fwd),
                    f"root@127.0.0.1:{src}", str(lab.dir / "files" / "pulled")]
            lab.topo.run("out", *pull, check=False)
            t = time.monotonic() - lab.t0 + 1
        elif step == "idle":
            t += float(length)


# -- benign look-alikes ---------------------------------------------------------------------------
def interactive_ssh(lab: Lab, s: Session) -> None:
    client, server = lab.hosts()
    port = int(s.params["port"])  # type: ignore[call-overload]
    lab.label(Conversation(s.id, s.scenario, s.label, client, server, port))
    start_sshd(lab, "out", server, port, s.id)
    if not lab.sleep_until(s.start):
        return
    dur = min(float(s.params["length"]), lab.remaining() - 5)  # type: ignore[arg-type]
    if s.params.get("client") == "dbclient":
        cmd = dbclient(lab, "-t", "-b", client, "-p", str(port), f"root@{server}")
    else:
        cmd = ssh_client(lab, "-tt", "-b", client, "-p", str(port), f"root@{server}")
    lab.topo.spawn("in", typist(lab, dur, int(s.params["seed"]), cmd), f"{s.id}-typist")  # type: ignore[call-overload]


def file_copy(lab: Lab, s: Session) -> None:
    """scp or sftp downloads and uploads, a new connection each."""
    client, server = lab.hosts()
    port = int(s.params["port"])  # type: ignore[call-overload]
    lab.label(Conversation(s.id, s.scenario, s.label, client, server, port))
    start_sshd(lab, "out", server, port, s.id)
    t = s.start
    key = str(lab.dir / "ssh" / "id_ed25519")
    for size, upload in s.params["copies"]:  # type: ignore[attr-defined]
        if not lab.sleep_until(t):
            return
        src = lab.dir / "files" / f"f{size}"
        dst = lab.dir / "files" / f"copy-{s.id}"
        remote = f"root@{server}:"
        argv = ["scp", "-i", key, *SSH_OPTS, "-o", f"BindAddress={client}", "-P", str(port)]
        argv += [str(src), f"{remote}{dst}"] if upload else [f"{remote}{src}", str(dst)]
        lab.topo.run("in", *argv, check=False)
        t = time.monotonic() - lab.t0 + lab.rng.uniform(5, 40)


def https(lab: Lab, s: Session) -> None:
    """curl against nginx: pages and downloads, some on one keep-alive connection."""
    client = lab.hosts()[0]
    server = lab.topo.outside_ip(250)
    lab.label(Conversation(s.id, s.scenario, s.label, client, server, 443))
    t = s.start
    for sizes in s.params["fetches"]:  # type: ignore[attr-defined]
        if not lab.sleep_until(t):
            return
        argv = ["curl", "-sk", "--interface", client, "--max-time", "60"]
        for size in sizes:
            argv += ["-o", "/dev/null", f"https://{server}/f{size}"]
        lab.topo.run("in", *argv, check=False)
        t = time.monotonic() - lab.t0 + lab.rng.uniform(2, 30)


def app_pair(lab: Lab, s: Session) -> None:
    """A long-lived benign app: WebSocket heartbeats, HTTP long-poll, or JSON-RPC polling.
    tls: False, True (Python ssl) or "stunnel"."""
    client, server = lab.hosts()
    p = s.params
    port = int(p["port"])  # type: ignore[call-overload]
    kind = str(p["kind"])
    lab.label(Conversation(s.id, s.scenario, s.label, client, server, port))
    tls = p["tls"]
    listen, target_host, bind = f"{server}:{port}", f"{server}:{port}", ["--bind", client]
    if tls == "stunnel":
        local, backend = stunnel_pair(lab, s, client, server, port)
        listen, target_host, bind = f"127.0.0.1:{backend}", f"127.0.0.1:{local}", []
    server_argv = py("training.lab.apps", f"{kind}-server", "--listen", listen, "--seed", p["seed"])
    if tls is True:
        server_argv += ["--tls", "--cert", str(lab.dir / "tls" / "cert.pem"),
                        "--key", str(lab.dir / "tls" / "key.pem")]
    lab.topo.spawn("out", server_argv, f"{s.id}-server")
    if not lab.sleep_until(s.start):
        return
    scheme = ("wss" if tls is True else "ws") if kind == "ws" else ("https" if tls is True else "http")
    path = {"ws": "/stream", "longpoll": "/poll", "json-rpc": "/"}[kind]
    target = "--connect" if kind == "ws" else "--url"
    client_argv = py("training.lab.apps", f"{kind}-client", target,
                     f"{scheme}://{target_host}{path}", *bind,
                     "--duration", round(max(lab.remaining() - 4, 5)), "--seed", p["seed"])
    lab.topo.spawn("in", client_argv, f"{s.id}-client")


def quote(argv: list[str]) -> str:
    return shlex.join(argv)


def as_dict(conv: Conversation) -> dict[str, object]:
    return asdict(conv)
