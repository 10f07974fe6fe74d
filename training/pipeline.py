"""Score flowguard's verdicts on lab runs as its users get them, not only the model's: offline
triage (`flowguard triage`) and the live pipeline (`flowguard watch`, the capture replayed as
live windows), each with reverse-tunnel verdicts held until their connection behaves as a tunnel
(the default) and eager (`--eager-tunnels`, with the thresholds the model chose for it where it
has them).

    python -m training.pipeline --model models/2026.12.07.1 training/data/held/a1 training/data/held/b1

For each kind of session (its scenario; SSH automation also by client, commands a connection and
slow tasks)
it counts the sessions flagged: malicious ones as their class, benign ones as anything. For reverse
tunnels used from outside, `live_in_time` counts those flagged live within train.DETECT_TARGET_S of
their first use by the lab's schedule (a verdict's time: its window's last packet).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flowguard.capture import read_flows
from flowguard.live import LivePipeline, LiveSource
from flowguard.model import FlowClassifier
from flowguard.triage import FileDone, FlowVerdict, triage
from training import train
from training.lab.scenarios import first_use_s

MODES = ("eager", "held")


def kind(session: dict[str, Any]) -> str:
    """A session's kind: its scenario, and for SSH automation its client and commands a connection
    ("mux" for OpenSSH's persisting master connection)."""
    scenario = str(session["scenario"])
    p = session.get("params", {})
    if scenario.startswith("ssh-automation"):
        per = "mux" if p.get("mux") else p.get("per_connection")
        return f"{scenario}/{per}" + ("/slow" if p.get("tasks") == "slow" else "")
    return scenario


def replay(path: Path) -> Any:
    """A LivePipeline `read` that yields the windows of a capture file, as live capture cuts them."""
    def read(interface: str, options: Any, *rest: Any) -> Iterator[Any]:
        yield from read_flows(path, options)
    return read


def offline_verdicts(capture: Path, classifier: FlowClassifier, eager: bool) -> list[FlowVerdict]:
    out: list[FlowVerdict] = []
    for event in triage([capture], classifier, eager_tunnels=eager):
        if isinstance(event, FileDone):
            if event.error:
                raise RuntimeError(f"{capture}: {event.error}")
        else:
            out += event
    return out


def live_verdicts(capture: Path, classifier: FlowClassifier, eager: bool) -> list[FlowVerdict]:
    out: list[FlowVerdict] = []
    pipeline = LivePipeline(LiveSource("replay"), classifier, sinks=[out.extend],
                            read=replay(capture), eager_tunnels=eager)
    pipeline.start()
    pipeline.wait()
    pipeline.stop()
    if pipeline.error is not None:
        raise RuntimeError(str(pipeline.error))
    return out


def score(model_dir: Path, runs: list[Path]) -> dict[str, Any]:
    """{label: {kind: {"sessions": n, "offline_eager": k, ..., "live_in_time_held": k}}}."""
    classifiers = {(view, mode): FlowClassifier.load(model_dir, live=view == "live",
                                                     eager_tunnels=mode == "eager")
                   for view in ("offline", "live") for mode in MODES}
    out: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    for run in runs:
        labels = json.loads((run / "labels.json").read_text())
        sessions = {str(s["id"]): s for s in labels["sessions"]}
        index = {(c["client_ip"], c["server_ip"], int(c["server_port"])): str(c["session"])
                 for c in labels["conversations"]}
        capture = run / labels["capture"]
        first: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)  # (view, mode): session -> ms
        begin: dict[str, int] = {}  # a session's first packet (its client connects)
        for mode in MODES:
            eager = mode == "eager"
            for view, verdicts in (
                    ("offline", offline_verdicts(capture, classifiers[("offline", mode)], eager)),
                    ("live", live_verdicts(capture, classifiers[("live", mode)], eager))):
                for v in verdicts:
                    sid = (index.get((v.src_ip, v.dst_ip, v.dst_port))
                           or index.get((v.dst_ip, v.src_ip, v.src_port)))
                    if sid is None:
                        continue
                    begin[sid] = min(begin.get(sid, v.first_seen_ms), v.first_seen_ms)
                    if v.verdict == "benign":
                        continue
                    label = sessions[sid]["label"]
                    if label == "benign" or v.verdict == label:
                        seen = first[(view, mode)]
                        seen[sid] = min(seen.get(sid, v.last_seen_ms), v.last_seen_ms)
        for sid, s in sessions.items():
            c = out[s["label"]][kind(s)]
            c["sessions"] += 1
            for view in ("offline", "live"):
                for mode in MODES:
                    c[f"{view}_{mode}"] += sid in first[(view, mode)]
            use = first_use_s(s)
            used = s["label"] == "reverse_tunnel" and any(
                step != "idle" for step, _ in s.get("params", {}).get("uses", [["use", 0]]))
            if use is None or not used:
                continue
            c["used"] += 1
            limit = begin.get(sid, 0) + (use + train.DETECT_TARGET_S["reverse_tunnel"]) * 1000
            for mode in MODES:
                t = first[("live", mode)].get(sid)
                c[f"live_in_time_{mode}"] += t is not None and t <= limit
    return {label: {k: dict(v) for k, v in sorted(kinds.items())} for label, kinds in sorted(out.items())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.pipeline", description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="model directory (models/<version>)")
    ap.add_argument("runs", type=Path, nargs="+", help="lab run directories (capture.pcap, labels.json)")
    a = ap.parse_args(argv)
    missing = [str(r) for r in a.runs if not (r / "labels.json").is_file()]
    if missing:
        print(f"pipeline: not lab runs (no labels.json): {', '.join(missing)}", file=sys.stderr)
        return 2
    print(json.dumps(score(a.model, a.runs), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
