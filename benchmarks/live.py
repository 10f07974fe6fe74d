"""Live capture under replayed traffic: kernel drops, verdict latency, CPU and memory per packet rate.

    python -m benchmarks.live [--rates 10000,25000,50000,75000,100000] [--seconds 20]
                              [--pcap benchmarks/data/mixed.pcap] [--concurrent 100000]
                              [--concurrent-pps 50000] [--model DIR]

Needs root, `ip` (iproute2) and tcpreplay. Two network namespaces of its own are joined by a veth pair
(both ends `veth0`; no addresses, so no IP traffic leaves them). For each rate a fresh
`flowguard watch` captures in namespace b while tcpreplay sends the mixed capture (built by
`python -m benchmarks.build_mixed --packets 1000000`) from namespace a at that rate for --seconds.
The watch process tree (with nfstream's forked meter) is sampled every 0.2 s for CPU and peak RSS;
its Prometheus metrics are scraped 3 s after the replay; its final line after SIGTERM gives the
packet and kernel drop counts. Last, --concurrent distinct TCP flows, all open at once, are replayed
at --concurrent-pps into a watch with 180 s windows, for the memory it takes to hold them.
The namespaces and everything running in them are removed at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import REPO, report, rss_kib, tree_pids
from benchmarks.offline import concurrent_flows_pcap
from flowguard.model import FlowClassifier, default_model_dir
from flowguard.pcapfile import inspect_capture

METRICS_PORT = 9108
SAMPLE_S = 0.2
SETTLE_S = 3.0
"""Wait after the replay before scraping: the live windows are 5 s active, 2 s idle."""
CONCURRENT_PPS = 50_000
LOST = " (capture did not end within 10 s of stop: flows still open were not classified)"
STOPPED = re.compile(r"capture stopped: (\d+) flows, (\d+) verdicts, (\d+) packets, (\d+) kernel drops")
SCRAPE = ("import urllib.request; "
          f"print(urllib.request.urlopen('http://127.0.0.1:{METRICS_PORT}/metrics', timeout=10)"
          ".read().decode())")


def sh(*argv: str) -> str:
    """Run a command, fail loudly, return its stdout."""
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def missing_requirements() -> str | None:
    """Why this benchmark cannot run here, or None."""
    if os.geteuid() != 0:
        return "benchmarks.live needs root (network namespaces, veth, raw capture)"
    for tool, package in (("ip", "iproute2"), ("tcpreplay", "tcpreplay")):
        if shutil.which(tool) is None:
            return f"benchmarks.live needs {tool} (apt-get install {package})"
    return None


# --- namespaces --------------------------------------------------------------------------------


@contextmanager
def veth_pair() -> Iterator[tuple[str, str]]:
    """Two fresh namespaces (sender, receiver) joined by a veth pair named veth0 at both ends, up,
    without addresses or IPv6; on exit every process left in them is killed and they are deleted."""
    names = (f"fglive{os.getpid()}-a", f"fglive{os.getpid()}-b")
    try:
        for ns in names:
            sh("ip", "netns", "add", ns)
            sh("ip", "netns", "exec", ns, "sh", "-c",
               "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; "
               "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6")
        sh("ip", "link", "add", "veth0", "netns", names[0], "type", "veth",
           "peer", "name", "veth0", "netns", names[1])
        for ns in names:
            # some captured frames are larger than 1500 bytes (offloaded segments): let them through
            sh("ip", "-n", ns, "link", "set", "veth0", "mtu", "65535", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")  # the metrics endpoint listens on 127.0.0.1
        yield names
    finally:
        for ns in names:
            remove_namespace(ns)


def remove_namespace(ns: str) -> None:
    """Kill what still runs in a namespace of ours, then delete it (and so its end of the veth)."""
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)


# --- the watch process tree ----------------------------------------------------------------------


def cpu_ticks(pid: int) -> int:
    """utime + stime of one process (all its threads), clock ticks; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0
    return int(fields[11]) + int(fields[12])


