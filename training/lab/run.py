"""Run one lab session plan and write `capture.pcap` and `labels.json` into an output directory.

    python -m training.lab.run --plan train --duration 600 --delay 40 --seed 1 --out training/data/r1

The capture is taken on the router's outside-facing port, as a SPAN port sees the traffic. Labels
come from construction: `labels.json` lists each session and the conversations it made.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from training.lab import xmrig
from training.lab.netns import LabError, Topology, need_root
from training.lab.scenarios import (
    NGINX_TLS12_HOST,
    POOL_PORTS,
    SSH_PORTS,
    Lab,
    Session,
    app_pair,
    as_dict,
    build_gotls,
    chat,
    file_copy,
    https,
    interactive_ssh,
    long_download,
    mining,
    mining_nat,
    mqtt,
    reverse_shell,
    reverse_socks,
    reverse_ssh_stunnel,
    reverse_tunnel,
    reverse_wstunnel,
    ssh_automation,
    ssh_transfer,
    tls_preconnect,
    uses_stunnel,
    uses_tls,
)

FILE_SIZES = (3_000, 40_000, 300_000, 1_500_000, 6_000_000)
TLS_NAMES: dict[bool | str, str] = {False: "clear", True: "tls", "stunnel": "stunnel"}


def tls_mode(rng: random.Random) -> bool | str:
    """Cleartext, TLS by Python's ssl, or TLS by stunnel (OpenSSL): mining and benign apps alike,
    so that no TLS stack is a sign of either."""
    return rng.choice((False, False, True, "stunnel"))


SAMPLES: list[tuple[str, str, str, dict[str, object]]] = [
    # (sample name, scenario, label, params): the sessions behind pcaps/ (see pcaps/README.md)
    ("mining-btc-clear-3333", "mining-btc-clear", "stratum_mining",
     {"dialect": "btc", "tls": False, "port": 3333, "job_min": 20, "job_max": 60, "hashrate": 3e14}),
    ("mining-xmr-tls-443", "mining-xmr-tls", "stratum_mining",
     {"dialect": "xmr", "tls": True, "port": 443, "job_min": 20, "job_max": 60, "hashrate": 24000.0}),
    ("mining-xmr-clear-80", "mining-xmr-clear", "stratum_mining",
     {"dialect": "xmr", "tls": False, "port": 80, "job_min": 30, "job_max": 90, "hashrate": 9000.0}),
    ("reverse-ssh-443-shell", "reverse-ssh", "reverse_tunnel",
     {"tool": "ssh", "port": 443, "alive": 30, "idle_before": 15, "uses": [("shell", 90)]}),
    ("reverse-autossh-22-pull", "reverse-autossh", "reverse_tunnel",
     {"tool": "autossh", "port": 22, "alive": 15, "idle_before": 20, "uses": [("pull", 40000)]}),
    ("ssh-interactive-22", "ssh-interactive", "benign", {"port": 22, "length": 110}),
    ("https-curl-443", "https-curl", "benign", {"fetches": [[3000, 40000], [3000], [40000, 3000]]}),
    ("websocket-tls-8443", "ws-tls", "benign", {"kind": "ws", "tls": True, "port": 8443}),
    ("longpoll-clear-8080", "longpoll-clear", "benign", {"kind": "longpoll", "tls": False, "port": 8080}),
    # one machine that mines over TLS and holds a reverse tunnel: the pattern flowguard exists for
    ("host-mining-and-tunnel", "mining-btc-stunnel", "stratum_mining",
     {"dialect": "btc", "tls": "stunnel", "port": 443, "job_min": 20, "job_max": 60, "hashrate": 2e14,
      "inside_host": 200}),
    ("host-mining-and-tunnel", "reverse-dbclient", "reverse_tunnel",
     {"tool": "dbclient", "port": 8022, "alive": 20, "idle_before": 25, "uses": [("shell", 60)],
      "inside_host": 200}),
]


def plan(kind: str, rng: random.Random, duration: float, run_id: str) -> list[Session]:
    """The sessions of one run. `smoke`: one of each family, short; `train`: many, varied; `breadth`:
    more tools and look-alikes; `lan`: mining and its look-alikes, faster jobs (for a direct link);
    `shells`: reverse shells over plain TCP too, beside the other tunnels and interactive look-alikes;
    `push`: push-notification channels beside mining; `handshakes`: TLS connections that are
    little more than a handshake (pre-connections, health checks) beside mining, tunnels and
    look-alikes over TLS; `messaging`: XMPP chat (prosody) and push channels beside mining;
    `automation`: commands run over SSH without a terminal (AsyncSSH, OpenSSH) beside tunnels;
    `samples`: the fixed sessions behind pcaps/."""
    if kind == "samples":
        bodies = {"stratum_mining": mining, "reverse_tunnel": reverse_tunnel}
        other = {"ssh-interactive": interactive_ssh, "https-curl": https}
        return [
            Session(f"{run_id}-{i}-{name}", scen, label, 2.0 + i,
                    {**params, "seed": rng.randrange(1 << 30), "sample": name},
                    bodies.get(label) or other.get(scen) or app_pair)
            for i, (name, scen, label, params) in enumerate(SAMPLES)
        ]
    counts = {
        "smoke": {"mining": 2, "tunnel": 1, "ssh": 1, "copy": 1, "https": 1, "app": 1, "preconnect": 1},
        "train": {"mining": 24, "tunnel": 22, "ssh": 14, "copy": 10, "https": 12, "app": 18},
        # the wider lab of the "Detection quality" issue: every family, more tools and look-alikes
        "breadth": {"mining": 15, "nat": 5, "tunnel": 10, "socks": 5, "ssh_tls": 5, "shell_tls": 5,
                    "wstunnel": 6, "ssh": 10, "copy": 4, "transfer": 8, "https": 8, "download": 4,
                    "mqtt": 6, "app": 15},
        # a pool or proxy on the same LAN or in the same datacenter (run it with --delay 0): mining
        # and its JSON look-alikes, jobs from every 2 s (fast-block coins, proxies) to every 120 s
        "lan": {"mining": 24, "nat": 3, "tunnel": 10, "ssh": 8, "copy": 4, "https": 8, "mqtt": 4,
                "app": 24},
        # reverse shells over plain TCP (bash through socat) beside the other tunnels, and the
        # interactive and request/response traffic they must be told from
        "shells": {"mining": 6, "tunnel": 8, "socks": 3, "ssh_tls": 4, "shell_tls": 5, "wstunnel": 4,
                   "shell_clear": 10, "ssh": 12, "copy": 3, "transfer": 5, "https": 8, "mqtt": 3,
                   "app": 12},
        # push-notification channels (a login, a heartbeat every minute or few, rare notifications):
        # in shape the quietest look-alike of stratum, beside mining over the same transports
        "push": {"mining": 15, "tunnel": 6, "ssh": 6, "copy": 2, "https": 4, "mqtt": 4, "app": 9,
                 "push": 24},
        # TLS connections opened and then barely used or not at all (browsers' pre-connections,
        # health checks, scanners): a handshake, the session tickets and a close, which a short
        # login to a pool resembles; beside mining, tunnels and look-alikes over TLS
        "handshakes": {"mining": 12, "tunnel": 4, "ssh_tls": 3, "shell_tls": 3, "wstunnel": 3,
                       "ssh": 4, "copy": 2, "https": 6, "app": 9, "push": 6, "preconnect": 20},
        # XMPP chat (prosody, slixmpp): messages seconds to minutes apart, presence, keepalive
        # pings, over STARTTLS or in the clear; the corpus's XMPP flows score close to mining
        "messaging": {"mining": 12, "tunnel": 4, "ssh": 4, "copy": 2, "https": 4, "app": 6,
                      "push": 8, "chat": 20},
        # commands run over SSH without a terminal (configuration management, monitoring), by
        # AsyncSSH or OpenSSH, beside reverse tunnels (with --asyncssh-share, some by AsyncSSH
        # too) and interactive SSH
        "automation": {"mining": 6, "tunnel": 14, "ssh": 6, "copy": 3, "transfer": 3, "https": 4,
                       "app": 6, "automation": 16},
    }[kind]
    late = 0.1 if kind == "smoke" else 0.35
    sessions: list[Session] = []

    def add(scenario: str, label: str, body, **params: object) -> None:  # type: ignore[no-untyped-def]
        sid = f"{run_id}-s{len(sessions):03d}"
        params["seed"] = rng.randrange(1 << 30)
        sessions.append(Session(sid, scenario, label, rng.uniform(1, 1 + late * duration), params, body))

    def any_port(choices: tuple[int, ...]) -> int:
        return rng.choice(choices) if rng.random() < 0.8 else rng.randrange(10000, 60000)

    for i in range(counts["mining"]):
        dialect = ("btc", "xmr", "eth")[i % 3] if kind != "smoke" else ("btc", "xmr")[i % 2]
        tls = tls_mode(rng) if kind != "smoke" else i == 1
        job_min = rng.uniform(2, 40) if kind == "lan" else rng.uniform(10, 40)
        add(f"mining-{dialect}-{TLS_NAMES[tls]}", "stratum_mining", mining,
            dialect=dialect, tls=tls, port=any_port(POOL_PORTS), job_min=round(job_min, 1),
            job_max=round(rng.uniform(job_min + 10, 120), 1),
            hashrate={"btc": 1.1e14, "xmr": 8000.0, "eth": 1e8}[dialect] * rng.uniform(0.3, 6),
            reconnect_after=round(rng.uniform(60, 200)) if rng.random() < 0.15 else 0)
    for _ in range(counts["tunnel"]):
        uses: list[tuple[str, float]] = []
        for _ in range(rng.choice((1, 1, 2, 3))):
            step = rng.choice(("shell", "shell", "pull", "idle"))
            uses.append((step, rng.choice(FILE_SIZES[:4]) if step == "pull" else rng.uniform(30, 150)))
        tool = rng.choice(("ssh", "ssh", "autossh", "dbclient"))
        idle_before = round(rng.uniform(3, 60), 1)
        if kind == "smoke":  # used early and briefly, to fit a short run
            uses, idle_before = [("shell", duration / 3)], 3.0
        add(f"reverse-{tool}", "reverse_tunnel", reverse_tunnel, tool=tool, port=any_port(SSH_PORTS),
            alive=rng.choice((0, 15, 30, 60)), idle_before=idle_before, uses=uses)
    for _ in range(counts["ssh"]):
        add("ssh-interactive", "benign", interactive_ssh, port=any_port(SSH_PORTS),
            client=rng.choice(("ssh", "ssh", "dbclient")),
            length=round(rng.uniform(40, 300)) if kind != "smoke" else duration / 2)
    for _ in range(counts["copy"]):
        copies = [(rng.choice(FILE_SIZES), rng.random() < 0.4) for _ in range(rng.randint(1, 4))]
        add("ssh-file-copy", "benign", file_copy, port=any_port(SSH_PORTS), copies=copies)
    for _ in range(counts["https"]):
        fetches = [[rng.choice(FILE_SIZES) for _ in range(rng.randint(1, 4))]
                   for _ in range(rng.randint(2, 6))]
        add("https-curl", "benign", https, fetches=fetches)
    for _ in range(counts.get("nat", 0)):
        dialect = rng.choice(("btc", "xmr", "eth"))
        job_min = rng.uniform(10, 40)
        add(f"mining-{dialect}-nat", "stratum_mining", mining_nat, dialect=dialect,
            port=any_port(POOL_PORTS), miners=rng.randint(2, 4), job_min=round(job_min, 1),
            job_max=round(rng.uniform(job_min + 10, 120), 1),
            hashrate={"btc": 1.1e14, "xmr": 8000.0, "eth": 1e8}[dialect])
    for _ in range(counts.get("socks", 0)):
        add("reverse-socks", "reverse_tunnel", reverse_socks, port=any_port(SSH_PORTS),
            alive=rng.choice((0, 15, 30, 60)), idle_before=round(rng.uniform(5, 60), 1),
            fetches=[rng.choice(FILE_SIZES[:4]) for _ in range(rng.randint(1, 5))])
    for _ in range(counts.get("ssh_tls", 0)):
        add("reverse-ssh-stunnel", "reverse_tunnel", reverse_ssh_stunnel, port=any_port((443, 443, 8443)),
            idle_before=round(rng.uniform(5, 60), 1), length=round(rng.uniform(30, 150)))
    for _ in range(counts.get("shell_tls", 0)):
        add("reverse-shell-tls", "reverse_tunnel", reverse_shell, port=any_port((443, 4444, 8443)),
            length=round(rng.uniform(40, 200)))
    for _ in range(counts.get("wstunnel", 0)):
        tls = rng.random() < 0.5
        add(f"reverse-wstunnel-{'tls' if tls else 'clear'}", "reverse_tunnel", reverse_wstunnel,
            tls=tls, port=any_port((443, 80, 8080)), idle_before=round(rng.uniform(5, 60), 1),
            length=round(rng.uniform(30, 150)))
    for _ in range(counts.get("transfer", 0)):
        ops = [(rng.choice(("sftp", "rsync", "git")), rng.choice(FILE_SIZES[:4]))
               for _ in range(rng.randint(1, 4))]
        add("ssh-transfer", "benign", ssh_transfer, port=any_port(SSH_PORTS), ops=ops)
    for _ in range(counts.get("download", 0)):
        add("https-long-download", "benign", long_download, size=FILE_SIZES[-1],
            rate=rng.choice((20_000, 50_000, 100_000)))
    for _ in range(counts.get("mqtt", 0)):
        add("mqtt-keepalive", "benign", mqtt, port=any_port((1883, 1883, 8883)),
            keepalive=rng.choice((15, 30, 60)), publish_every=rng.uniform(5, 60))
    for i in range(counts["app"]):
        kind_ = ("ws", "longpoll", "json-rpc")[i % 3]
        tls = tls_mode(rng)
        add(f"{kind_}-{TLS_NAMES[tls]}", "benign", app_pair, kind=kind_, tls=tls,
            port=any_port((443, 8443, 80, 8080, 8545)))
    for _ in range(counts.get("shell_clear", 0)):  # last: the other plans draw as they did before it
        add("reverse-shell-clear", "reverse_tunnel", reverse_shell, tls=False,
            port=any_port((4444, 443, 80, 8080)), length=round(rng.uniform(40, 200)))
    for _ in range(counts.get("push", 0)):  # after the families above: their draws are unchanged
        tls = tls_mode(rng)
        add(f"push-{TLS_NAMES[tls]}", "benign", app_pair, kind="push", tls=tls,
            port=any_port((5223, 5228, 443, 8883)), heartbeat_s=round(rng.uniform(20, 200)),
            notify_s=round(rng.uniform(30, 300)))
    for _ in range(counts.get("preconnect", 0)):  # after the families above: their draws are unchanged
        probes = [(round(rng.choice((0.0, rng.uniform(0.5, 10), rng.uniform(10, 90))), 1),
                   rng.random() < 0.3) for _ in range(rng.randint(2, 8))]
        if kind == "smoke":  # one closed at once, one used after a pause: both fit a short run
            probes = [(0.0, False), (2.0, True)]
        add("tls-preconnect", "benign", tls_preconnect, probes=probes)
    for _ in range(counts.get("chat", 0)):  # last: the other plans draw as before
        tls = rng.random() < 0.6
        add(f"chat-{'tls' if tls else 'clear'}", "benign", chat, tls=tls,
            port=any_port((5222, 5222, 443, 5223)), gap_s=round(rng.uniform(8, 180)),
            ping_s=rng.choice((30, 60, 120, 300)))
    for _ in range(counts.get("automation", 0)):  # last: the other plans draw as before
        client = rng.choice(("asyncssh", "ssh"))
        add(f"ssh-automation-{client}", "benign", ssh_automation, port=any_port(SSH_PORTS),
            client=client, gap_s=round(rng.uniform(3, 90), 1),
            per_connection=rng.choice((0, 1, 3, 8)) if client == "asyncssh" else 1)
    return sessions


def prepare(lab: Lab) -> None:
    """Keys, a certificate, files to copy, nginx outside and an sshd inside (the tunnels' target)."""
    d = lab.dir
    for sub in ("ssh", "tls", "files", "nginx"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    run = subprocess.run
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "ssh" / "id_ed25519")], check=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "ssh" / "host_ed25519")], check=True)
    run(["dropbearconvert", "openssh", "dropbear", str(d / "ssh" / "id_ed25519"),
         str(d / "ssh" / "id_dropbear")], check=True, capture_output=True)
    (d / "ssh" / "authorized_keys").write_text((d / "ssh" / "id_ed25519.pub").read_text())
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj",
         f"/CN=node{lab.rng.randrange(1000)}.example.net", "-keyout", str(d / "tls" / "key.pem"),
         "-out", str(d / "tls" / "cert.pem")], check=True, capture_output=True)
    for size in FILE_SIZES:
        (d / "files" / f"f{size}").write_bytes(random.Random(size).randbytes(size))
    Path("/run/sshd").mkdir(exist_ok=True)
    from training.lab.scenarios import start_sshd

    start_sshd(lab, "in", "127.0.0.1", 22, "inside")
    # what tunnels reach inside: a web server on the inside loopback (reverse SOCKS)
    lab.topo.spawn("in", [sys.executable, "-m", "http.server", "8000", "--bind", "127.0.0.1",
                          "--directory", str(d / "files")], "inside-web")
    # a repository to clone over SSH
    run(["git", "init", "-q", "--bare", str(d / "repo.git")], check=True)
    seed_repo = d / "repo-src"
    run(["git", "init", "-q", str(seed_repo)], check=True)
    for i in range(20):
        (seed_repo / f"file{i}.txt").write_text(f"line {i}\n" * (50 * i + 1))
    git = ["git", "-C", str(seed_repo), "-c", "user.name=lab", "-c", "user.email=lab@example.net"]
    run([*git, "add", "."], check=True)
    run([*git, "commit", "-qm", "seed"], check=True)
    run([*git, "push", "-q", str(d / "repo.git"), "HEAD:refs/heads/main"], check=True, capture_output=True)
    nginx = d / "nginx"
    conf = nginx / "nginx.conf"
    conf.write_text(nginx_conf(d, f"{lab.topo.outside_ip(250)}:443",
                               f"{lab.topo.outside_ip(NGINX_TLS12_HOST)}:443"))
    lab.topo.spawn("out", ["nginx", "-c", str(conf), "-p", str(nginx)], "nginx")


