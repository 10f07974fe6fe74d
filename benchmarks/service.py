"""The verdict service under loopback load (wrk): the block list and verdict ingest.

    python -m benchmarks.service [--decisions 10000] [--seconds 10] [--connections 32]

A real `flowguard serve` (one uvicorn worker) on 127.0.0.1 with a fresh database holding
--decisions active decisions; wrk (Debian package) sends the load from a second process.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.common import report

KEY = "benchmark-key-0123456789abcdef"


def verdict(i: int, flow: int = 0) -> dict[str, object]:
    return {
        "pcap": "bench", "src_ip": "10.0.0.5", "src_port": 40000 + flow % 20000,
        "dst_ip": f"198.{18 + (i >> 16)}.{(i >> 8) & 0xFF}.{i & 0xFF}",  # benchmark range
        "dst_port": 3333, "protocol": 6, "first_seen_ms": 1_700_000_000_000 + flow,
        "last_seen_ms": 1_700_000_060_000 + flow, "packets": 40, "bytes": 4000,
        "application_name": "TLS", "verdict": "stratum_mining", "score": 0.999,
        "scores": {"benign": 0.001, "stratum_mining": 0.999, "reverse_tunnel": 0.0},
        "model": "bench", "reasons": [],
    }


def wrk(url: str, seconds: int, connections: int, script: Path | None = None) -> tuple[float, float]:
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script:
        argv[1:1] = ["-s", str(script)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)] if m else float("nan")
    return rps, p99


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decisions", type=int, default=10_000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    a = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        print("benchmarks.service needs wrk (apt-get install wrk)", file=sys.stderr)
        return 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "FLOWGUARD_DATA_DIR": tmp, "FLOWGUARD_API_KEYS": KEY,
               "FLOWGUARD_MAX_NEW_BLOCKS_PER_MINUTE": str(a.decisions * 2), "FLOWGUARD_LOG_LEVEL": "warning"}
        server = subprocess.Popen([sys.executable, "-m", "flowguard", "serve", "--port", str(port)], env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    if httpx.get(f"{base}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            with httpx.Client(base_url=base, headers={"X-Api-Key": KEY}, timeout=120) as client:
                for start in range(0, a.decisions, 1000):
                    batch = [verdict(i, i) for i in range(start, min(start + 1000, a.decisions))]
                    client.post("/v1/verdicts", json=batch).raise_for_status()
                text = client.get("/v1/blocklist.txt").text
                active = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
            blk_rps, blk_p99 = wrk(f"{base}/v1/blocklist.txt", a.seconds, a.connections)
            bare_rps, bare_p99 = wrk(f"{base}/v1/blocklist.txt?comments=false", a.seconds, a.connections)
            size = len(text.encode())
            body = json.dumps([verdict(i % 50, 10**6 + i) for i in range(10)])
            script = Path(tmp) / "post.lua"
            script.write_text(
                'wrk.method = "POST"\n'
                f"wrk.body = {json.dumps(body)}\n"
                f'wrk.headers["Content-Type"] = "application/json"\nwrk.headers["X-Api-Key"] = "{KEY}"\n'
            )
            post_rps, post_p99 = wrk(f"{base}/v1/verdicts", a.seconds, a.connections, script)
        finally:
            server.terminate()
            server.wait(10)
    report("Verdict service under loopback load", [
        ("active decisions", f"{active:,}"),
        ("GET /v1/blocklist.txt", f"{blk_rps:,.0f} requests/s, p99 {blk_p99:.1f} ms "
                                  f"({size / 1e6:.2f} MB a response; {a.connections} connections; "
                                  "target >= 2k/s, p99 < 50 ms)"),
        ("GET /v1/blocklist.txt?comments=false", f"{bare_rps:,.0f} requests/s, p99 {bare_p99:.1f} ms"),
        ("POST /v1/verdicts (10 verdicts each)",
         f"{post_rps:,.0f} requests/s ({post_rps * 10:,.0f} verdicts/s), p99 {post_p99:.1f} ms"),
    ], notes="One uvicorn worker; wrk with 2 threads on the same 2-core machine.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