class TreeSampler:
    """Samples a process tree every SAMPLE_S: CPU ticks per process (the last seen value is kept for
    processes that end) and the peak of the tree's summed RSS."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.ticks: dict[int, int] = {}
        self.peak_kib = 0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def sample(self) -> None:
        pids = tree_pids(self.pid)
        rss = sum(rss_kib(p) for p in pids)
        with self._lock:
            for p in pids:
                self.ticks[p] = max(self.ticks.get(p, 0), cpu_ticks(p))
            self.peak_kib = max(self.peak_kib, rss)

    def _run(self) -> None:
        while not self._done.is_set():
            self.sample()
            self._done.wait(SAMPLE_S)

    def cpu_seconds(self) -> float:
        """CPU time of the tree so far (sampled now)."""
        self.sample()
        with self._lock:
            return sum(self.ticks.values()) / os.sysconf("SC_CLK_TCK")


@dataclass
class Watch:
    """`flowguard watch` running in a namespace, its stderr collected by a thread."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    capturing: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def start(cls, ns: str, output: Path, extra: list[str]) -> Watch:
        # `ip netns exec` enters the namespace and execs: the Popen pid is flowguard's python
        argv = ["ip", "netns", "exec", ns, sys.executable, "-m", "flowguard", "watch", "--interface", "veth0",
                "--format", "jsonl", "--output", str(output), "--metrics-port", str(METRICS_PORT), *extra]
        proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        watch = cls(proc)
        threading.Thread(target=watch._read_stderr, daemon=True).start()
        return watch

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if "capturing on" in line:
                self.capturing.set()

    def failure(self, what: str) -> RuntimeError:
        tail = "\n".join(self.lines[-10:])
        return RuntimeError(f"flowguard watch {what} (exit {self.proc.poll()}):\n{tail}")

    def wait_capturing(self, timeout: float = 60.0) -> None:
        """Until the meter has its packet socket open on veth0 (plus a second to settle)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise self.failure("ended before capturing")
            if self.capturing.is_set() and any(packet_sockets(p) for p in tree_pids(self.proc.pid)[1:]):
                time.sleep(1.0)
                return
            time.sleep(0.1)
        raise self.failure(f"was not capturing after {timeout:.0f} s")

    @property
    def flush_lost(self) -> bool:
        """The watch gave up waiting for the capture to end at stop: flows still open were lost."""
        return any("did not end within" in line for line in self.lines)

    def stop(self, timeout: float = 120.0) -> tuple[int, int, int, int]:
        """SIGTERM, wait for a clean exit; (flows, verdicts, packets, kernel drops) from its last line."""
        if "flowguard" not in Path(f"/proc/{self.proc.pid}/cmdline").read_text():
            raise self.failure("pid is not flowguard's")
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise self.failure(f"did not stop within {timeout:.0f} s of SIGTERM") from None
        time.sleep(0.2)  # the stderr thread reads the last lines
        if self.proc.returncode != 0:
            raise self.failure("exited with an error")
        for line in reversed(self.lines):
            m = STOPPED.search(line)
            if m:
                return int(m[1]), int(m[2]), int(m[3]), int(m[4])
        raise self.failure("printed no final line")


def packet_sockets(pid: int) -> int:
    """Packet sockets open in the network namespace of `pid` (/proc/PID/net/packet, less its header)."""
    try:
        with open(f"/proc/{pid}/net/packet") as fh:
            return max(0, len(fh.readlines()) - 1)
    except (FileNotFoundError, ProcessLookupError):
        return 0


# --- tcpreplay and the metrics -------------------------------------------------------------------


@dataclass(frozen=True)
class Replay:
    """What tcpreplay reports: packets sent, seconds, achieved packets/s, failed sends; its CPU."""

    packets: int
    seconds: float
    pps: float
    failed: int
    cpu_s: float


def replay(ns: str, pcap: Path, pps: int, limit: int, file_packets: int) -> Replay:
    """Send `limit` packets of `pcap` at `pps` out of veth0 in namespace `ns`, looping the file as needed."""
    argv = ["ip", "netns", "exec", ns, "tcpreplay", "--intf1=veth0", f"--pps={pps}", f"--limit={limit}"]
    loops = math.ceil(limit / file_packets)
    if loops > 1:
        argv.append(f"--loop={loops}")
    before = os.times()
    done = subprocess.run([*argv, str(pcap)], capture_output=True, text=True)
    after = os.times()
    out = done.stdout + done.stderr
    actual = re.search(r"Actual: (\d+) packets .*? sent in ([\d.]+) seconds", out)
    rated = re.search(r"Rated: .*?([\d.]+) pps", out)
    if done.returncode != 0 or actual is None or rated is None:
        raise RuntimeError(f"tcpreplay exited {done.returncode}:\n{out[-2000:]}")
    failed = re.search(r"Failed packets:\s+(\d+)", out)
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return Replay(int(actual[1]), float(actual[2]), float(rated[1]), int(failed[1]) if failed else 0, cpu)


def scrape(ns: str) -> dict[str, float]:
    """The watch's Prometheus metrics, from inside its namespace: {'name{labels}': value}."""
    text = sh("ip", "netns", "exec", ns, sys.executable, "-c", SCRAPE)
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def quantile_bound(samples: dict[str, float], histogram: str, q: float) -> str:
    """Upper bound of the bucket holding quantile q of a Prometheus histogram, e.g. '<= 0.2 s'."""
    buckets = sorted(
        (float(m[1]), count) for name, count in samples.items()
        if (m := re.fullmatch(rf'{histogram}_bucket\{{le="([^"]+)"\}}', name))
    )
    total = buckets[-1][1] if buckets else 0.0
    if total == 0:
        return "n/a"
    bounds = [b for b, _ in buckets if b != math.inf]
    for bound, cumulative in buckets:
        if cumulative >= q * total:
            return f"<= {bound:g} s" if bound != math.inf else f"> {bounds[-1]:g} s"
    return "n/a"


