"""Scaling of offline triage: several files in parallel processes, and nfstream's meters.

    python -m benchmarks.scaling [--chunks 4] [--packets 250000]

Offline, nfstream reads one file with one meter whatever n_meters says, so the speed-up comes from
reading several files (or chunks of one) at once: here 1, 2, ... `flowguard triage` processes at a
time over the same chunks. Live capture scales with meters instead (AF_PACKET fanout).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from benchmarks.build_mixed import build
from benchmarks.common import REPO, report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("--packets", type=int, default=250_000)
    a = ap.parse_args(argv)
    data = REPO / "benchmarks" / "data"
    chunks = []
    for i in range(a.chunks):
        path = data / f"chunk{i}.pcap"
        if not path.exists():
            build(path, a.packets)
        chunks.append(path)
    rows = []
    base = None
    for parallel in sorted({1, 2, os.cpu_count() or 1}):
        start = time.perf_counter()
        pending = list(chunks)
        running: list[subprocess.Popen[bytes]] = []
        while pending or running:
            while pending and len(running) < parallel:
                running.append(subprocess.Popen(
                    [sys.executable, "-m", "flowguard", "triage", "-f", "jsonl", "-o", os.devnull,
                     "--no-progress", str(pending.pop())]))
            running[0].wait()
            running = [p for p in running if p.poll() is None]
        elapsed = time.perf_counter() - start
        pps = a.chunks * a.packets / elapsed
        base = base or pps
        rows.append((f"{parallel} process(es), {a.chunks} files",
                     f"{pps:,.0f} packets/s ({pps / base:.2f}x)"))
    report("Offline scaling: files in parallel", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