def nginx_conf(workdir: Path, listen: str, listen_tls12: str) -> str:
    """nginx's configuration: `workdir`'s files over HTTPS on `listen` (TLS 1.2 or 1.3, as the
    client prefers) and on `listen_tls12` (TLS 1.2 at most). nginx 1.22 (Debian 12) agrees to
    TLS 1.2 at most unless told otherwise: runs r1-r27 and x1-x6, v1-v3 were made so, and their
    nginx sessions (`https-curl`, `https-long-download`) all speak TLS 1.2."""
    d, nginx = workdir, workdir / "nginx"
    return f"""daemon off; worker_processes 1; user root; pid {nginx}/nginx.pid;
error_log {nginx}/error.log warn;
events {{ worker_connections 512; }}
http {{
  access_log off; sendfile on; keepalive_timeout 30;
  client_body_temp_path {nginx}/body; proxy_temp_path {nginx}/proxy;
  fastcgi_temp_path {nginx}/fcgi; uwsgi_temp_path {nginx}/uwsgi; scgi_temp_path {nginx}/scgi;
  server {{
    listen {listen} ssl; server_name _;
    ssl_certificate {d}/tls/cert.pem; ssl_certificate_key {d}/tls/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    root {d}/files;
  }}
  server {{
    listen {listen_tls12} ssl; server_name _;
    ssl_certificate {d}/tls/cert.pem; ssl_certificate_key {d}/tls/key.pem;
    ssl_protocols TLSv1.2;
    root {d}/files;
  }}
}}
"""