# --- one run -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """One watch run under one replay."""

    replay: Replay
    flows: int
    verdicts: int
    packets: int
    drops: int
    ignored: int
    exported_before_stop: int
    wait_p50: str
    wait_p99: str
    inference_p99: str
    cpu_pct: float
    peak_mib: int
    held_mib: int
    flush_lost: bool


def run_once(sender: str, receiver: str, pcap: Path, pps: int, limit: int, file_packets: int,
             watch_args: list[str]) -> Result:
    """A fresh `flowguard watch` in `receiver`, one replay from `sender`, scrape, SIGTERM."""
    with tempfile.TemporaryDirectory(prefix="fglive") as tmp:
        watch = Watch.start(receiver, Path(tmp) / "verdicts.jsonl", watch_args)
        try:
            with TreeSampler(watch.proc.pid) as sampler:
                watch.wait_capturing()
                cpu0, t0 = sampler.cpu_seconds(), time.monotonic()
                sent = replay(sender, pcap, pps, limit, file_packets)
                cpu_pct = 100 * (sampler.cpu_seconds() - cpu0) / (time.monotonic() - t0)
                time.sleep(SETTLE_S)
                metrics = scrape(receiver)
                held_kib = sum(rss_kib(p) for p in tree_pids(watch.proc.pid))
                flows, verdicts, packets, drops = watch.stop()
        finally:
            if watch.proc.poll() is None:
                watch.proc.kill()
                watch.proc.wait()
    return Result(
        sent, flows, verdicts, packets, drops,
        ignored=int(metrics.get("flowguard_capture_packets_ignored_total", 0)),
        exported_before_stop=int(metrics.get("flowguard_capture_flows_total", 0)),
        wait_p50=quantile_bound(metrics, "flowguard_live_flow_wait_seconds", 0.5),
        wait_p99=quantile_bound(metrics, "flowguard_live_flow_wait_seconds", 0.99),
        inference_p99=quantile_bound(metrics, "flowguard_inference_seconds", 0.99),
        cpu_pct=cpu_pct, peak_mib=sampler.peak_kib // 1024, held_mib=held_kib // 1024,
        flush_lost=watch.flush_lost,
    )


def rate_row(pps: int, r: Result) -> tuple[str, str]:
    """The table row of one rate."""
    sent = r.replay
    drop_pct = 100 * r.drops / sent.packets if sent.packets else 0.0
    failed = f", {sent.failed:,} failed sends" if sent.failed else ""
    return (f"{pps:,} packets/s asked", (
        f"sent {sent.pps:,.0f} packets/s ({sent.packets:,} in {sent.seconds:.1f} s{failed}); "
        f"meter {r.packets:,} packets (+{r.ignored:,} not IP); "
        f"kernel drops {r.drops:,} ({drop_pct:.2f}%); {r.verdicts:,} verdicts; "
        f"export to verdict p50 {r.wait_p50}, p99 {r.wait_p99}; batch inference p99 {r.inference_p99}; "
        f"CPU {r.cpu_pct:.0f}% (tcpreplay {100 * sent.cpu_s / sent.seconds:.0f}%); "
        f"peak RSS {r.peak_mib} MiB{LOST if r.flush_lost else ''}"))


def concurrent_row(flows: int, r: Result) -> tuple[str, str]:
    """The table row of the concurrent-flows run."""
    sent = r.replay
    return (f"{flows:,} concurrent flows", (
        f"{sent.packets:,} packets at {sent.pps:,.0f} packets/s; "
        f"{r.exported_before_stop:,} flows exported before stop, {r.flows:,} in all; "
        f"kernel drops {r.drops:,}; {r.verdicts:,} verdicts; RSS holding the flows {r.held_mib} MiB, "
        f"peak (with the export at stop) {r.peak_mib} MiB"
        f"{LOST if r.flush_lost else ''}"))


