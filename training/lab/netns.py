"""The lab network: four Linux network namespaces and the processes that run in them.

    inside (hosts 10.{n}.1.0/24) ── router ── wan (userspace delay bridge) ── outside (10.{n}.3.0/24)
                                      │
                                 tcpdump here, on the outside-facing port: what a SPAN port sees

Every address lives inside namespaces this module creates; nothing is routed anywhere else. The
kernel here has no netem, so `wanbridge` adds the WAN delay, jitter and loss, and `tbf` the rate. With
no delay, jitter or loss (a LAN, or a pool in the same datacenter) the wan namespace is a kernel bridge.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from training.lab.wanbridge import disable_offloads

REPO = Path(__file__).resolve().parents[2]


class LabError(RuntimeError):
    """The lab could not be built or a process in it failed."""


def need_root() -> str | None:
    """Why the lab cannot run here, or None when it can."""
    if sys.platform != "linux":
        return "the lab needs Linux network namespaces"
    if os.geteuid() != 0:
        return "the lab needs root (ip netns, tcpdump)"
    for tool in ("ip", "tc", "tcpdump", "ethtool"):
        if shutil.which(tool) is None:
            return f"the lab needs `{tool}` on PATH"
    probe = f"fgprobe{os.getpid()}"
    ok = subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode == 0
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None if ok else "`ip netns add` is not permitted here"


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.returncode}")
    return proc


@dataclass
class Topology:
    """The namespaces of one lab run. `net` (1..250) picks the 10.net.x.y addresses and names."""

    net: int
    workdir: Path
    delay_ms: float = 20.0
    jitter_ms: float = 2.0
    loss_pct: float = 0.0
    rate_mbit: float | None = None
    mtu: int = 1500
    seed: int = 0
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    @property
    def ns(self) -> dict[str, str]:
        return {k: f"fg{self.net}-{k}" for k in ("in", "rt", "wan", "out")}

    def inside_ip(self, host: int) -> str:
        return f"10.{self.net}.1.{host}"

    def outside_ip(self, host: int) -> str:
        return f"10.{self.net}.3.{host}"

    @property
    def gateway_in(self) -> str:
        """The router's address on the inside link (the inside hosts' default route)."""
        return f"10.{self.net}.1.1"

    # -- building -------------------------------------------------------------------------------
    def up(self, inside_hosts: int = 240, outside_hosts: int = 250) -> None:
        n, ns = self.net, self.ns
        self.down()
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name in ns.values():
            sh("ip", "netns", "add", name)
        link = [("in", "veth0", "rt", "veth0"), ("rt", "veth1", "wan", "veth0"),
                ("wan", "veth1", "out", "veth0")]
        for a, ia, b, ib in link:
            sh("ip", "link", "add", ia, "netns", ns[a], "type", "veth", "peer", "name", ib,
               "netns", ns[b])
        for name, ifs in (("in", ["veth0"]), ("rt", ["veth0", "veth1"]),
                          ("wan", ["veth0", "veth1"]), ("out", ["veth0"])):
            self.run(name, "ip", "link", "set", "lo", "up")
            for i in ifs:
                disable_offloads(i, ns[name])
                self.run(name, "ip", "link", "set", i, "mtu", str(self.mtu), "up")
        self.run("in", "ip", "addr", "add", f"10.{n}.1.254/24", "dev", "veth0")
        # several inside hosts share the namespace, each its own address
        self.batch("in", [f"addr add {self.inside_ip(h)}/32 dev veth0"
                          for h in range(10, 10 + inside_hosts)])
        self.run("in", "ip", "route", "add", "default", "via", self.gateway_in)
        self.run("rt", "ip", "addr", "add", f"{self.gateway_in}/24", "dev", "veth0")
        self.run("rt", "ip", "addr", "add", f"10.{n}.2.1/24", "dev", "veth1")
        self.run("rt", "ip", "route", "add", f"10.{n}.3.0/24", "via", f"10.{n}.2.2")
        self.run("rt", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.run("out", "ip", "addr", "add", f"10.{n}.2.2/24", "dev", "veth0")
        self.batch("out", [f"addr add {self.outside_ip(h)}/32 dev lo"
                           for h in range(1, 1 + outside_hosts)])
        self.run("out", "ip", "route", "add", f"10.{n}.1.0/24", "via", f"10.{n}.2.1")
        if self.rate_mbit:
            for i in ("veth0", "veth1"):
                self.run("wan", "tc", "qdisc", "add", "dev", i, "root", "tbf", "rate",
                         f"{self.rate_mbit}mbit", "burst", "32kbit", "latency", "400ms")
        if self.direct:
            # a LAN or same-datacenter path: the kernel bridges it, with no userspace hop's latency
            self.batch("wan", ["link add br0 type bridge", "link set veth0 master br0",
                               "link set veth1 master br0", "link set br0 up"])
        else:
            self.spawn("wan", [sys.executable, "-m", "training.lab.wanbridge", "--if-a", "veth0",
                               "--if-b", "veth1", "--delay", str(self.delay_ms), "--jitter",
                               str(self.jitter_ms), "--loss", str(self.loss_pct), "--seed",
                               str(self.seed)], "wanbridge")
        self._wait_reachable()

    @property
    def direct(self) -> bool:
        """No delay, jitter or loss to emulate: the wan namespace is a kernel bridge."""
        return self.delay_ms == 0 and self.jitter_ms == 0 and self.loss_pct == 0

    def _wait_reachable(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        probe = (
            "import socket,sys;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
            f"s.connect(('10.{self.net}.2.2',9));s.send(b'x')"
        )
        # ARP through the bridge proves the path; the UDP datagram itself is discarded.
        while time.monotonic() < deadline:
            self.run("rt", sys.executable, "-c", probe, check=False)
            neigh = self.run("rt", "ip", "neigh", "show", f"10.{self.net}.2.2", check=False).stdout
            if "lladdr" in neigh:
                return
            time.sleep(0.2)
        raise LabError("the outside namespace is not reachable through the wan namespace")

    def down(self) -> None:
        self.stop_all()
        for name in self.ns.values():
            sh("ip", "netns", "pids", name, check=False)
            pids = sh("ip", "netns", "pids", name, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            sh("ip", "netns", "del", name, check=False)

    # -- processes ------------------------------------------------------------------------------
    def run(self, where: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.ns[where], *argv, check=check)

    def run_quiet(self, where: str, *argv: str, timeout: float) -> int | None:
        """Run `argv` in namespace `where` without pipes (its input and output /dev/null), at most
        `timeout` s: its exit code, None if it ran out of time. For a command that leaves a process
        behind holding what it inherited (ssh starting a ControlPersist master), which `run`'s
        captured output would wait for."""
        try:
            return subprocess.run(["ip", "netns", "exec", self.ns[where], *argv],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=timeout, check=False).returncode
        except subprocess.TimeoutExpired:
            return None

    def batch(self, where: str, commands: list[str]) -> None:
        proc = subprocess.run(["ip", "-n", self.ns[where], "-batch", "-"], input="\n".join(commands),
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise LabError(f"ip -batch in {self.ns[where]}: {proc.stderr.strip()}")

    def spawn(self, where: str, argv: list[str], name: str, env: dict[str, str] | None = None,
              cgroup: Path | None = None) -> subprocess.Popen[bytes]:
        """Run `argv` in namespace `where`, logging to logs/<name>.log; in `cgroup` (its
        cgroup.procs file) if given: joined before `ip netns exec` hides the host's /sys."""
        log = (self.workdir / "logs").joinpath(f"{name}.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        join = ["sh", "-c", f'echo $$ > {cgroup} && exec "$@"', "sh"] if cgroup else []
        with log.open("ab") as fh:
            proc = subprocess.Popen(
                [*join, "ip", "netns", "exec", self.ns[where], *argv],
                stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                start_new_session=True,
            )
        self.procs.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def stop_all(self) -> None:
        for _, proc in reversed(self.procs):
            self.stop(proc, grace=3.0)
        self.procs.clear()