def _mark(sessions: list[Session], share: float, option: str, select: Callable[[Session], bool],
          param: str, value: object, seed: int) -> list[Session]:
    """Set ``params[param] = value`` on about `share` of the selected sessions (of every label
    alike); a callable `value` is drawn per session from the same random stream. The stream is the
    option's own, so share 0 leaves a plan as it was. Returns the sessions marked."""
    if not 0.0 <= share <= 1.0:
        raise LabError(f"{option} {share}: allowed values are 0 to 1")
    rng = random.Random(f"{param}-{seed}")
    marked = []
    for s in sessions:
        if select(s) and rng.random() < share:
            s.params[param] = value(rng) if callable(value) else value
            marked.append(s)
    return marked


def cap_tls12(sessions: list[Session], share: float, seed: int) -> None:
    """About `share` of the TLS sessions get ``tls_max: "1.2"``: their servers agree to TLS 1.2
    at most."""
    _mark(sessions, share, "--tls12-share", uses_tls, "tls_max", "1.2", seed)


def relay_go(sessions: list[Session], share: float, seed: int) -> None:
    """About `share` of the sessions relayed by stunnel get ``tls_relay: "go"``: Go's crypto/tls
    (training/lab/gotls) carries them instead of OpenSSL."""
    _mark(sessions, share, "--go-tls-share", uses_stunnel, "tls_relay", "go", seed)


