"""Build a large mixed capture for the benchmarks (never committed: it lands in benchmarks/data/).

    python -m benchmarks.build_mixed --packets 1000000

It concatenates, one after another in time, the Ethernet pcaps of pcaps/, the lab runs under
training/data/ and (when present) ../shared/corpus/ndpi-benign/, until it holds --packets packets.
"""

from __future__ import annotations

import argparse
import mmap
import struct
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "data" / "mixed.pcap"
SOURCES = (REPO.parent / "shared" / "corpus" / "ndpi-benign", REPO / "pcaps", REPO / "training" / "data")


def sources() -> list[Path]:
    found = []
    for root in SOURCES:
        if root.is_dir():
            found += sorted(p for p in root.rglob("*.pcap") if p.is_file())
    return found


def build(out: Path, limit: int) -> tuple[int, int]:
    """Write up to `limit` packets; returns (packets, files used). Little-endian microsecond
    Ethernet pcaps only; others are skipped."""
    out.parent.mkdir(parents=True, exist_ok=True)
    rec = struct.Struct("<IIII")
    written, used, clock = 0, 0, 1_700_000_000.0
    with out.open("wb") as dst:
        dst.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for path in sources():
            if written >= limit:
                break
            with path.open("rb") as fh:
                if path.stat().st_size < 40:
                    continue
                buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
                head = struct.unpack_from("<IHHiIII", buf, 0)
                if head[0] != 0xA1B2C3D4 or head[6] != 1:
                    continue
                used += 1
                offset, first = 24, None
                last = clock
                while offset + 16 <= len(buf) and written < limit:
                    sec, usec, incl, orig = rec.unpack_from(buf, offset)
                    if offset + 16 + incl > len(buf):
                        break
                    t = sec + usec / 1e6
                    first = t if first is None else first
                    last = max(last, clock + min(max(t - first, 0.0), 86400.0))  # keep time moving forward
                    dst.write(rec.pack(int(last), int((last % 1) * 1e6), incl, orig))
                    dst.write(buf[offset + 16 : offset + 16 + incl])
                    offset += 16 + incl
                    written += 1
                clock = last + 1.0
    return written, used


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    packets, files = build(a.out, a.packets)
    print(f"{a.out}: {packets} packets from {files} captures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
