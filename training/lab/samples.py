"""Make the sample captures in pcaps/: one lab run of the `samples` plan, cut into one file per session.

    python -m training.lab.samples --out pcaps --duration 150

Each sample keeps only its own conversation (tcpdump read filter on the client and server address and
the server port) and gets a `<name>.labels.json` beside it with the session and its label.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from training.lab.run import run_lab


def split(run_dir: Path, out: Path) -> list[Path]:
    """One capture per sample name: the conversations of its sessions (usually one)."""
    labels = json.loads((run_dir / "labels.json").read_text())
    sessions = {s["id"]: s for s in labels["sessions"]}
    by_sample: dict[str, list[dict]] = {}
    for conv in labels["conversations"]:
        by_sample.setdefault(sessions[conv["session"]]["params"]["sample"], []).append(conv)
    written = []
    for name, convs in by_sample.items():
        target = out / f"{name}.pcap"
        flt = " or ".join(f"(host {c['client_ip']} and host {c['server_ip']} and tcp port {c['server_port']})"
                          for c in convs)
        subprocess.run(["tcpdump", "-r", str(run_dir / "capture.pcap"), "-w", str(target), flt],
                       check=True, capture_output=True)
        labels_of = sorted({c["label"] for c in convs})
        meta = {"label": labels_of[0] if len(labels_of) == 1 else labels_of,
                "sessions": [sessions[c["session"]] for c in convs],
                "conversations": convs, "network": labels["network"], "seed": labels["seed"]}
        (out / f"{name}.labels.json").write_text(json.dumps(meta, indent=1) + "\n")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.lab.samples", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("pcaps"))
    ap.add_argument("--duration", type=float, default=150.0)
    ap.add_argument("--delay", type=float, default=25.0)
    ap.add_argument("--seed", type=int, default=2026)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "sample"
        run_lab(run_dir, "samples", a.duration, a.delay, 3.0, 0.0, a.seed, net=88)
        a.out.mkdir(parents=True, exist_ok=True)
        for path in split(run_dir, a.out):
            print(f"{path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