def xmrig_mining(s: Session) -> bool:
    """A Monero-style mining session that XMRig can take over: one miner on its own inside host."""
    return s.body is mining and s.params.get("dialect") == "xmr" and "inside_host" not in s.params


def mine_xmrig(sessions: list[Session], share: float, seed: int) -> None:
    """About `share` of the Monero-style mining sessions get ``miner: "xmrig"``: XMRig, a real
    miner (training/lab/xmrig.py), mines in them instead of our emulator. Their scenario says so
    (mining-xmr-tls becomes mining-xmrig-tls), for evaluation to hold them out as a family."""
    for s in _mark(sessions, share, "--xmrig-share", xmrig_mining, "miner", "xmrig", seed):
        s.scenario = s.scenario.replace("mining-xmr-", "mining-xmrig-")


def tunnel_asyncssh(sessions: list[Session], share: float, seed: int) -> None:
    """About `share` of the SSH reverse tunnels (ssh, autossh, dbclient) are opened by AsyncSSH
    (training/lab/pyssh.py), a pure-Python SSH library, instead: another client implementation on
    the wire. Their scenario says so (reverse-asyncssh), for evaluation to hold them out. Its own
    random stream: share 0 changes nothing."""
    for s in _mark(sessions, share, "--asyncssh-share", lambda s: s.body is reverse_tunnel, "tool",
                   "asyncssh", seed):
        s.scenario = "reverse-asyncssh"


