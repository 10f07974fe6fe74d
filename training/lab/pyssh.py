"""Another SSH client for the traffic lab: AsyncSSH, a pure-Python SSHv2 implementation.

``python -m training.lab.pyssh SUBCOMMAND --help``. ``tunnel``: a reverse port forward (what
``ssh -N -R`` does), held open with keepalives until the deadline. ``exec``: automation, commands
run non-interactively on a server (what configuration-management and monitoring agents do over
SSH libraries), each batch on a new connection or all on one.

OpenSSH and Dropbear were the lab's only SSH clients; AsyncSSH negotiates, sizes and paces its
packets its own way (its own key exchange preferences, its own channel windows and writes), so a
tunnel or an automation session made with it is traffic of a client the model may never have seen.

Both commands exit 0 at the deadline or on SIGTERM/SIGINT, and print one ``pyssh STATS {json}``
line on stderr with ``--verbose`` (``tunnel`` also ``pyssh forwarding PORT`` once it forwards).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

AUTOMATION_COMMANDS = (
    "uptime", "uname -a", "df -h", "free -m", "cat /proc/loadavg", "ls -la /tmp", "id",
    "ps aux --sort=-%cpu | head -n 15", "cat /etc/os-release", "ip -brief addr",
    "du -sh /var/log 2>/dev/null", "tail -n 40 /proc/self/status", "date -u", "hostname",
    "find /etc -maxdepth 1 -name '*.conf' | head -n 20", "cat /proc/meminfo | head -n 12",
)
"""What an automation session runs: facts and health checks, short answers and a few pages."""
SLOW_TASKS = (
    "sleep 3; df -h", "sleep 8; cat /etc/os-release", "sleep 2; ps aux | head -n 30",
    "sleep 15; uptime", "sleep 5; ls -la /etc | head -n 40", "sleep 11; free -m",
    "sleep 4; cat /proc/meminfo | head -n 12", "sleep 24; date -u",
)
"""... or tasks that work for seconds before they answer, as configuration management's do (a
package installed, a service restarted): the connection falls silent, then the server speaks
first. AsyncSSH sends each one a module first (`ExecConfig.module_bytes`), as Ansible copies its
module over before running it."""


@dataclass
class Target:
    host: str
    port: int
    key: str
    bind: str | None = None
    user: str = "root"
    keepalive: int = 0  # seconds between keepalives (0: none)

    def options(self) -> dict[str, Any]:
        return {"port": self.port, "username": self.user, "client_keys": [self.key],
                "known_hosts": None, "keepalive_interval": self.keepalive,
                "local_addr": (self.bind, 0) if self.bind else None}


@dataclass
class TunnelConfig:
    target: Target
    listen_port: int  # the port opened on the server's loopback
    dest_host: str = "127.0.0.1"
    dest_port: int = 22
    duration: float = 0.0  # 0: until SIGTERM


@dataclass
class ExecConfig:
    target: Target
    duration: float
    seed: int = 0
    gap_mean: float = 20.0  # seconds between commands, on average
    per_connection: int = 0  # commands per connection (0: all on one)
    commands: tuple[str, ...] = field(default=AUTOMATION_COMMANDS)
    module_bytes: tuple[int, int] = (0, 0)  # a command's input: this many bytes, at random (min, max)


async def tunnel(cfg: TunnelConfig, stop: asyncio.Event,
                 ready: Callable[[], None] | None = None) -> dict[str, Any]:
    """A reverse forward of the server's ``listen_port`` to ``dest`` on this side, until `stop`;
    `ready` is called once the forward is in place. (The server listens a moment before: AsyncSSH
    refuses a connection forwarded to it before it has taken the server's answer.)"""
    import asyncssh  # the lab's extra: scenarios.py reads AUTOMATION_COMMANDS without it

    async with asyncssh.connect(cfg.target.host, **cfg.target.options()) as conn:
        listener = await conn.forward_remote_port("127.0.0.1", cfg.listen_port, cfg.dest_host,
                                                  cfg.dest_port)
        if ready is not None:
            ready()
        await _until(stop, cfg.duration if cfg.duration > 0 else None)
        listener.close()
        return {"forwarded": cfg.listen_port, "server_version": conn.get_extra_info("server_version")}


async def automation(cfg: ExecConfig, stop: asyncio.Event) -> dict[str, Any]:
    """Commands `gap_mean` seconds apart (exponential gaps), `per_connection` to a connection."""
    import asyncssh

    rng = random.Random(cfg.seed)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + cfg.duration
    st = {"connections": 0, "commands": 0, "bytes_out": 0}
    while not stop.is_set() and loop.time() < deadline:
        async with asyncssh.connect(cfg.target.host, **cfg.target.options()) as conn:
            st["connections"] += 1
            n = 0
            while not stop.is_set() and loop.time() < deadline:
                command = rng.choice(cfg.commands)
                module = None
                if cfg.module_bytes[1] > 0:
                    module = "".join(rng.choices("0123456789abcdef", k=rng.randint(*cfg.module_bytes)))
                    command = f"cat > /dev/null; {command}"
                result = await conn.run(command, input=module, check=False)
                st["commands"] += 1
                st["bytes_out"] += len(str(result.stdout or ""))
                n += 1
                gap = min(rng.expovariate(1 / cfg.gap_mean), max(deadline - loop.time(), 0))
                if cfg.per_connection and n >= cfg.per_connection:
                    break
                await _until(stop, gap)
        if cfg.per_connection:  # the next batch on a new connection, after a pause
            await _until(stop, min(rng.expovariate(1 / cfg.gap_mean), max(deadline - loop.time(), 0)))
    return st


async def _until(stop: asyncio.Event, seconds: float | None) -> None:
    """Wait `seconds` (None: for ever) or until `stop` is set."""
    if seconds is not None and seconds <= 0:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.lab.pyssh", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("tunnel", "exec"):
        sp = sub.add_parser(name)
        sp.add_argument("--connect", required=True, help="server HOST:PORT")
        sp.add_argument("--key", required=True, help="private key file")
        sp.add_argument("--bind", help="local address to connect from")
        sp.add_argument("--keepalive", type=int, default=0, help="seconds between keepalives (0: none)")
        sp.add_argument("--duration", type=float, default=0.0, help="seconds (0: until SIGTERM)")
        sp.add_argument("--verbose", action="store_true")
        if name == "tunnel":
            sp.add_argument("--listen-port", type=int, required=True,
                            help="port opened on the server's loopback")
            sp.add_argument("--dest", default="127.0.0.1:22", help="HOST:PORT reached on this side")
        else:
            sp.add_argument("--seed", type=int, default=0)
            sp.add_argument("--gap-mean", type=float, default=20.0)
            sp.add_argument("--per-connection", type=int, default=0,
                            help="commands per connection (0: all on one)")
            sp.add_argument("--tasks", choices=("facts", "slow"), default="facts",
                            help="facts: quick commands; slow: tasks that work seconds before they "
                                 "answer, each sent a 10-60 kB module first")
    return p


def main(argv: list[str] | None = None) -> int:
    # cryptography 51 warns on stderr, at asyncssh's import, that DSA is deprecated: the line would
    # come before "pyssh forwarding", the first line its callers read there
    warnings.filterwarnings("ignore", message="DSA is deprecated")
    import asyncssh

    a = _parser().parse_args(argv)
    host, _, port = a.connect.rpartition(":")
    target = Target(host, int(port), a.key, a.bind, keepalive=a.keepalive)

    def ready() -> None:
        print(f"pyssh forwarding {a.listen_port}", file=sys.stderr, flush=True)

    async def run() -> dict[str, Any]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if a.command == "tunnel":
            dest_host, _, dest_port = a.dest.rpartition(":")
            return await tunnel(TunnelConfig(target, a.listen_port, dest_host, int(dest_port),
                                             a.duration), stop, ready if a.verbose else None)
        slow = a.tasks == "slow"
        return await automation(ExecConfig(target, a.duration, a.seed, a.gap_mean, a.per_connection,
                                           SLOW_TASKS if slow else AUTOMATION_COMMANDS,
                                           (10_000, 60_000) if slow else (0, 0)), stop)

    try:
        stats = asyncio.run(run())
    except (OSError, asyncssh.Error) as exc:
        print(f"pyssh {a.command}: {exc}", file=sys.stderr)
        return 1
    if a.verbose:
        print(f"pyssh STATS {json.dumps(stats)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