# --- main ----------------------------------------------------------------------------------------


def parse_rates(text: str) -> list[int]:
    """--rates: positive integers, comma-separated."""
    try:
        rates = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from exc
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError("rates must be positive")
    return rates


def measure(a: argparse.Namespace, file_packets: int) -> list[tuple[str, str]]:
    """Every rate, then the concurrent flows, in namespaces of this run; the table rows."""
    model = ["--model", str(a.model.resolve())] if a.model else []
    rows = [("replayed", f"{a.pcap.name}: {file_packets:,} packets, looped as needed; {a.seconds} s a rate")]
    with veth_pair() as (sender, receiver):
        for pps in a.rates:
            result = run_once(sender, receiver, a.pcap, pps, pps * a.seconds, file_packets, model)
            rows.append(rate_row(pps, result))
            print(f"{rows[-1][0]}: {rows[-1][1]}", file=sys.stderr)
        if a.concurrent > 0:
            with tempfile.TemporaryDirectory(prefix="fglive") as tmp:
                synthetic = Path(tmp) / "concurrent.pcap"
                concurrent_flows_pcap(synthetic, a.concurrent)
                result = run_once(sender, receiver, synthetic, a.concurrent_pps, 2 * a.concurrent,
                                  2 * a.concurrent,
                                  [*model, "--idle-timeout", "180", "--active-timeout", "180"])
            rows.append(concurrent_row(a.concurrent, result))
    return rows


def windows(model: Path | None) -> str:
    """The model's version and the live windows it is served (its live capture options)."""
    meta = FlowClassifier.load(model or default_model_dir(), live=True, lazy=True).metadata
    return f"model {meta.version}; {meta.capture.describe_windows()}"


def notes(a: argparse.Namespace, file_packets: int) -> str:
    """What the table's figures are."""
    return (
        f"tcpreplay sends {a.pcap.name} ({file_packets:,} packets) out of one end of a veth pair into "
        "`flowguard watch` on the other, each end in its own network namespace; rates are tcpreplay's "
        "achieved rates on this machine, and tcpreplay (which busy-waits between packets) runs on the "
        f"same 2 cores as flowguard. A fresh watch per rate ({windows(a.model)}); its packet "
        "and kernel drop counts come from its final line after SIGTERM, export-to-verdict latency and "
        "batch inference time (upper bound of the histogram bucket holding the quantile) from its "
        f"metrics {SETTLE_S:.0f} s after the replay. CPU: the watch process and nfstream's meter over the "
        "replay, 100% = one core. Peak RSS sums both processes, sampled every 0.2 s (pages the forked "
        "meter shares are counted twice). nfstream's capture socket has the kernel reassemble IPv4 "
        "fragments (the meter sees one packet per datagram, nothing of incomplete ones), so sent exceeds "
        "meter + not IP + drops by the fragments replayed. "
        "Concurrent flows: each a SYN then a data "
        "packet, replayed at "
        f"{a.concurrent_pps:,} packets/s into a watch with 180 s windows, so all stay open until stop."
        + (f" Model directory: {a.model}." if a.model else ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", type=parse_rates, default=[10_000, 25_000, 50_000, 75_000, 100_000],
                    help="packets/s, comma-separated")
    ap.add_argument("--seconds", type=int, default=20, help="replay time per rate")
    ap.add_argument("--pcap", type=Path, default=REPO / "benchmarks" / "data" / "mixed.pcap")
    ap.add_argument("--concurrent", type=int, default=100_000, help="flows open at once (0: skip)")
    ap.add_argument("--concurrent-pps", type=int, default=CONCURRENT_PPS,
                    help="packets/s of the concurrent-flows replay")
    ap.add_argument("--model", type=Path, default=None, help="model directory [default: bundled]")
    a = ap.parse_args(argv)
    problem = missing_requirements()
    if problem is None and not a.pcap.is_file():
        problem = (f"{a.pcap}: no such capture; build it with "
                   "`python -m benchmarks.build_mixed --packets 1000000`")
    if problem:
        print(problem, file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the namespaces are removed
    file_packets = inspect_capture(a.pcap).packets
    try:
        rows = measure(a, file_packets)
    except RuntimeError as exc:
        print(f"benchmarks.live: {exc}", file=sys.stderr)
        return 1
    report("Live capture under tcpreplay (veth)", rows, notes=notes(a, file_packets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
