"""The live appliance end to end, in network namespaces (root only).

    fglv-in (10.247.1.0/24) ── fglv-rt ── fglv-out (10.247.3.0/24)
                                 │ tc mirred: every packet of the outside-facing port
                             fglv-app: `flowguard serve --interface mir0`, nftables in fglv-rt

The appliance classifies the mirrored traffic live (windows of 5 s, or up to 2 s of silence, judged by
the model's live booster; a connection's first window is cut after the model's opening timeout,
3 s) and blocks through the nftables adapter run in the router's namespace. Two stratum miners over
TLS on 443 (one that logs in and waits for jobs, one that submits shares every second or so and so
never falls silent) and an `ssh -N -R` tunnel used by a typed shell run from inside; a curl loop is
the benign traffic. The test asserts that all three are blocked and prints the time from each
connection's first packet to its block. Every address lives in the namespaces made
here; they are deleted at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from training.lab.wanbridge import disable_offloads

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[1]
NET = 247
INSIDE, OUTSIDE = f"10.{NET}.1", f"10.{NET}.3"
POOL, SSHD, WEB, POOL2 = f"{OUTSIDE}.5", f"{OUTSIDE}.6", f"{OUTSIDE}.7", f"{OUTSIDE}.8"
MINER_HOST, TUNNEL_HOST, WEB_HOST = f"{INSIDE}.10", f"{INSIDE}.11", f"{INSIDE}.12"
MINER2_HOST = f"{INSIDE}.13"
TARGETS = {"miner (TLS 443)": (POOL, MINER_HOST, 443),
           "miner sharing often (TLS 443)": (POOL2, MINER2_HOST, 443),
           "ssh -R": (SSHD, TUNNEL_HOST, 22)}
"""What must be blocked: its outside address, the inside host that connects to it, the port."""
API_PORT = 18247
BLOCK_DEADLINE_S = 70
SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ServerAliveInterval=15"]


def _why_not() -> str | None:
    if sys.platform != "linux":
        return "needs Linux network namespaces"
    if os.geteuid() != 0:
        return "needs root (ip netns, tc mirred, nft, live capture)"
    for tool in ("ip", "tc", "nft", "ssh", "ssh-keygen", "ethtool", "curl"):
        if shutil.which(tool) is None:
            return f"needs `{tool}` on PATH"
    if not Path("/usr/sbin/sshd").exists():
        return "needs /usr/sbin/sshd"
    probe = f"fglvprobe{os.getpid()}"
    ok = subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode == 0
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None if ok else "`ip netns add` is not permitted here"


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True)
    assert not check or proc.returncode == 0, f"{' '.join(argv)}: {proc.stderr}"
    return proc


class Lab:
    def __init__(self, workdir: Path) -> None:
        tag = os.getpid() % 10000
        self.ns = {k: f"fglv{tag}-{k}" for k in ("in", "rt", "out", "app")}
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def run(self, where: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _sh("ip", "netns", "exec", self.ns[where], *argv, check=check)

    def spawn(self, where: str, argv: list[str], name: str, env: dict[str, str] | None = None,
              stdin: int | None = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns[where], *argv], stdin=stdin, stdout=log,
                                stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
                                env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
        self.procs.append(proc)
        return proc

    def up(self) -> None:
        ns = self.ns
        for name in ns.values():
            _sh("ip", "netns", "add", name)
        for a, ia, b, ib in (("in", "veth0", "rt", "veth0"), ("rt", "veth1", "out", "veth0"),
                             ("rt", "mir0", "app", "mir0")):
            _sh("ip", "link", "add", ia, "netns", ns[a], "type", "veth", "peer", "name", ib, "netns", ns[b])
        for name, ifs in (("in", ["veth0"]), ("rt", ["veth0", "veth1", "mir0"]), ("out", ["veth0"]),
                          ("app", ["mir0"])):
            self.run(name, "ip", "link", "set", "lo", "up")
            for i in ifs:
                disable_offloads(i, ns[name])
                self.run(name, "ip", "link", "set", i, "up")
        self.run("in", "ip", "addr", "add", f"{INSIDE}.254/24", "dev", "veth0")
        for host in (MINER_HOST, TUNNEL_HOST, WEB_HOST, MINER2_HOST):
            self.run("in", "ip", "addr", "add", f"{host}/32", "dev", "veth0")
        self.run("in", "ip", "route", "add", "default", "via", f"{INSIDE}.1")
        self.run("rt", "ip", "addr", "add", f"{INSIDE}.1/24", "dev", "veth0")
        self.run("rt", "ip", "addr", "add", f"10.{NET}.2.1/24", "dev", "veth1")
        self.run("rt", "ip", "route", "add", f"{OUTSIDE}.0/24", "via", f"10.{NET}.2.2")
        self.run("rt", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.run("out", "ip", "addr", "add", f"10.{NET}.2.2/24", "dev", "veth0")
        for host in (POOL, SSHD, WEB, POOL2):
            self.run("out", "ip", "addr", "add", f"{host}/32", "dev", "lo")
        self.run("out", "ip", "route", "add", f"{INSIDE}.0/24", "via", f"10.{NET}.2.1")
        # the SPAN port: both directions of the outside-facing port, copied to the appliance
        self.run("rt", "tc", "qdisc", "add", "dev", "veth1", "clsact")
        for direction in ("ingress", "egress"):
            self.run("rt", "tc", "filter", "add", "dev", "veth1", direction, "u32", "match", "u32", "0", "0",
                     "action", "mirred", "egress", "mirror", "dev", "mir0")

    def down(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, 15)
                    proc.wait(5)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(proc.pid, 9)
                    except ProcessLookupError:
                        pass
        for name in self.ns.values():
            for pid in _sh("ip", "netns", "pids", name, check=False).stdout.split():
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            _sh("ip", "netns", "del", name, check=False)

    def blocked(self) -> set[str]:
        out = self.run("rt", "nft", "-j", "list", "set", "inet", "flowguard", "blocked_v4",
                       check=False).stdout

        found: set[str] = set()
        try:
            items = json.loads(out)["nftables"]
        except (ValueError, KeyError):
            return found
        for item in items:
            for elem in item.get("set", {}).get("elem", []):
                value = elem.get("elem", {}).get("val") if isinstance(elem, dict) else elem
                if isinstance(value, str):
                    found.add(value)
        return found

    def connects(self, src: str, dst: str, port: int, timeout: float = 1.0) -> bool:
        code = (f"import socket;s=socket.socket();s.settimeout({timeout});s.bind(({src!r},0));"
                f"s.connect(({dst!r},{port}))")
        return self.run("in", sys.executable, "-c", code, check=False).returncode == 0


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    why = _why_not()
    if why:
        pytest.skip(why)
    lab = Lab(tmp_path)
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


def _keys(d: Path) -> None:
    for name in ("id_ed25519", "host_ed25519"):
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name))
    (d / "authorized_keys").write_text((d / "id_ed25519.pub").read_text())


def _sshd(lab: Lab, where: str, listen: str, port: int, d: Path, name: str) -> None:
    cfg = d / f"sshd-{name}.conf"
    cfg.write_text("\n".join([
        f"ListenAddress {listen}:{port}", f"HostKey {d / 'host_ed25519'}",
        f"AuthorizedKeysFile {d / 'authorized_keys'}", f"PidFile {cfg}.pid", "PermitRootLogin yes",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
        "AllowTcpForwarding yes", "PrintMotd no", "LogLevel ERROR", ""]))
    lab.spawn(where, ["/usr/sbin/sshd", "-D", "-e", "-f", str(cfg)], f"sshd-{name}")


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_live_appliance_blocks_miner_and_tunnel(lab: Lab, tmp_path: Path) -> None:
    py = sys.executable
    ssh_dir = tmp_path / "ssh"
    ssh_dir.mkdir()
    _keys(ssh_dir)
    env = {"FLOWGUARD_FIREWALL": "nftables", "FLOWGUARD_NFT_NETNS": lab.ns["rt"],
           "FLOWGUARD_ALLOWLIST": f"{INSIDE}.0/24", "FLOWGUARD_DATA_DIR": str(tmp_path / "data"),
           "FLOWGUARD_EXPIRE_INTERVAL": "5s", "FLOWGUARD_API_KEYS": ""}
    serve = lab.spawn("app", [py, "-m", "flowguard", "serve", "--interface", "mir0", "--active-timeout", "5",
                              "--port", str(API_PORT), "--insecure-no-auth"], "serve", env=env)

    def ready() -> bool:
        assert serve.poll() is None, (tmp_path / "serve.log").read_text()
        res = lab.run("app", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                      f"http://127.0.0.1:{API_PORT}/readyz", check=False)
        return res.stdout == "200"

    _wait(ready, 30, "the appliance to be ready (capture running)")

    # servers outside
    for addr, seed in ((POOL, "1"), (POOL2, "4")):
        lab.spawn("out", [py, "-m", "training.lab.stratum", "pool", "--listen", f"{addr}:443", "--tls",
                          "--dialect", "xmr", "--job-min", "2", "--job-max", "5", "--seed", seed],
                  f"pool-{addr}")
    _sshd(lab, "out", SSHD, 22, ssh_dir, "outside")
    _sshd(lab, "in", "127.0.0.1", 2200, ssh_dir, "inside")
    lab.spawn("out", [py, "-m", "http.server", "--bind", WEB, "8080", "--directory", str(tmp_path)], "web")
    _wait(lambda: all(lab.run("out", "ss", "-ltn", check=False).stdout.count(f"{h}:{p}")
                      for h, p in ((POOL, 443), (POOL2, 443), (SSHD, 22), (WEB, 8080))), 15,
          "the outside servers")
    assert lab.blocked() == set()

    # benign: a curl every second from the web host
    benign_log = tmp_path / "benign.txt"
    lab.spawn("in", ["sh", "-c", f"while true; do curl -s -o /dev/null -w '%{{http_code}}\\n' "
                                 f"--interface {WEB_HOST} -m 2 http://{WEB}:8080/ >> {benign_log}; "
                                 "sleep 1; done"], "benign")
    # the miners: Monero dialect over TLS on 443; the second (150 kH/s against the pool's
    # difficulty of 100k) submits a share every 0.7 s on average, so its connection never falls
    # silent for 2 s and its first window ends at the opening timeout
    started_wall = {POOL: time.time()}
    lab.spawn("in", [py, "-m", "training.lab.stratum", "miner", "--connect", f"{POOL}:443", "--tls",
                     "--dialect", "xmr", "--bind", MINER_HOST, "--duration", "85", "--seed", "2"], "miner")
    started_wall[POOL2] = time.time()
    lab.spawn("in", [py, "-m", "training.lab.stratum", "miner", "--connect", f"{POOL2}:443", "--tls",
                     "--dialect", "xmr", "--bind", MINER2_HOST, "--duration", "85", "--seed", "5",
                     "--hashrate", "150000"], "miner2")
    # the reverse tunnel, then a shell typed through it from outside
    started_wall[SSHD] = time.time()
    lab.spawn("in", ["ssh", "-i", str(ssh_dir / "id_ed25519"), *SSH_OPTS, "-N", "-b", TUNNEL_HOST,
                     "-R", "127.0.0.1:2222:127.0.0.1:2200", f"root@{SSHD}"], "tunnel")
    time.sleep(2)
    lab.spawn("out", [py, "-m", "training.lab.apps", "typist", "--duration", "60", "--seed", "3", "--",
                      "ssh", "-i", str(ssh_dir / "id_ed25519"), *SSH_OPTS, "-tt", "-p", "2222",
                      "root@127.0.0.1"], "typist")

    addrs = [addr for addr, _, _ in TARGETS.values()]
    blocked_at: dict[str, float] = {}  # wall clock, as the capture's timestamps
    deadline = time.monotonic() + BLOCK_DEADLINE_S
    while time.monotonic() < deadline and len(blocked_at) < len(addrs):
        now_blocked = lab.blocked()
        for addr in addrs:
            if addr in now_blocked and addr not in blocked_at:
                blocked_at[addr] = time.time()
        time.sleep(0.1)
    verdicts = lab.run("app", "curl", "-s", f"http://127.0.0.1:{API_PORT}/v1/verdicts?limit=1000",
                       check=False).stdout
    seen = json.loads(verdicts or '{"verdicts": []}').get("verdicts", [])
    # from the connection's first packet as the appliance captured it (the earliest first_seen of
    # its windows) to the moment the address was found in the router's set (polled every 0.1 s)
    first_packet = {addr: min((v["first_seen_ms"] / 1000 for v in seen if addr in (v["src_ip"], v["dst_ip"])),
                              default=None) for addr in addrs}
    report = {name: (blocked_at[addr] - first_packet[addr]
                     if addr in blocked_at and first_packet[addr] is not None else None)
              for name, (addr, _, _) in TARGETS.items()}
    print("\ntime from first packet to block (s):",
          {k: (round(v, 1) if v is not None else f"not blocked in {BLOCK_DEADLINE_S} s")
           for k, v in report.items()},
          "; from starting the client:",
          {name: round(blocked_at[addr] - started_wall[addr], 1) for name, (addr, _, _) in TARGETS.items()
           if addr in blocked_at})
    metrics = lab.run("app", "curl", "-s", f"http://127.0.0.1:{API_PORT}/metrics", check=False).stdout
    wanted = ("flowguard_capture", "flowguard_live_verdicts_total", "flowguard_inference_seconds_sum")
    print("capture metrics:", "; ".join(x for x in metrics.splitlines() if x.startswith(wanted)))
    windows = {name: [v for v in seen if addr in (v["src_ip"], v["dst_ip"])]
               for name, (addr, _, _) in TARGETS.items()}
    counts = {name: {c: [v["verdict"] for v in ws].count(c) for c in sorted({v["verdict"] for v in ws})}
              for name, ws in windows.items()}
    print(f"windows classified: {counts}")
    for v in sorted(seen, key=lambda v: v["first_seen_ms"]):
        if any(addr in (v["src_ip"], v["dst_ip"]) for addr in addrs):
            received = datetime.fromisoformat(v["received_at"]).timestamp()
            print(f"  {v['src_ip']}:{v['src_port']} > {v['dst_ip']}:{v['dst_port']} "
                  f"{v['packets']} packets, {v['last_seen_ms'] - v['first_seen_ms']} ms, stored "
                  f"{received - v['last_seen_ms'] / 1000:.1f} s after its last packet: "
                  f"{v['verdict']} {v['scores']}")
    # the appliance saw every connection through the mirror and classified it
    for name, ws in windows.items():
        assert ws, f"no verdict for {name}"
    # benign traffic keeps flowing and is never blocked
    assert lab.connects(WEB_HOST, WEB, 8080)
    codes = benign_log.read_text().split()
    assert codes and codes[-1] == "200" and codes.count("200") >= len(codes) - 1, codes
    assert WEB not in lab.blocked()
    # what was blocked is blocked on the router: a new connection from inside fails
    for addr, host, port in TARGETS.values():
        if addr in blocked_at:
            assert not lab.connects(host, addr, port), f"{addr} is in the set but still reachable"
    # each was blocked: the live booster (model-live.txt) judges each window (the first cut at the
    # opening timeout, the rest 5 s, or shorter where 2 s of silence end them) and the connection so
    # far; where none of them is confident enough (MODEL.md, "Live windows") nothing is blocked
    missed = [name for name, t in report.items() if t is None]
    assert not missed, (f"not blocked within {BLOCK_DEADLINE_S} s of live windows: {missed} "
                        f"(scores of their first windows: "
                        f"{ {n: [v['scores'] for v in windows[n]][:5] for n in missed} })")
