"""Evaluation that tells the truth, written beside a model: evaluation.json, plots, MODEL.md.

    python -m training.evaluate --table training/data/table.npz --model models/2026.11.23

- grouped cross-validation (no session on both sides) with the model's own thresholds: per-class
  precision/recall/F1 per flow, recall per session, false positives on the real-world benign corpus
  and on the lab's look-alike sessions;
- leave-one-scenario-out: the model is retrained without a whole family (TLS mining, port 443, one
  tunnel tool, ...) and scored on it, as traffic it never saw;
- recall by how much of a flow was seen (seconds of capture, packets of the connection);
- a confusion matrix and the recall curves as PNG, and a model card (MODEL.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from flowguard.capture import CaptureOptions, live_options
from flowguard.model import CLASSES, FlowClassifier
from training import train
from training.dataset import LIVE_VIEWS, Table

Selector = Callable[[str, int], bool]  # (scenario, server port) -> held out?

HELD_OUT: dict[str, tuple[str, Selector]] = {
    "tls-mining": ("stratum_mining",
                   lambda s, p: s.startswith("mining") and ("tls" in s or "stunnel" in s)),
    "mining-port-443": ("stratum_mining", lambda s, p: s.startswith("mining") and p == 443),
    "mining-btc": ("stratum_mining", lambda s, p: s.startswith("mining-btc")),
    "mining-xmr": ("stratum_mining", lambda s, p: s.startswith("mining-xmr")),
    "mining-xmrig": ("stratum_mining", lambda s, p: s.startswith("mining-xmrig")),
    "mining-eth": ("stratum_mining", lambda s, p: s.startswith("mining-eth")),
    "mining-nat": ("stratum_mining", lambda s, p: s.startswith("mining") and s.endswith("-nat")),
    "tunnel-port-443": ("reverse_tunnel", lambda s, p: s.startswith("reverse") and p == 443),
    "tunnel-openssh": ("reverse_tunnel", lambda s, p: s == "reverse-ssh"),
    "tunnel-autossh": ("reverse_tunnel", lambda s, p: s == "reverse-autossh"),
    "tunnel-dropbear": ("reverse_tunnel", lambda s, p: s == "reverse-dbclient"),
    "tunnel-asyncssh": ("reverse_tunnel", lambda s, p: s == "reverse-asyncssh"),
    "tunnel-socks": ("reverse_tunnel", lambda s, p: s == "reverse-socks"),
    "tunnel-ssh-in-tls": ("reverse_tunnel", lambda s, p: s == "reverse-ssh-stunnel"),
    "tunnel-shell-tls": ("reverse_tunnel", lambda s, p: s == "reverse-shell-tls"),
    "tunnel-shell-clear": ("reverse_tunnel", lambda s, p: s == "reverse-shell-clear"),
    "tunnel-websocket": ("reverse_tunnel", lambda s, p: s.startswith("reverse-wstunnel")),
}


def leave_one_out(table: Table, thresholds: train.Thresholds, seed: int,
                  hold: bool = False, families: list[str] | None = None) -> dict[str, Any]:
    """Retrain without each family (of HELD_OUT; `families`: those alone) and report session recall
    on it (full captures and early cuts); `hold`: tunnel verdicts held as triage and live capture
    give them (train.as_given)."""
    scen = table.scenarios
    ports = table.ports.tolist()
    out: dict[str, Any] = {}
    for name, (label, select) in HELD_OUT.items():
        if families is not None and name not in families:
            continue
        held = np.array([select(s, p) for s, p in zip(scen, ports, strict=True)])
        if not held.any():
            out[name] = {"sessions": 0, "note": "no such sessions in the data"}
            continue
        fitted = table.subset(~held)
        boosters = {kind: train.fit_table(fitted, seed, kind) for kind in train.KINDS}
        test = table.subset(held)
        proba = train.predict(boosters, test)
        pred = train.decide_all(train.as_given(proba, test) if hold else proba, thresholds, test)
        cls = CLASSES.index(label)
        groups = np.array(test.groups)
        views = np.array(test.views)
        result: dict[str, Any] = {"class": label}
        for view_name, mask in (("full", views == "full"), ("first_20_packets", views == "pkt20"),
                                ("first_60_seconds", views == "cut60"),
                                ("live_windows", np.isin(views, LIVE_VIEWS))):
            ids = np.unique(groups[mask & (test.y == cls)])
            hit = sum((pred[mask & (groups == s)] == cls).any() for s in ids)
            recall = round(hit / len(ids), 4) if len(ids) else None
            result[view_name] = {"sessions": len(ids), "recall": recall}
        result["flows_as"] = {c: int((pred[views == "full"] == i).sum()) for i, c in enumerate(CLASSES)}
        out[name] = result
    return out


def plots(report: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    cm = np.array(report["confusion_matrix"]["matrix"], dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=20)
    ax.set_yticks(range(len(CLASSES)), CLASSES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(CLASSES)):
        for j in range(len(CLASSES)):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title("Flows, grouped cross-validation")
    fig.tight_layout()
    fig.savefig(out / "confusion_matrix.png", dpi=100)
    plt.close(fig)
    written.append("confusion_matrix.png")
    for key, xlabel, fname in (
        ("by_seconds_read", "seconds of capture read", "recall_by_seconds.png"),
        ("by_packets_read", "packets of each connection read", "recall_by_packets.png"),
    ):
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for c in CLASSES[1:]:
            points = report["early"][c][key]
            xs = sorted(points, key=int)
            ax.plot([int(x) for x in xs], [points[x]["recall"] for x in xs], marker="o", label=c)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("session recall")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / fname, dpi=100)
        plt.close(fig)
        written.append(fname)
    return written


def live_section(live: dict[str, Any] | None, capture: dict[str, Any] | None = None) -> list[str]:
    """The model card's lines on live windows (the live views, judged by model-live.txt), none if
    the table had none. `capture`: the live booster's capture options (its windows)."""
    if not live:
        return []
    ttd = live["time_to_detect"]
    steps = list(ttd["stratum_mining"]["within_s"])
    cap = CaptureOptions.from_dict(capture) if capture else live_options(CaptureOptions())
    opening = f" (a connection's first window after {cap.opening_timeout} s)" if cap.cuts_opening else ""
    lines = [
        "## Live windows",
        f"The lab captures and the corpus read as a live capture cuts them (a window ends after "
        f"{cap.active_timeout} s{opening}, or after {cap.idle_timeout} s of silence), each "
        "window after a connection's first also as the connection so far (rebuilt from its windows, "
        "`flowguard/connections.py`), scored out-of-fold by the live booster.",
        "",
        f"- Corpus windows and connections flagged: {live['corpus_false_positives']} of "
        f"{live['corpus_flows']}; lab benign rows flagged: {live['lab_benign_flow_fpr']} (rate); "
        f"lab benign sessions with any flagged row: "
        f"{live['per_class_sessions']['benign']['flagged']} of "
        f"{live['per_class_sessions']['benign']['sessions']}.",
        "- Session recall by how long after its connection's first packet the first flagged window "
        "was exported by nfstream (when the window's next packet came after its window's length, "
        f"or {cap.idle_timeout} s after its last packet); the verdict follows within about "
        "0.2 s, and on a quiet link the capture's clock runs up to 0.4 s behind. Tunnels also "
        "counted from their first use (the lab's schedule: the session's start plus its idle time "
        "before use; the connection's set-up, well under a second, is not counted):",
        "",
        "| class | sessions | " + " | ".join(f"<= {t} s" for t in steps) + " | median |",
        "|---|---|" + "---|" * (len(steps) + 1),
    ]
    for c, v in ttd.items():
        rows = [(c, v)]
        if "since_first_use" in v:
            rows.append((f"{c}, from first use", v["since_first_use"]))
        for name, r in rows:
            lines.append(f"| {name} | {r['sessions']} | "
                         + " | ".join(str(r["within_s"][t]) for t in steps) + f" | {r['median_s']} s |")
    return [*lines, ""]