def multiplex_ssh(sessions: list[Session], share: float, seed: int) -> None:
    """About `share` of the automation sessions by OpenSSH run their commands on a master
    connection (ControlMaster) that persists 30-300 s after its last command (``mux``), as
    Ansible does: one long connection, a new channel a command. Its own random stream: share 0
    changes nothing."""
    _mark(sessions, share, "--ssh-mux-share",
          lambda s: s.body is ssh_automation and s.params["client"] == "ssh", "mux",
          lambda rng: rng.choice((30, 60, 120, 300)), seed)


def query_chats(sessions: list[Session], share: float, seed: int) -> None:
    """About `share` of the chat sessions have their client ask the server something (a ping, its
    features, the peer's vCard: chat.QUERIES) every ``queries_s`` seconds on average (20-150,
    drawn per session), as desktop clients do: a request answered at once, the client speaking
    first, as a miner submitting a share does. Its own random stream: share 0 changes nothing."""
    _mark(sessions, share, "--chat-query-share", lambda s: s.body is chat, "queries_s",
          lambda rng: round(rng.uniform(20, 150)), seed)


def slow_tasks(sessions: list[Session], share: float, seed: int) -> None:
    """About `share` of the automation sessions (either client) run tasks that work seconds before
    they answer (``tasks: "slow"``, pyssh.SLOW_TASKS), as configuration management does: the
    server then speaks first after a silence, as the outside end of a tunnel in use does. Its own
    random stream: share 0 changes nothing."""
    _mark(sessions, share, "--slow-task-share", lambda s: s.body is ssh_automation, "tasks", "slow",
          seed)


