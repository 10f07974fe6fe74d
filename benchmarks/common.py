"""Shared helpers of the benchmarks: timing, peak memory of a process tree, the report table."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "BENCHMARKS.md"


def tree_pids(pid: int) -> list[int]:
    """A process and all its descendants, whichever of its threads forked them (nfstream forks its
    meter from the thread that iterates, which /proc/PID/task/PID/children alone does not show)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return found


def rss_kib(pid: int) -> int:
    """Resident memory of one process, KiB; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def tree_rss_kib(pid: int) -> int:
    """Resident memory of a process and all its descendants, KiB (Linux /proc)."""
    return sum(rss_kib(p) for p in tree_pids(pid))


def run_measured(argv: list[str], **kw: object) -> tuple[float, int]:
    """Run a command; (wall seconds, peak RSS of its process tree in MiB, sampled every 20 ms)."""
    peak = 0
    start = time.perf_counter()
    proc = subprocess.Popen(argv, **kw)  # type: ignore[call-overload]
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_kib(proc.pid))
            time.sleep(0.02)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    proc.wait()
    elapsed = time.perf_counter() - start
    done.set()
    t.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:3]}... exited {proc.returncode}")
    return elapsed, peak // 1024


def machine() -> str:
    import lightgbm
    import nfstream

    cpu = "unknown cpu"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import version

    return (f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
            f"nfstream {nfstream.__version__}, LightGBM {lightgbm.__version__}, "
            f"lleaves {version('lleaves')} (llvmlite {version('llvmlite')})")


def report(title: str, rows: list[tuple[str, str]], notes: str = "") -> str:
    """Print a table and append it to BENCHMARKS.md with machine, versions and date."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"## {title}", "", f"{stamp}; {machine()}", "", "| measure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    if notes:
        lines += ["", notes]
    text = "\n".join(lines) + "\n"
    print(text)
    if not REPORT.exists():
        REPORT.write_text("# Benchmarks\n\nAppended by the scripts in benchmarks/ "
                          "(see benchmarks/README.md).\n\n")
    with REPORT.open("a") as fh:
        fh.write(text + "\n")
    return text
