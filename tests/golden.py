"""Golden verdicts of the sample captures: `python -m tests.golden` rewrites tests/golden/*.csv.

Review a regenerated golden file as a diff: a changed verdict is a changed behaviour.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from flowguard.model import FlowClassifier, default_model_dir
from flowguard.triage import FileDone, triage

GOLDEN = Path(__file__).resolve().parent / "golden"
PCAPS = Path(__file__).resolve().parents[1] / "pcaps"
COLUMNS = ("src_ip", "src_port", "dst_ip", "dst_port", "protocol", "first_seen_ms", "packets",
           "verdict", "score")


def verdict_rows(pcap: Path, classifier: FlowClassifier) -> list[dict[str, str]]:
    rows = []
    for event in triage([pcap], classifier):
        if isinstance(event, FileDone):
            if event.error:
                raise RuntimeError(f"{pcap}: {event.error}")
            continue
        for v in event:
            d = v.to_dict()
            d["score"] = f"{v.score:.3f}"
            rows.append({c: str(d[c]) for c in COLUMNS})
    return sorted(rows, key=lambda r: (int(r["first_seen_ms"]), r["src_ip"], int(r["src_port"])))


def main() -> int:
    classifier = FlowClassifier.load(default_model_dir())
    GOLDEN.mkdir(exist_ok=True)
    for pcap in sorted(PCAPS.glob("*.pcap")):
        with (GOLDEN / f"{pcap.stem}.csv").open("w", newline="") as fh:
            w = csv.DictWriter(fh, COLUMNS, lineterminator="\n")
            w.writeheader()
            w.writerows(verdict_rows(pcap, classifier))
        print(GOLDEN / f"{pcap.stem}.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