OVERLOAD = 5.0
"""Mean 1-minute load average per CPU above which a run's timings are suspect (`watch_load`)."""


def watch_load(duration: float, every: float = 10.0) -> dict[str, float]:
    """Wait `duration` seconds, sampling the machine's 1-minute load average: a lab run's timings
    are only as good as the CPU its programs get. Run ten at once on 2 CPUs (a mean load of about
    45) and OpenSSH's key exchange took 12-52 s instead of a second or less, and the shipped model took
    most of those file copies for tunnels."""
    samples: list[float] = []
    end = time.monotonic() + duration
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(every, left))
        samples.append(os.getloadavg()[0])
    cpus = os.cpu_count() or 1
    mean = sum(samples) / len(samples) if samples else 0.0
    return {"cpus": cpus, "load1_mean": round(mean, 2), "load1_max": round(max(samples, default=0.0), 2),
            "overloaded": mean > OVERLOAD * cpus}


def emulated_mining(s: Session) -> bool:
    """A session of our pool with our emulator's miners (one, or several behind a NAT)."""
    return s.body in (mining, mining_nat)


def retarget_pools(sessions: list[Session], share: float, seed: int) -> None:
    """About `share` of the mining sessions get a pool that retargets its difficulty to a share
    every ``target_share_s`` (10-60 s, drawn per session), as real pools do; the others keep a
    difficulty that changes only at random. Its own random stream: share 0 changes nothing."""
    _mark(sessions, share, "--vardiff-share", emulated_mining, "target_share_s",
          lambda rng: round(rng.uniform(10, 60)), seed)


def slow_miners(sessions: list[Session], share: float, seed: int) -> None:
    """About `share` of the emulator's mining sessions mine 10 to 300 times slower (``slowdown``),
    as a throttled or small miner does at a pool whose difficulty stays high: shares minutes
    apart. Its own random stream: share 0 changes nothing."""
    for s in _mark(sessions, share, "--slow-miner-share", emulated_mining, "slowdown",
                   lambda rng: round(10 ** rng.uniform(1.0, 2.5)), seed):
        hashrate, slowdown = s.params["hashrate"], s.params["slowdown"]
        assert isinstance(hashrate, float | int) and isinstance(slowdown, int)
        s.params["hashrate"] = float(hashrate) / slowdown


