"""`flowguard serve --interface IFACE`: the service captures itself and ingests its own verdicts.

Verdicts take the path a POST to /v1/verdicts takes (store in one transaction, count, policy),
without HTTP. /readyz answers 503 while capture is not running.
"""

from __future__ import annotations

from collections import Counter

from flowguard.live import LiveMetrics, LivePipeline, LiveSource
from flowguard.model import FlowClassifier
from flowguard.service.state import Service
from flowguard.triage import FlowVerdict


def ingest(service: Service, verdicts: list[FlowVerdict], source: str) -> None:
    """Store the verdicts and let the policy decide, as POST /v1/verdicts does."""
    if not verdicts:
        return
    ids = service.store.add_verdicts(verdicts, source, service.clock())
    for verdict, count in Counter(v.verdict for v in verdicts).items():
        service.metrics.verdicts.labels(verdict).inc(count)
    service.policy.apply(list(zip(ids, verdicts, strict=True)))


def attach_capture(service: Service, source: LiveSource, classifier: FlowClassifier,
                   **options: object) -> LivePipeline:
    """A live pipeline feeding the service (not started); its metrics join the service's."""
    label = f"capture@{source.interface}"
    pipeline = LivePipeline(
        source, classifier, sinks=[lambda batch: ingest(service, batch, label)],
        metrics=LiveMetrics(service.metrics.registry), **options,  # type: ignore[arg-type]
    )
    service.capture = pipeline
    return pipeline