def draws_section(draws: list[dict[str, Any]] | None) -> list[str]:
    """Each out-of-fold draw: the thresholds it alone would have chosen, and what the shipped
    ones (their median) give on its scores."""
    if not draws or len(draws) < 2:
        return []

    def pair(t: dict[str, float]) -> str:
        return f"{t['stratum_mining']} / {t['reverse_tunnel']}"

    lines = [
        "## Out-of-fold draws",
        "Each draw is the whole out-of-fold evaluation again with its own fold splits and seeds "
        "(`train.THRESHOLD_DRAWS`). Its own thresholds (mining / tunnel) are what it alone would "
        "have chosen; each shipped threshold is their median. The other columns are what the "
        "shipped thresholds give on the draw's scores, verdicts as given; the tables above are "
        "the first draw's.",
        "",
        "| seed | offline | live | opening | corpus flows flagged | lab benign sessions flagged "
        "(whole / live) | mining within 20 packets | mining live within 5 s | tunnels within "
        "30 s of first use |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for d in draws:
        t = d["thresholds"]
        lines.append(
            f"| {d['seed']} | {pair(t['offline'])} | {pair(t['live'])} | "
            f"{pair(t['opening']) if 'opening' in t else ''} | {d['corpus_false_positives']} | "
            f"{d['benign_sessions_flagged']} / {d.get('live_benign_sessions_flagged', '')} | "
            f"{d['mining_within_20_packets']} | {d.get('live_mining_within_5_s', '')} | "
            f"{d.get('live_tunnels_within_30_s_of_first_use', '')} |")
    return [*lines, ""]


def _range(bounds: list[float]) -> str:
    """"0.333-3"; "-30 to 60" where a bound is negative."""
    sep = " to " if min(bounds[:2]) < 0 else "-"
    return sep.join(f"{b:.0f}" if abs(b) >= 100 else f"{b:.3g}" for b in bounds[:2])


def _augmentation(aug: dict[str, Any]) -> list[str]:
    """The model card's line on message-size augmentation (metadata `params.augment`)."""
    if not aug.get("copies"):
        return []
    openings = aug.get("openings", {})
    who = "; ".join(
        f"the {kind} booster's rows of views {', '.join(views)}"
        + ("" if openings.get(kind, True) else " that do not hold their connection's SYN")
        for kind, views in aug["views"].items() if views)
    return [f"- Message-size augmentation (`training/augment.py`, `train.AUGMENTED_VIEWS`): "
            f"{aug['copies']} copies of {who} are learnt from too, with each direction's payload "
            f"sizes redrawn (a * size + b, a in {_range(aug['scale'])}, b in "
            f"{_offsets(aug['offset'])}{_ratios(aug.get('ratio') or {})}"
            + ("; whole bytes, as nfstream reports them" if aug.get("whole_values") else "")
            + "), so that a stratum "
            "dialect or a TLS wrapping with other message sizes than the lab's still looks like "
            "mining."] + _wrapping(aug)


def _offsets(offset: list[float] | dict[str, list[float]]) -> str:
    """`b`'s range: one for every booster (before 2026.11.24.11) or one per booster kind."""
    if not isinstance(offset, dict):
        return f"{_range(offset)} bytes"
    return ", ".join(f"{_range(v)} bytes for the {k} booster"
                     + (" (a message keeping a byte)" if min(v) < 0 else "")
                     for k, v in offset.items())


def _ratios(ratios: dict[str, float | None]) -> str:
    """The card's words on how far apart the directions' factors may be (`train.AUGMENT_RATIOS`)."""
    return "".join(f"; the {kind} booster's two directions' a at most {r:g} times apart"
                   for kind, r in ratios.items() if r)


def _wrapping(aug: dict[str, Any]) -> list[str]:
    """The model card's line on TLS wrapping (metadata `params.augment`)."""
    if not aug.get("wrapped"):
        return []
    hs = aug["handshake"]
    openings = aug.get("openings", {})
    kinds = " and ".join(k for k, views in aug["views"].items() if views and openings.get(k, True))
    if not kinds:
        return []
    return [f"- TLS wrapping (`augment.wrapped`): {aug['wrapped']} of those copies of each {kinds} "
            f"row that opens its connection (nDPI not saying {' or '.join(aug['not_wrapped'])}) "
            f"carry the connection in TLS: a handshake (ClientHello {_range(hs['client_hello'])} "
            "bytes, "
            f"server flight {_range(hs['server_flight'])}, client Finished "
            f"{_range(hs['client_finished'])}, a TLS 1.2 server's last flight "
            f"{_range(hs['server_finished'])} or none{_acks(hs)}) before the first message, so "
            "that a handshake does not say benign to a booster that saw TLS only in benign "
            "traffic" + ("; its gaps in whole milliseconds, as nfstream's clock reads them"
                         if aug.get("whole_values") else "") + "."]


def _acks(hs: dict[str, Any]) -> str:
    """The card's words on the client's acknowledgements of the server's flight."""
    share = hs.get("ack_each_segment")
    return (f"; in {share:.0%} of them the client acknowledges each of the server's segments"
            if share else "")


def model_card(meta: dict[str, Any], report: dict[str, Any], loso: dict[str, Any]) -> str:
    td = meta["training_data"]
    pcf = report["per_class_flows"]
    pcs = report["per_class_sessions"]
    lines = [
        f"# Model card: flowguard {meta['version']}",
        "",
        "LightGBM multiclass model (`model.txt`, LightGBM text format) that labels each flow "
        "`benign`, `stratum_mining` or `reverse_tunnel` from nfstream flow features "
        "(`flowguard/features.py`; no addresses or port numbers).",
        "",
        "## Data",
        f"- Lab runs: {', '.join(td['lab_runs'])} (real software in network namespaces, labelled by "
        "construction; see training/lab/).",
        f"- Real-world benign corpus: {td['corpus_files']} nDPI test captures, read in place.",
        f"- Rows: {td['rows_per_class']}; sessions: {td['sessions_per_class']}; "
        f"views: {td.get('rows_per_view')}.",
        f"- Data hash (sha256 over every capture and label file): `{td['data_sha256']}`.",
        "",
        "## Method",
        f"- Features: {len(meta['features'])}; capture options: {meta['capture']}.",
        f"- Parameters: {meta['params']}.",
        "- Sample weights: each class weighs the same, and each session within its class; a "
        "session's live windows weigh as much together as its other rows.",
        f"- Thresholds (out-of-fold, corpus false-positive budget 1/5000 flows): {meta['thresholds']}; "
        f"for live windows and connections (model-live.txt): {meta['live']['thresholds']}, and for "
        f"a live window that opens its connection: {meta['live'].get('opening_thresholds')}"
        + (". A benign row's reverse-tunnel score counts against the budgets only where its "
           "connection shows the behaviour triage and live capture wait for before a tunnel "
           "verdict (`connections.tunnel_evidence`, by the row's end; live, at its window or a "
           "later one)" + _eager_line(meta) if meta["params"].get("tunnel_thresholds") == "held"
           else "."),
        f"- A window that does not open its connection (no SYN) and holds fewer than "
        f"{meta['min_packets']} packets is not judged: its verdict is benign.",
        "- Two boosters: `model.txt` learned from whole captures and their early cuts and judges "
        "triage's flows; `model-live.txt` learned from those and from live windows, and judges "
        "live windows. Each is the average of "
        f"{meta['params'].get('members', 1)} boosters seeded one after the other, merged into one "
        "model file (`training/ensemble.py`).",
        *([f"- The live booster is one binary booster per class against the rest (raw scores 0, "
           f"mining's, tunnel's; `ensemble.one_vs_rest`), each without the features "
           f"{meta['params']['live_class_ignores']} (`train.LIVE_CLASS_IGNORES`): mining's goes "
           "without nDPI's label."] if meta["params"].get("live_class_ignores") else []),
        *_augmentation(meta["params"].get("augment") or {}),
        f"- Evaluation: {report['evaluation']}.",
        "",
        "## Metrics (grouped cross-validation, whole captures)",
        "| class | precision | recall | F1 | flows | session recall |",
        "|---|---|---|---|---|---|",
    ]
    for c in CLASSES:
        s = pcs[c]
        srec = s.get("recall", f"{s['sessions'] - s.get('flagged', 0)}/{s['sessions']} clean")
        lines.append(f"| {c} | {pcf[c]['precision']} | {pcf[c]['recall']} | {pcf[c]['f1']} | "
                     f"{pcf[c]['flows']} | {srec} |")
    lines += [
        "",
        f"- Real-world benign corpus: {report['corpus_false_positives']} of {report['corpus_flows']} "
        "flows flagged (out-of-fold: the model that scored a file never saw it).",
        f"- Lab benign look-alike flows flagged: {report['lab_benign_flow_fpr']} (rate); "
        f"benign sessions with any flagged flow: {pcs['benign']['flagged']} of "
        f"{pcs['benign']['sessions']}.",
        *_eager_metrics(report),
        "",
        "![confusion matrix](confusion_matrix.png)",
        "",
        "## Early verdicts",
        "Session recall when only the first seconds of a capture, or the first packets of each "
        "connection, were seen:",
        "",
        "| class | "
        + " | ".join(f"{k} s" for k in report["early"]["stratum_mining"]["by_seconds_read"])
        + " | "
        + " | ".join(f"{k} pkts" for k in report["early"]["stratum_mining"]["by_packets_read"])
        + " |",
        "|---|" + "---|" * (len(report["early"]["stratum_mining"]["by_seconds_read"])
                           + len(report["early"]["stratum_mining"]["by_packets_read"])),
    ]
    for c in CLASSES[1:]:
        e = report["early"][c]
        cells = [str(v["recall"]) for v in e["by_seconds_read"].values()]
        cells += [str(v["recall"]) for v in e["by_packets_read"].values()]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "![recall by seconds](recall_by_seconds.png) ![recall by packets](recall_by_packets.png)",
        "",
        *live_section(report.get("live"), (meta.get("live") or {}).get("capture")),
        *draws_section(report.get("draws")),
        "## Leave one scenario out",
        "Retrained without the family, then scored on it (session recall). Families are "
        "`evaluate.HELD_OUT`'s: `mining-xmr` is every Monero-style session, XMRig's (also "
        "`mining-xmrig` alone) and our emulator's; `tls-mining` every miner in TLS, either "
        "dialect or miner.",
        "",
        "| held out | class | sessions | recall (whole) | recall (first 20 packets) | recall (first 60 s) "
        "| recall (live windows) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in loso.items():
        if not r.get("sessions", 1):
            lines.append(f"| {name} | | 0 | | | | |")
            continue
        lines.append(f"| {name} | {r['class']} | {r['full']['sessions']} | {r['full']['recall']} | "
                     f"{r['first_20_packets']['recall']} | {r['first_60_seconds']['recall']} | "
                     f"{r.get('live_windows', {}).get('recall')} |")
    lines += [
        "",
        "## Known limits",
        "- Every malicious example comes from our lab: our stratum emulators and pool, one real "
        "miner (XMRig 6.16.0: below), "
        "OpenSSH 9.2 and Dropbear 2022.83, Python ssl, stunnel/OpenSSL and socat for TLS. Other stacks "
        "(newer OpenSSH with keystroke timing obfuscation, Go TLS, QUIC) are not represented in "
        "training (Go TLS and TLS 1.2 were measured: below).",
        "- Benign look-alikes are our own programs plus the nDPI corpus; enterprise traffic mixes "
        "(VPNs, remote desktop agents, game clients) are only as present as the corpus makes them.",
        "- Stratum V2 (binary, Noise-encrypted) is not covered.",
        "- Long flows are judged in 300 s windows; a flow's later windows have no handshake packets.",
        "- Live: a miner whose first window (handshakes and login, cut at 3 s) does not pass the "
        "opening threshold is judged on its later windows (a job push, a share: two to five packets "
        "each, mostly too few to judge) and on the connection so far, whose score rises with each "
        "window; such a miner is flagged after several job pushes or shares, 10 s or more. On a "
        "link without delay a delayed ACK (40 ms) often ends a TLS miner's first window; the lab "
        "had no such link before runs r17-r19 (a kernel bridge, no userspace hop), and models "
        "trained without them scored those windows 0.72-0.85 against 0.71 (2026.11.23.6) or "
        "0.75-0.78 against 0.81 (3 s openings, 16 runs); 2026.11.23.8: 0.92-0.93 against 0.83; "
        "2026.11.23.13: 0.81-1.0 against 0.58. The live mining booster without nDPI's label "
        "(since 2026.11.23.14) finds unseen TLS miners far better, but its opening threshold is "
        "higher (2026.11.23.14: 0.82, out-of-fold 97 % of mining sessions flagged within 5 s, "
        "99.4 % with the label). Trained with XMRig too (2026.11.24.2), whose first windows look "
        "like any JSON-RPC call, the opening threshold was 0.86, and out-of-fold 93 % of mining "
        "sessions were flagged within 5 s. With the later windows' message sizes augmented "
        "(2026.11.24.5, Method) the opening threshold is 0.80 and 95 % are flagged within 5 s, 99 % "
        "within 30 s (XMRig's own: 13 of 13 within 5 s on held-out runs, below), but later windows "
        "need 0.995 for mining, and tunnels are flagged within 5 s of their connection's first "
        "packet in 89 % of sessions instead of 96 % (within 30 s of first use: all). With runs "
        "p1-p3 and m1-m3 (TLS 1.2 miners, unused TLS connections, XMPP chat; 2026.11.24.9) the "
        "opening threshold is 0.76, later windows need 0.99 for mining and 0.88 for tunnels; "
        "96.7 % of mining sessions are flagged within 5 s, tunnels within 5 s of their "
        "connection's first packet in 89 % and within 30 s of first use in 99.9 %, and the live "
        "thresholds flag 11 of the lab's 2273 benign sessions (0.48 %, the budget binds). With "
        "p1-p3 alone (2026.11.24.7, not kept): 0.70 and 0.93 for tunnels; 97.2 %, 85 % and 99.7 %; "
        "left out of training, live windows found the WebSocket tunnel in 0.47 of its sessions "
        "(2026.11.24.9: 0.67). With runs w1-w6 too (our emulator's miners 10-300 times slower; "
        "2026.11.24.12): opening thresholds 0.70 and 0.88, later windows 0.995 and 0.92; 98.0 % of "
        "mining sessions flagged within 5 s, tunnels within 5 s of their connection's first packet "
        "in 90 % and within 30 s of first use in 99.9 %; 10 of the lab's 2582 benign sessions; "
        "left out of training, the WebSocket tunnel's live windows 0.49. That is a good draw: on "
        "three seeds with one booster per fold, w1-w6 cost mining flagged within 5 s on the "
        "sessions of the runs before 0.965 -> 0.947 on the mean. 2026.11.25.3 (the runs made "
        "again, tunnel thresholds held): opening thresholds 0.75 and 0.50, later windows 0.995 "
        "and 0.82; 97.5 % of mining sessions flagged within 5 s; tunnels, their verdicts held, "
        "97.2 % within 30 s of first use (eager, with its own thresholds 0.84 and 0.92: 99.5 %); "
        "12 of the lab's 2582 benign sessions; left out of training, the WebSocket tunnel's live "
        "windows 0.86. Real-world chat protocols "
        "(XMPP and KakaoTalk in the corpus) score "
        "close to the thresholds: out-of-fold one KakaoTalk flow is flagged offline.",
        "- The real-world corpus weighs half of the benign class in training (train.CORPUS_SHARE; "
        "weighed as any lab session it was an eighth, and a few corpus flows the booster never "
        "saw scored 0.97 for mining and set the thresholds). The thresholds are then bound by the "
        "lab's benign sessions instead, within the 0.5 % budget (Metrics and Live windows, "
        "above). The corpus holds near-copies (several captures of one protocol), so "
        "its out-of-fold false positives are a lower bound for traffic unlike all of it.",
        "- Push-notification channels (a login, then a heartbeat every few minutes) are stratum's "
        "closest benign look-alike. Models trained before the lab made them (runs r25-r27) flagged "
        "22 of the lab's 72 offline, mostly as tunnels; other push services that size or time "
        "their messages unlike ours may still be. Our own are too, on runs the model never saw: "
        "2026.12.07.1 flagged 4 of the 39 push channels of held-out runs h3 and t3 offline, none "
        "live (2026.11.25.6 the same 4).",
        "- TLS connections that are nothing but a handshake (browsers' pre-connections, health "
        "checks, scanners: a handshake, the server's session tickets, a close) were not in the lab "
        "before runs p1-p3 (`tls-preconnect`: OpenSSL's s_client against nginx, held idle 0-90 s, "
        "some sending one request). A pool's first answer comes right after its handshake too, and "
        "with TLS copies in training (2026.11.24.6) the corpus's one TLS ECH capture (such a "
        "connection) scored 0.91 for mining out-of-fold, at its live opening 0.80: it set both "
        "thresholds (0.91 and 0.80). With p1-p3 it scores 0.69 and 0.67 (out-of-fold on the same "
        "rows plus p1-p3's); 2026.11.24.7's thresholds were 0.89 and 0.70, 2026.11.24.9's (with "
        "m1-m3 too) are 0.90 and 0.76. Other clients' unused connections "
        "(larger ClientHellos, HTTP/2 prefaces) are not represented.",
        "- XMPP chat (prosody and slixmpp, training/lab/chat.py: messages seconds to minutes "
        "apart both ways, presence, keepalive pings; STARTTLS or clear) was not in the lab before "
        "runs m1-m3. On them, held out, 2026.11.24.7 flagged 6 of the 41 STARTTLS chats whole, "
        "all as reverse tunnels (scores up to 0.97; mining at most 0.30), none live; in training "
        "since 2026.11.24.9, none is flagged out-of-fold. Adding them did not lower the corpus's "
        "XMPP flows' mining scores (0.89-0.92 out-of-fold): other chat services that size or time "
        "their messages unlike ours may still be flagged.",
        "- A reverse shell over plain TCP (one byte a keystroke), left out of training, is found "
        "in few of its sessions (2026.11.24.9: 0.40 whole, 0.70 live; 2026.11.24.6: 0.10 and "
        "0.57): the model knows a reverse shell partly by the sizes of its transport, not only by "
        "which side types. Since 2026.11.24.11 the offline booster learns from copies with bytes "
        "taken away as well as added (train.AUGMENT_OFFSETS): 0.60 whole (on the mean of four "
        "seeds 0.65, against 0.42 without); 2026.11.24.12: 0.77 whole, 0.60 live; 2026.11.25.3 "
        "(tunnel thresholds held: 0.56 offline, 0.82 live): 0.93 and 0.70.",
        "- Out-of-fold figures are one draw: the same method and table with other seeds move them "
        "(2026.11.24.12's data, offline booster, seeds 7, 107, 207 and 307): the mining threshold "
        "0.90-0.94, mining within 20 packets 0.937-0.963 (the sessions of the runs before w1-w6), "
        "left out of training XMRig 0.92-0.97, Bitcoin 0.92-0.93 and TLS mining 0.83-0.86 (with "
        "w1-w6's slowed miners), the cleartext reverse shell 0.47-0.83. Without w1-w6 "
        "(2026.11.24.11): 0.89-0.92, 0.952-0.964, 0.70-0.78, 0.96-0.97, 0.89-0.90, 0.43-0.87 "
        "(2026.11.24.10's method: 0.88-0.95, 0.919-0.965, 0.65-0.78, 0.94-0.96, 0.85-0.92, "
        "0.33-0.57; 2026.11.24.9's: 0.90-0.95, 0.916-0.964, 0.68-0.78, 0.92-0.97, 0.84-0.89, "
        "0.27-0.43). The shipped model's figures (seed 7) are 0.90, 0.966, 0.97, 0.93, 0.86 and "
        "0.77. The mining threshold is set by the corpus, of whose 5355 offline rows one may be "
        "flagged: two chat flows (KakaoTalk_chat.pcap, jabber.pcap: 20-30 small messages both "
        "ways in one to five "
        "minutes) score 0.89-0.96 for mining out-of-fold, from seed to seed. 2026.11.25.3 (the "
        "same 46 runs made again with the same seeds, tunnel thresholds held) drew the high end: "
        "the two flows score 0.945 and 0.948, so the offline mining threshold is 0.95 (0.90), "
        "mining within 20 packets 0.899 (0.966; at 0.90 it would be 0.953) and within 10 packets "
        "0.615 (0.722); left out of training TLS mining 0.84 whole, XMRig 0.92, Bitcoin 0.91, "
        "Ethereum 0.91, Monero-style 0.95; the cleartext reverse shell 0.93. It is not only the "
        "draw: with seeds 7, 107, 207 and 307 on its data the mining threshold is 0.95, 0.92, "
        "0.96 and 0.94, mining within 20 packets 0.899, 0.942, 0.868 and 0.918, live within 5 s "
        "0.975, 0.982, 0.963 and 0.978, and tunnels within 30 s of first use (held) 0.972-0.974: "
        "on the runs made again the chat flows score higher (0.91-0.98) and early mining "
        "verdicts fall about 4 points on the mean (2026.11.24.12's data: 0.952). 2026.11.25.4 adds "
        "runs q1-q3 (XMPP clients that query the server every 20-150 s and join a group chat "
        "room, as Pidgin does in jabber.pcap; training/lab/chat.py): offline mining threshold "
        "0.92, mining within 20 packets 0.940, within 10 packets 0.664, live within 5 s 0.979; "
        "corpus flows flagged out-of-fold 2 of 5355 (the budget allows one a class). The lab's "
        "queries barely move the corpus's chat flows (offline booster, seeds 7, 107, 207 and 307, "
        "mean mining score: Pidgin's pings 0.926 -> 0.899, its group chat join 0.941 -> 0.958, "
        "KakaoTalk 0.931 -> 0.928), and mining within 20 packets on the 46 runs' sessions is "
        "0.940, 0.902, 0.877 and 0.959 (mean 0.920; without the runs 0.907): seed 7 drew well, "
        "the gain on the mean is within a seed's spread. A request answered at once by a larger "
        "answer, the client speaking first, is what a stratum login or share looks like too. "
        "Since 2026.11.25.5 each threshold is the median of three out-of-fold draws' (Out-of-fold "
        "draws, above; train.THRESHOLD_DRAWS), so that the shipped thresholds are not one draw's: "
        "on 2026.11.25.4's boosters the draws chose offline mining 0.92, 0.91 and 0.91 and live "
        "openings 0.72, 0.78 and 0.84. A feature pairing each of the first packets' requests with "
        "its answer (the median of log2(answer bytes / request bytes), and the share of answers "
        "shorter than their request: a share's acknowledgement is) was tried on the same data: "
        "offline booster alone, four seeds, mining within 20 packets 0.917 -> 0.944 on the mean, "
        "but as a whole model with three draws 0.947 -> 0.921 (offline mining thresholds 0.91 -> "
        "0.94), left-out Bitcoin and Monero-style stratum 0.94 -> 0.91 and 0.96 -> 0.95 (their live "
        "windows 0.94 -> 0.94 and 0.87 -> 0.81), lab benign sessions flagged whole 22 -> 19: not "
        "taken. The same features' effect changed sign with the order of the table's rows (which "
        "the boosters' bagging draws from): small effects on early mining verdicts are within a "
        "draw's spread here. Since 2026.11.25.6 offline thresholds also keep the lab's benign "
        "sessions flagged on whole captures within the 0.5 % budget (train.OFFLINE_SESSION_VIEW): "
        "the offline tunnel threshold rose from 0.58 to 0.73, and benign sessions flagged whole "
        "fell from 22 to 13 of 2714 (push channels and MQTT keepalives), tunnels found as before.",
        "- Sizes of the first packets weigh heavily in early verdicts: a TLS stack, certificate or "
        "client that sizes its handshake or login unlike the lab's can be missed in its first "
        "packets and first live window (see leave-one-scenario-out). Whole captures and later "
        "live windows are judged with message-size augmentation (Method) since 2026.11.24.5: left "
        "out of training, Bitcoin, Monero and Ethereum stratum and the TLS reverse shell were "
        "found whole in 0.95, 0.93, 0.97 and 0.89 of their sessions and live in 0.98, 0.87, 0.93 "
        "and 1.0 (2026.11.24.2: 0.82, 0.80, 0.91, 0.64 and 0.18, 0.73, 0.83, 0.62), but mining "
        "within its first 20 packets out-of-fold in 0.936 instead of 0.970. Since 2026.11.24.6 the "
        "offline booster also learns from copies carried in TLS (Method): TLS mining left out of "
        "training is found whole in 0.89 of its sessions (0.79), XMRig in 0.79 (0.70), the TLS "
        "reverse shell in 1.0 (0.89); mining within 20 packets out-of-fold 0.956, XMRig on "
        "held-out runs 12 of 13 (9; below). The rest of the left-out TLS miners are still "
        "judged by their handshake: the lab's own TLS stacks, seen only in benign traffic and "
        "tunnels when TLS mining is left out, push them to benign. The first 10 packets of the lab's "
        "benign TLS sessions (the handshake alone) are flagged in 9 of its 1760 benign sessions "
        "out-of-fold (none before; train.AUGMENTED_VIEWS), within the budget per row. "
        "2026.11.24.9 (runs p1-p3 and m1-m3 added): left out, TLS mining 0.89 whole, XMRig 0.78, "
        "the TLS reverse shell 1.0; mining within 20 packets out-of-fold 0.964 (2026.11.24.7, "
        "p1-p3 alone: 0.92, 0.76, 0.96; 0.968). 2026.11.24.10 (the offline booster's two "
        "directions' size factors at most 3 times apart, train.AUGMENT_RATIOS): 0.89, 0.75, 0.98; "
        "0.965, within 10 packets 0.770 (0.744). 2026.11.24.11 (bytes taken away too, "
        "train.AUGMENT_OFFSETS): 0.90, 0.76, 0.98; 0.964, within 10 packets 0.772. 2026.11.24.12 "
        "(runs w1-w6: slowed miners): TLS mining 0.86 whole (0.90 on the sessions of the runs "
        "before w1-w6; w1-w6's own, half of them slowed, 0.62), XMRig 0.97, the TLS reverse shell "
        "0.98; 0.966, within 10 packets 0.722. 2026.12.07.1 (the 49 runs made again with the same "
        "seeds; the copies' sizes in whole bytes and their handshakes' gaps in whole milliseconds, "
        "as nfstream reports them, the copies having held fractions no captured flow has, and in "
        "half the drawn handshakes the client acknowledging each of the server's segments, "
        "augment.ACK_EACH_SEGMENT): left out, TLS mining 0.93 whole (2026.11.25.6: 0.87), XMRig "
        "0.94 (0.92), Ethereum 0.93 (0.92), Bitcoin 0.95 (0.94), Monero-style 0.95 (0.96); mining "
        "within 20 packets out-of-fold 0.972 (0.946; the other draws 0.969 and 0.963), within 10 "
        "packets 0.707 (0.682). On its table with the copies drawn as before (734c223), each family "
        "left out and judged with 2026.12.07.1's thresholds: TLS mining 0.88 whole (0.93), the "
        "cleartext reverse shell 0.47 (0.70), Dropbear 0.86 (0.82), and live windows the WebSocket "
        "tunnel 1.0 (0.79; from model to model it has been 0.49-0.97). Live, mining flagged "
        "within 5 s out-of-fold is 0.958 (2026.11.25.6 on its table: 0.974). On the held-out runs "
        "h1-h3 and t1-t4, made again (never in training), 2026.12.07.1 (2026.11.25.6), verdicts "
        "as users get them (`python -m training.pipeline`): mining 124 (124) of 124 sessions "
        "offline and live; tunnels 150 (150) of 152 offline, 151 (151) live, used ones within 30 s "
        "of first use 139 (139) of 142; benign sessions 4 (5) of 359 offline, all push channels "
        "(below), none (1) live. The model's early verdicts (`python -m training.heldout`): XMRig "
        "within 20 packets 14 (13) of 14 and live within 5 s 13 (14), TLS 1.2 miners 9 (8) and 5 "
        "(6) of 12.",
        "- TLS 1.2: until runs p1-p3 the lab's miners, tunnels and apps spoke TLS 1.3 only, and "
        "its nginx sessions (`https-curl`, `https-long-download`) TLS 1.2 only (nginx 1.22's "
        "default; the lab's nginx offers both since): the only TLS 1.2 handshakes in training "
        "were benign. p1-p3 (in training since 2026.11.24.7) serve half the TLS sessions of every "
        "label as TLS 1.2. On held-out runs with half their TLS sessions as TLS 1.2 (t1-t4 and "
        "g2, never in training; `python -m training.heldout`), 2026.11.24.9 (2026.11.24.6): TLS "
        "1.2 miners 16 of 16 whole and live, 10 (12) within their first 20 packets "
        "(2026.11.24.10 and 2026.11.24.11: 11; 2026.11.24.12: 10), but only 5 (2; 2026.11.24.12: 4) "
        "flagged live within 5 s of their first packet (TLS 1.3 ones in t1-t4: 52 (51) of 53): a "
        "TLS 1.2 miner's first window still often scores under the opening threshold, and it is "
        "found by its later windows; XMRig over TLS 1.2 4 of 4 whole and live (2), 2 (1) within "
        "5 s; TLS 1.2 tunnels 11 of 11; no benign TLS 1.2 session flagged (0 of 42). Trained with "
        "t1-t4 as well (2026.11.24.8, not shipped): mining flagged live within 5 s out-of-fold "
        "0.983 (0.972), the opening threshold 0.61, but the offline mining threshold 0.94 (0.89) "
        "and mining decided within 20 packets 0.932 (0.968), within 10 packets 0.68 (0.77). "
        "Earlier TLS 1.2 runs (r28-r32, training/make_data.sh) raised the offline threshold too.",
        "- Go TLS (crypto/tls, as Go tunnels, proxies and miners speak it; a 239-byte ClientHello"
        " against OpenSSL's 517): on four later runs whose stunnel-relayed sessions went over "
        "Go's TLS instead (r33-r36, kept out of training), model 2026.11.23.14 flagged 11 of 16 Go TLS "
        "miners offline (20 of 20 over OpenSSL in the same runs), 15 of 16 live and 4 of 16 "
        "within their first 20 packets; no benign Go TLS session (0 of 27) and every `ssh -R` "
        "carried in Go TLS (5 of 5). Trained with those runs, Go miners rose to 13, 10 and 16 of "
        "16 out-of-fold, but the live opening threshold for mining rose from 0.82 to 0.89 and lab"
        " miners flagged live within 5 s fell from 0.978 to 0.955 (see training/make_data.sh). "
        "Two later held-out runs (g1: Go TLS relays; g2: half the TLS sessions TLS 1.2, half the "
        "Monero-style ones XMRig's), 2026.11.24.9 (2026.11.24.6): TLS 1.2 miners 5 of 5 whole "
        "and live, 4 (3) within 20 packets, but 1 (1) live within 5 s; XMRig over TLS 1.2 3 of 3 "
        "whole, 3 (1) live; Go TLS miners 3 of 3 whole and live, 1 (1) within 20 packets, 2 (1) "
        "within 5 s; no benign Go TLS session flagged within 20 packets (1 of 6; 2026.11.24.11: "
        "1 of 6), none of 108 benign sessions whole or live.",
        "- A real miner, XMRig 6.16.0 (training/lab/xmrig.py), mining against our pool, in training "
        "since 2026.11.24.2: runs x1-x6 (the pool's difficulty fixed and the miner held to a tenth "
        "of a CPU: shares minutes apart) and v1-v3 (pools that retarget the difficulty to a share "
        "every 10-60 s, as real pools do); 63 sessions, of which the 5 whose pool accepted no share "
        "are left out of training (dataset.MIN_MINED_SHARES); leave-one-scenario-out above shows "
        "how it fares unseen. On three later runs with new seeds (h1-h3, never in training; "
        "`python -m training.heldout`), 2026.11.24.9: 13 of 13 XMRig sessions whole, 12 within "
        "their first 20 packets, 13 live and 13 within 5 s of their first packet; our emulator's "
        "miners 46 of 46 whole, within 20 packets, live and within 5 s; reverse tunnels 59 of "
        "59 whole and live within 30 s of first use; benign sessions flagged 1 of 158 whole, 1 "
        "within 20 packets and none live. 2026.11.24.10: the same but XMRig 11 and benign 2 "
        "within 20 packets; 2026.11.24.11: benign 2 within 20 packets; 2026.11.24.12: XMRig 11 "
        "within 20 packets, benign none within 20 packets and 1 live. 2026.11.24.6: emulator "
        "miners 45 within 5 s, benign none within 20 packets. 2026.11.24.5 (no TLS copies): "
        "XMRig 9 within 20 packets; 2026.11.24.2 (no "
        "size augmentation): XMRig 13 within 20 packets and 12 within 5 s, emulator miners 46 "
        "within 5 s, benign 1 live. Model 2026.11.23.14, "
        "which learned mining from our emulator only: XMRig 11, 6, 12 and none within 5 s; "
        "benign 1 and 2. XMRig's ClientHello is 293 bytes (the lab's OpenSSL and Python ones "
        "517): other miners' TLS stacks are not represented. Left out of training with the rest "
        "of Monero-style stratum (`mining-xmr`, 2026.11.24.6), every session missed is XMRig's "
        "(17 of 63; our emulator's 169 all found): held to a tenth of a CPU at a fixed "
        "difficulty, its connections carry 7-50 packets in up to 5 minutes, some only the "
        "pool's jobs, and look like a push channel. Our emulator had sent a share every 2-60 s; "
        "runs w1-w6 (since 2026.11.24.12) add its miners 10-300 times slower (shares minutes "
        "apart; 63 sessions, 48 with a share accepted): left out of training, XMRig is found "
        "whole in 0.97 of its sessions (2026.11.24.11: 0.76), within 20 packets in 0.57 (0.35), "
        "live in 0.86 (0.86); on the sessions of the runs before w1-w6, left out with their "
        "family, Monero-style stratum 0.97 (0.94), Ethereum 0.98 (0.97), Bitcoin 0.96 (0.97), "
        "TLS mining 0.90 (0.90), and live Ethereum 0.90 (0.94), Monero-style 0.88 (0.89). Slowed "
        "miners are themselves hard to find unseen (w1-w6's Bitcoin, left out with its family: "
        "32 of 42 whole, 22 live), and out-of-fold 6 of the 902 mining sessions are missed whole "
        "(2026.11.24.11: 1 of 777); in a draw with one booster per fold, 5 of its 6 misses were "
        "slowed miners, 4 of those with one share accepted or none.",
        "- An SSH connection whose key exchange takes tens of seconds (the lab's, when ten runs "
        "starved 2 CPUs: 12-52 s instead of a second or less) looks like a tunnel to the live "
        "booster: it flagged most such file copies in live windows.",
        "- Commands run over SSH without a terminal, several on one connection (configuration "
        "management and monitoring: Ansible's OpenSSH master connections, SSH libraries such as "
        "AsyncSSH), are flagged as reverse tunnels: on ten held-out lab runs (`--plan automation`, "
        "training/make_data.sh, held/a1-a6 and b1-b4) 2026.11.24.12 flagged 61 of 77 such "
        "sessions (46 whole, 73 live), and 4 of 83 that open a connection a command (none whole "
        "or live); AsyncSSH's reverse tunnels, another SSH client it never saw, 82 of 82. Trained "
        "on four of the runs, a model flagged 1 of 28 such sessions of the others, but its live "
        "tunnel threshold rose to 0.999 and tunnel families left out of training were then missed "
        "live (the TLS reverse shell, SSH in TLS): it was not shipped. flowguard's triage and "
        "live capture hold a tunnel verdict until its connection behaves as a tunnel: an exchange "
        "begun by the outside end after a silence, or keepalives alone "
        "(`connections.tunnel_evidence`; `--eager-tunnels` turns this off). On 21 lab runs "
        "(`training.pipeline`; held/a1-a6, b1-b4, c1-c2 and nine runs made again with training's "
        "seeds) multi-command automation was then flagged live in 0 of 77 sessions (73 without) "
        "and offline in 0 (49); tunnels in 400 of 413 live (413), and 361 of 372 used tunnels "
        "within 30 s of their first use (371). Automation whose tasks work seconds before they "
        "answer (`--slow-task-share`, held/c1-c2) is cleared where it runs a task a connection (8 of "
        "8 sessions: the answer closes the connection, which says nothing of its use), but "
        "flagged with several tasks on one connection, 23 of 24 sessions: the server speaks first "
        "after a silence, as a tunnel's outside end does. Where automation "
        "crosses the monitored link, allowlist the servers it reaches (setting `allowlist`, "
        "`POST /v1/allowlist`): its verdicts are still stored, but nothing is blocked. "
        "2026.11.25.3 on the 14 held-out runs (held/a1-a6, b1-b4, c1-c4; 532 benign sessions), "
        "tunnel verdicts held: 33 benign sessions flagged, all slow tasks on one connection "
        "(2026.11.24.12: 32), tunnels 185 of 196 offline and 186 live (the same), mining 83 and "
        "84 of 84 (the same); eager, with its own thresholds: multi-command automation 55 of 85 "
        "offline and 81 live (56 and 81), other benign sessions none of 308 (none).",
        "- A reverse tunnel that is never used and sends no keepalives is a quiet SSH/TLS session: "
        "with tunnel verdicts held it is not flagged (11 of 413 tunnel sessions of the 21 runs), "
        "nor is a tunnel whose only use begins within 2 s of a keepalive (2).",
        "",
    ]
    return "\n".join(lines)


def _eager_metrics(report: dict[str, Any]) -> list[str]:
    if train.HELD_NOTE not in report.get("evaluation", ""):
        return []
    lines = ["- Reverse-tunnel verdicts are counted as triage and live capture give them: held "
             "until their connection shows the evidence (`--eager-tunnels` gives them at once)."]
    e = report.get("eager")
    if e is not None:
        lines.append(
            f"- With `--eager-tunnels` and its own thresholds: corpus {e['corpus_false_positives']} "
            f"flows flagged, lab benign flows {e['lab_benign_flow_fpr']} (rate), benign sessions "
            f"with any flagged flow {e['benign_sessions_flagged']}, tunnel session recall "
            f"{e['tunnel_recall']}"
            + (f"; live, benign sessions flagged {e['live_benign_sessions_flagged']}, tunnel "
               f"session recall {e['live_tunnel_recall']}" if "live_tunnel_recall" in e else "")
            + _within(e.get("live_tunnel_time_to_detect"))
            + ".")
    return lines


def _within(ttd: dict[str, Any] | None, seconds: str = "30") -> str:
    use = (ttd or {}).get("since_first_use", {}).get("within_s", {}).get(seconds)
    return "" if use is None else f", within {seconds} s of first use {use}"


def _eager_line(meta: dict[str, Any]) -> str:
    eager = meta.get("eager_thresholds")
    if eager is None:
        return ": with `--eager-tunnels` more benign connections are flagged than the budgets say."
    return (". `--eager-tunnels` judges with thresholds chosen where every tunnel score counts: "
            f"whole flows {eager.get('offline')}, live windows {eager.get('live')}, and live "
            f"windows that open their connection {eager.get('opening')}.")


def model_thresholds(model_dir: Path) -> train.Thresholds:
    """The thresholds a model ships with, by kind (offline, live, and live openings if any)."""
    live = FlowClassifier.load(model_dir, live=True, lazy=True).metadata  # its thresholds only
    return {"offline": FlowClassifier.load(model_dir, lazy=True).metadata.thresholds,
            "live": live.thresholds, **({"opening": live.opening_thresholds}
                                        if live.opening_thresholds is not None else {})}


def eager_report(table: Table, proba: np.ndarray, eager: train.Thresholds) -> dict[str, Any]:
    """What `--eager-tunnels` gives, with the thresholds chosen for it: every tunnel score counts."""
    m = train.metrics(table, train.decide_all(proba, eager, table))
    live = m.get("live", {})
    return {"corpus_false_positives": m["corpus_false_positives"],
            "lab_benign_flow_fpr": m["lab_benign_flow_fpr"],
            "benign_sessions_flagged": m["per_class_sessions"]["benign"]["flagged"],
            "tunnel_recall": m["per_class_sessions"]["reverse_tunnel"]["recall"],
            **({"live_benign_sessions_flagged": live["per_class_sessions"]["benign"]["flagged"],
                "live_tunnel_recall": live["per_class_sessions"]["reverse_tunnel"]["recall"],
                "live_tunnel_time_to_detect": live["time_to_detect"]["reverse_tunnel"]}
               if live else {})}


def run(table: Table, model_dir: Path, folds: int = 5, seed: int = 7,
        proba: np.ndarray | None = None, draws: list[dict[str, Any]] | None = None,
        ) -> dict[str, Any]:
    """Evaluate the model in model_dir on table; `proba`: out-of-fold scores already computed
    with the same folds and seed (training passes its own, the first draw's, and `draws`: what
    each out-of-fold draw chose and gives, train.draw_summary)."""
    thresholds = model_thresholds(model_dir)
    meta = json.loads((model_dir / "metadata.json").read_text())
    held = meta["params"].get("tunnel_thresholds") == "held" and table.has_evidence
    if proba is None:
        proba = train.out_of_fold(table, folds, seed)
    report = train.metrics(table, train.decide_all(train.as_given(proba, table) if held else proba,
                                                   thresholds, table))
    report["evaluation"] = (f"{folds}-fold StratifiedKFold over capture sessions, averaged over "
                            f"{train.MEMBERS} splits seeded from {seed}, "
                            f"thresholds {thresholds}"
                            + (f" ({train.draws_note(len(draws), seed)})" if draws else "")
                            + (train.HELD_NOTE if held else ""))
    if draws:
        report["draws"] = draws
    if meta.get("eager_thresholds") is not None:
        report["eager"] = eager_report(table, proba, meta["eager_thresholds"])
    report["leave_one_scenario_out"] = leave_one_out(table, thresholds, seed, held)
    report["plots"] = plots(report, model_dir)
    (model_dir / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    write_card(model_dir, meta, report)
    return report


def write_card(model_dir: Path, meta: dict[str, Any], report: dict[str, Any]) -> None:
    """MODEL.md from the model's metadata and its evaluation report."""
    (model_dir / "MODEL.md").write_text(model_card(meta, report, report["leave_one_scenario_out"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.splitlines()[0])
    ap.add_argument("--table", type=Path, default=Path("training/data/table.npz"))
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--card-only", action="store_true",
                    help="only write MODEL.md again, from the model's evaluation.json (after the "
                         "card's text changed)")
    a = ap.parse_args(argv)
    if a.card_only:
        write_card(a.model, json.loads((a.model / "metadata.json").read_text()),
                   json.loads((a.model / "evaluation.json").read_text()))
        return 0
    report = run(Table.load(a.table), a.model, a.folds, a.seed)
    print(json.dumps({k: report[k] for k in ("per_class_sessions", "corpus_false_positives",
                                              "leave_one_scenario_out")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
