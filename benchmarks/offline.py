"""Offline triage against raw nfstream on the same file, in the same run, alternated.

    python -m benchmarks.offline [--file benchmarks/data/mixed.pcap] [--rounds 3]

(a) plain nfstream iteration with the options triage uses, (b) `flowguard triage --format jsonl`
to a file (a fresh process: imports, model load, classification, output included). Also the peak
memory of both, and of triage over a synthetic capture holding 100k concurrent flows.
"""

from __future__ import annotations

import argparse
import statistics
import struct
import subprocess
import sys
from pathlib import Path

from benchmarks.common import REPO, report, run_measured
from flowguard.pcapfile import inspect_capture

RAW = """
import sys
from flowguard.capture import CaptureOptions, read_flows
n = sum(1 for _ in read_flows(sys.argv[1], CaptureOptions()))
print(n)
"""


def concurrent_flows_pcap(path: Path, flows: int) -> None:
    """A capture in which `flows` TCP connections are all open at once: each sends a SYN in the
    first second and a data packet later, so none ends before all have begun."""
    eth = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"

    def frame(i: int, payload: bytes) -> bytes:
        src = bytes([10, 1 + (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF])
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0, 64, 6, 0, src,
                         bytes([192, 0, 2, 1]))
        tcp = struct.pack("!HHIIBBHHH", 20000 + i % 40000, 443, 1, 0, 0x50, 0x18, 65535, 0, 0)
        return eth + ip + tcp + payload

    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for rnd, payload in ((0, b""), (1, b"x" * 100)):
            for i in range(flows):
                t = 1_700_000_000 + rnd * 30 + i / flows
                data = frame(i, payload)
                fh.write(struct.pack("<IIII", int(t), int(t % 1 * 1e6), len(data), len(data)) + data)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", type=Path, default=REPO / "benchmarks" / "data" / "mixed.pcap")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrent", type=int, default=100_000)
    a = ap.parse_args(argv)
    if not a.file.exists():
        subprocess.run([sys.executable, "-m", "benchmarks.build_mixed", "--out", str(a.file)], check=True)
    packets = inspect_capture(a.file).packets
    out = REPO / "benchmarks" / "data" / "triage.jsonl"
    tiny = REPO / "pcaps" / "https-curl-443.pcap"

    def raw(path: Path) -> tuple[float, int]:
        return run_measured([sys.executable, "-c", RAW, str(path)], stdout=subprocess.DEVNULL)

    def tri(path: Path, dst: Path) -> tuple[float, int]:
        return run_measured([sys.executable, "-m", "flowguard", "triage", "-f", "jsonl", "-o", str(dst),
                             "--no-progress", str(path)])

    raw_t, tri_t, raw_mem, tri_mem, raw0, tri0 = [], [], 0, 0, [], []
    for _ in range(a.rounds):
        t, m = raw(a.file)
        raw_t.append(t)
        raw_mem = max(raw_mem, m)
        t, m = tri(a.file, out)
        tri_t.append(t)
        tri_mem = max(tri_mem, m)
        raw0.append(raw(tiny)[0])  # the fixed cost of each: start, imports (and model load)
        tri0.append(tri(tiny, Path("/dev/null"))[0])
    flows = sum(1 for _ in out.open())
    raw_s, tri_s = statistics.median(raw_t), statistics.median(tri_t)
    raw_start, tri_start = statistics.median(raw0), statistics.median(tri0)
    synthetic = REPO / "benchmarks" / "data" / "concurrent.pcap"
    concurrent_flows_pcap(synthetic, a.concurrent)
    conc_t, conc_mem = run_measured([sys.executable, "-m", "flowguard", "triage", "-f", "jsonl", "-o",
                                     "/dev/null", "--no-progress", str(synthetic)])
    report("Offline triage vs raw nfstream", [
        ("file", f"{a.file.name}: {packets:,} packets, {flows:,} flows"),
        (f"raw nfstream (median of {a.rounds})", f"{raw_s:.2f} s, {packets / raw_s:,.0f} packets/s, "
                                                   f"{flows / raw_s:,.0f} flows/s"),
        ("flowguard triage --format jsonl", f"{tri_s:.2f} s, {packets / tri_s:,.0f} packets/s, "
                                            f"{flows / tri_s:,.0f} flows/s"),
        ("triage / raw packets/s", f"{raw_s / tri_s:.2f}x (target >= 0.9x)"),
        ("fixed cost (a 95-packet capture)", f"raw {raw_start:.2f} s, triage {tri_start:.2f} s "
                                             "(typer, rich and the model before the meter starts; exit)"),
        ("triage / raw, fixed costs taken out", f"{(raw_s - raw_start) / (tri_s - tri_start):.2f}x"),
        ("peak RSS (process tree)", f"raw {raw_mem} MiB, triage {tri_mem} MiB"),
        (f"{a.concurrent:,} concurrent flows", f"triage {conc_t:.1f} s, peak RSS {conc_mem} MiB"),
    ], notes="Each triage run is a new process: interpreter start, imports, model load and output "
             "are included. nfstream reads one file with one meter whatever n_meters says.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
