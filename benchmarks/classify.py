"""Feature extraction + prediction in batches on one core, and single-flow latency.

    python -m benchmarks.classify [--file benchmarks/data/mixed.pcap]

Flows are read once with nfstream (not timed), then vectorized and classified in batches, over
several passes (the median pass is shown: one pass on a shared machine varies by 10-20 %).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import REPO, report
from flowguard.capture import live_options, read_flows
from flowguard.connections import ConnectionTracker
from flowguard.features import vectorize
from flowguard.model import PREDICTORS, FlowClassifier, default_model_dir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", type=Path, default=REPO / "benchmarks" / "data" / "mixed.pcap")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--predictor", choices=PREDICTORS, default="auto")
    ap.add_argument("--passes", type=int, default=5, help="timed passes over the flows (median shown)")
    a = ap.parse_args(argv)
    clf = FlowClassifier.load(default_model_dir(), predictor=a.predictor)
    reference = FlowClassifier.load(default_model_dir(), predictor="lightgbm")
    flows = list(read_flows(a.file, clf.metadata.capture))
    while len(flows) < 50_000:
        flows += flows
    flows = flows[:50_000]
    passes = []  # (total, features, prediction) seconds of each pass over the flows
    for _ in range(a.passes):
        features_s = predict_s = 0.0
        start = time.perf_counter()
        for i in range(0, len(flows), a.batch):
            t0 = time.perf_counter()
            x = vectorize(flows[i : i + a.batch], clf.features_used)
            t1 = time.perf_counter()
            clf.decide(clf.predict_proba(x), x)
            predict_s += time.perf_counter() - t1
            features_s += t1 - t0
        passes.append((time.perf_counter() - start, features_s, predict_s))
    passes.sort()
    total, features_s, predict_s = passes[len(passes) // 2]  # the median pass
    by_lightgbm = 0.0
    for i in range(0, len(flows), a.batch):
        x = vectorize(flows[i : i + a.batch], clf.features_used)
        t0 = time.perf_counter()
        reference.decide(reference.predict_proba(x), x)
        by_lightgbm += time.perf_counter() - t0
    single = []
    for f in flows[:2000]:
        t0 = time.perf_counter()
        one = vectorize([f], clf.features_used)
        clf.decide(clf.predict_proba(one), one)
        single.append(time.perf_counter() - t0)
    windows = list(read_flows(a.file, live_options(clf.metadata.capture)))
    t0 = time.perf_counter()
    ConnectionTracker().add(windows)
    merge = (time.perf_counter() - t0) / max(len(windows), 1)
    x = vectorize(flows[:500], clf.features_used)
    flagged = np.arange(len(x))
    t0 = time.perf_counter()
    clf.explain(x, np.ones(len(flagged), dtype=int))
    explain = (time.perf_counter() - t0) / len(x)
    n = len(flows)
    report("Classification (one core)", [
        ("flows", f"{n:,} (batches of {a.batch})"),
        ("features + prediction", f"{n / total:,.0f} flows/s (median of {len(passes)} passes; "
                                  f"{n / passes[-1][0]:,.0f} to {n / passes[0][0]:,.0f})"),
        ("of which features", f"{features_s / n * 1e6:.1f} us/flow"),
        ("of which prediction", f"{predict_s / n * 1e6:.1f} us/flow ({clf.predictor})"),
        ("prediction by LightGBM itself", f"{by_lightgbm / n * 1e6:.1f} us/flow"),
        ("single flow, median / p99", f"{statistics.median(single) * 1e6:.0f} / "
                                      f"{np.percentile(single, 99) * 1e6:.0f} us"),
        ("explanation (pred_contrib) per flagged flow", f"{explain * 1e3:.2f} ms"),
        ("live: merging a window into its connection so far",
         f"{merge * 1e6:.1f} us/window ({len(windows):,} windows of the file)"),
    ], notes="Target: >= 200k flows/s features + prediction in batches on one core.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