def pool_accounts(logs: Path) -> dict[str, dict[str, int]]:
    """Per mining session, its pool's account of it: connections, jobs sent, shares accepted and
    rejected (the `pool STATS` line a stratum pool prints as it stops, in logs/<session>-pool.log).
    labels.json keeps it as the session's `pool`: how much mining a session's capture holds (a
    throttled miner may have no share accepted in a whole run)."""
    out: dict[str, dict[str, int]] = {}
    for log in sorted(logs.glob("*-pool.log")):
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("pool STATS ")]
        if lines:
            out[log.name.removesuffix("-pool.log")] = json.loads(lines[-1].split(" STATS ", 1)[1])
    return out


def run_lab(out: Path, kind: str, duration: float, delay: float, jitter: float, loss: float,
            seed: int, net: int, rate_mbit: float | None = None, keep_workdir: bool = False,
            mtu: int = 1500, tls12_share: float = 0.0, go_tls_share: float = 0.0,
            xmrig_share: float = 0.0, vardiff_share: float = 0.0,
            slow_miner_share: float = 0.0, asyncssh_share: float = 0.0,
            ssh_mux_share: float = 0.0, slow_task_share: float = 0.0,
            chat_query_share: float = 0.0) -> dict[str, object]:
    why = need_root()
    if why:
        raise LabError(why)
    out.mkdir(parents=True, exist_ok=True)
    # a fresh working directory (keys, configs, logs) per run; kept only with --keep-workdir
    work = Path(tempfile.mkdtemp(prefix=f"flowguard-lab-{net}-"))
    topo = Topology(net, work, delay_ms=delay, jitter_ms=jitter, loss_pct=loss, seed=seed,
                    rate_mbit=rate_mbit, mtu=mtu)
    rng = random.Random(seed)
    run_id = out.name
    sessions = plan(kind, rng, duration, run_id)
    cap_tls12(sessions, tls12_share, seed)
    relay_go(sessions, go_tls_share, seed)
    mine_xmrig(sessions, xmrig_share, seed)
    retarget_pools(sessions, vardiff_share, seed)
    slow_miners(sessions, slow_miner_share, seed)
    tunnel_asyncssh(sessions, asyncssh_share, seed)
    multiplex_ssh(sessions, ssh_mux_share, seed)
    slow_tasks(sessions, slow_task_share, seed)
    query_chats(sessions, chat_query_share, seed)
    lab = Lab(topo, rng, duration)
    if any(s.params.get("miner") == "xmrig" for s in sessions):
        if not xmrig.available():
            raise LabError(f"--xmrig-share: {xmrig.MISSING}")
        lab.xmrig_cgroup = xmrig.cpu_cap(f"flowguard-lab-{net}-xmrig")
        if lab.xmrig_cgroup is None:
            raise LabError(f"--xmrig-share: {xmrig.NO_CAP}")
    try:
        topo.up()
        prepare(lab)
        if any(s.params.get("tls_relay") == "go" for s in sessions):
            if shutil.which("go") is None:
                raise LabError("--go-tls-share needs Go (apt-get install golang-go)")
            build_gotls(lab.dir)
        capture = out / "capture.pcap"
        topo.spawn("rt", ["tcpdump", "-i", "veth1", "-s", "0", "-n", "-U", "-w", str(capture)], "tcpdump")
        time.sleep(1.0)
        lab.t0 = time.monotonic()
        threads = [threading.Thread(target=s.body, args=(lab, s), daemon=True) for s in sessions]
        for t in threads:
            t.start()
        load = watch_load(duration)
    finally:
        topo.down()  # the pools print their account as they stop
        if lab.xmrig_cgroup is not None:
            xmrig.release(lab.xmrig_cgroup)
        pools = pool_accounts(work / "logs")
        if not keep_workdir:
            shutil.rmtree(work, ignore_errors=True)
    labels = {
        "run": run_id, "plan": kind, "seed": seed, "duration_s": duration, "capture": "capture.pcap",
        "network": {"delay_ms": delay, "jitter_ms": jitter, "loss_pct": loss, "rate_mbit": rate_mbit,
                    "mtu": mtu},
        "tls12_share": tls12_share,
        "go_tls_share": go_tls_share,
        "xmrig_share": xmrig_share,
        "vardiff_share": vardiff_share,
        "slow_miner_share": slow_miner_share,
        "asyncssh_share": asyncssh_share,
        "ssh_mux_share": ssh_mux_share,
        "slow_task_share": slow_task_share,
        "chat_query_share": chat_query_share,
        "host_load": load,
        **({"workdir": str(work)} if keep_workdir else {}),
        "sessions": [s.describe() | ({"pool": pools[s.id]} if s.id in pools else {})
                     for s in sessions],
        "conversations": [as_dict(c) for c in lab.conversations],
    }
    (out / "labels.json").write_text(json.dumps(labels, indent=1, default=str))
    return labels


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.lab.run", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="output directory (its name is the run id)")
    ap.add_argument("--plan", choices=("smoke", "train", "breadth", "lan", "shells", "push", "handshakes",
                                        "messaging", "automation", "samples"),
                    default="train")
    ap.add_argument("--duration", type=float, default=600.0, help="seconds of traffic")
    ap.add_argument("--delay", type=float, default=20.0, help="one-way WAN delay, ms")
    ap.add_argument("--jitter", type=float, default=2.0, help="WAN jitter, ms")
    ap.add_argument("--loss", type=float, default=0.0, help="WAN loss, percent")
    ap.add_argument("--rate", type=float, default=None, help="WAN rate limit, Mbit/s (tbf)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep-workdir", action="store_true", help="keep keys, configs and logs")
    ap.add_argument("--mtu", type=int, default=1500, help="MTU of every lab link")
    ap.add_argument("--net", type=int, default=77, help="second octet of the lab's 10.x addresses")
    ap.add_argument("--tls12-share", type=float, default=0.0,
                    help="share (0-1) of the TLS sessions whose server speaks TLS 1.2 at most")
    ap.add_argument("--go-tls-share", type=float, default=0.0,
                    help="share (0-1) of the stunnel-relayed sessions relayed by Go's crypto/tls")
    ap.add_argument("--xmrig-share", type=float, default=0.0,
                    help="share (0-1) of the Monero-style mining sessions mined by XMRig")
    ap.add_argument("--vardiff-share", type=float, default=0.0,
                    help="share (0-1) of the mining sessions whose pool retargets the difficulty "
                         "to a share every 10-60 s")
    ap.add_argument("--slow-miner-share", type=float, default=0.0,
                    help="share (0-1) of the emulator's mining sessions that mine 10-300 times slower")
    ap.add_argument("--asyncssh-share", type=float, default=0.0,
                    help="share (0-1) of the SSH reverse tunnels opened by AsyncSSH instead")
    ap.add_argument("--ssh-mux-share", type=float, default=0.0,
                    help="share (0-1) of OpenSSH's automation sessions on a persisting master connection")
    ap.add_argument("--slow-task-share", type=float, default=0.0,
                    help="share (0-1) of the automation sessions whose tasks work seconds before "
                         "they answer")
    ap.add_argument("--chat-query-share", type=float, default=0.0,
                    help="share (0-1) of the chat sessions whose client queries the server "
                         "every 20-150 s (pings, features, vCards)")
    a = ap.parse_args(argv)
    # stopped with SIGTERM (kill, a job runner, a timeout) as with Ctrl-C: run_lab's `finally` takes
    # the namespaces, their processes and the XMRig cgroup down instead of leaving them behind
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        labels = run_lab(a.out, a.plan, a.duration, a.delay, a.jitter, a.loss, a.seed, a.net, a.rate,
                         a.keep_workdir, a.mtu, a.tls12_share, a.go_tls_share, a.xmrig_share,
                         a.vardiff_share, a.slow_miner_share, a.asyncssh_share, a.ssh_mux_share,
                         a.slow_task_share, a.chat_query_share)
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"lab: stopped; {a.out} has no labels.json (its capture is partial)", file=sys.stderr)
        return 130
    print(f"{a.out}: {len(labels['sessions'])} sessions, "  # type: ignore[arg-type]
          f"{len(labels['conversations'])} conversations")  # type: ignore[arg-type]
    load: dict[str, Any] = labels["host_load"]  # type: ignore[assignment]
    if load["overloaded"]:
        print(f"lab: warning: the machine was overloaded (mean load {load['load1_mean']} on "
              f"{load['cpus']} CPUs, more than {OVERLOAD:g} a CPU): this run's timings are suspect; "
              "run fewer at once", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
