"""Score a model on lab runs it was not trained on, by each session's variant (TLS stack, miner,
SSH client) or scenario.

    python -m training.heldout --model models/2026.12.07.1 training/data/held/h1 training/data/held/h2

Runs made with `training.lab.run --tls12-share`, `--go-tls-share`, `--xmrig-share` or
`--asyncssh-share` (or the `automation` plan) record each session's variant in labels.json
(`tls_max`, `tls_relay`, `miner`, `tool`/`client`). For each class and variant this
reports how many sessions the model flags (malicious: as their class; benign: as anything) in the
whole capture, in the first 20 packets of each connection and in live windows, with the model's own
thresholds: the measure behind the TLS 1.2, Go TLS and XMRig figures of the model card's known
limits. `live_in_time` counts the malicious sessions flagged live within the issue's targets
(train.DETECT_TARGET_S: mining within 5 s of its connection's first packet, a tunnel within 30 s of
its first use by the lab's schedule).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from flowguard.capture import CaptureOptions
from flowguard.model import CLASSES, FlowClassifier
from training import train
from training.dataset import LIVE_VIEWS, Table, build
from training.evaluate import model_thresholds

VIEWS = {"full": ("full",), "first_20_packets": ("pkt20",), "live_windows": tuple(LIVE_VIEWS)}


def variant(params: dict[str, Any]) -> str:
    """A session's variant: "xmrig" (a real miner, not our emulator), "asyncssh" (AsyncSSH's
    client, not OpenSSH's or Dropbear's), "go", "tls1.2", joined by "+" where several hold
    ("go+tls1.2"), or "default" (the lab's usual programs and TLS stacks, cleartext sessions
    included)."""
    parts = ["xmrig" if params.get("miner") == "xmrig" else "",
             "asyncssh" if "asyncssh" in (params.get("tool"), params.get("client")) else "",
             "go" if params.get("tls_relay") == "go" else "",
             "tls1.2" if params.get("tls_max") == "1.2" else ""]
    return "+".join(p for p in parts if p) or "default"


def predictions(model_dir: Path, table: Table) -> np.ndarray:
    """Each row's verdict by the model's booster for its kind, with the model's thresholds."""
    proba = np.zeros((len(table.y), len(CLASSES)))
    for kind in train.KINDS:
        rows = train.scored_on(table, kind)
        proba[rows] = FlowClassifier.load(model_dir, live=kind == "live").predict_proba(table.X[rows])
    return train.decide_all(proba, model_thresholds(model_dir), table)


def score(model_dir: Path, runs: list[Path], options: CaptureOptions | None = None,
          by: str = "variant") -> dict[str, Any]:
    """{class: {variant: {view: {"sessions": n, "flagged": k}}}} over the runs' sessions; `by`
    "scenario": by each session's scenario instead of its variant."""
    table = build(runs, None, options or CaptureOptions())
    pred = predictions(model_dir, table)
    variants = {s["id"]: variant(s.get("params", {})) if by == "variant" else s["scenario"]
                for run in runs
                for s in json.loads((run / "labels.json").read_text())["sessions"]}
    groups, views = np.array(table.groups), np.array(table.views)
    out: dict[str, Any] = {}
    for view, names in VIEWS.items():
        in_view = np.isin(views, names)
        counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for sid in np.unique(groups[in_view]):
            rows = in_view & (groups == sid)
            cls = int(table.y[rows].max())
            flagged = (pred[rows] == cls).any() if cls else (pred[rows] != 0).any()
            c = counts[(CLASSES[cls], variants.get(str(sid), "default"))]
            c[0] += 1
            c[1] += int(flagged)
        for (cls_name, var), (n, k) in sorted(counts.items()):
            out.setdefault(cls_name, {}).setdefault(var, {})[view] = {"sessions": n, "flagged": k}
    live = np.isin(views, VIEWS["live_windows"])
    first_use = table.summary.get("first_use_s")
    first_use = first_use if isinstance(first_use, dict) else {}
    for cls_name in CLASSES[1:]:
        in_time: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for sid, t in train.first_flagged_s(table.subset(live), pred[live], cls_name).items():
            c = in_time[variants.get(sid, "default")]
            c[0] += 1  # a tunnel from its first use, by the lab's schedule
            c[1] += int(t - first_use.get(sid, 0.0) <= train.DETECT_TARGET_S[cls_name])
        for var, (n, k) in sorted(in_time.items()):
            out[cls_name][var]["live_in_time"] = {"sessions": n, "flagged": k}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.heldout", description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="model directory (models/<version>)")
    ap.add_argument("runs", type=Path, nargs="+", help="lab run directories (capture.pcap, labels.json)")
    ap.add_argument("--by", choices=("variant", "scenario"), default="variant",
                    help="count sessions by variant (TLS stack, miner, SSH client) or by scenario")
    a = ap.parse_args(argv)
    missing = [str(r) for r in a.runs if not (r / "labels.json").is_file()]
    if missing:
        print(f"heldout: not lab runs (no labels.json): {', '.join(missing)}", file=sys.stderr)
        return 2
    print(json.dumps(score(a.model, a.runs, by=a.by), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
