"""Prometheus metrics, all named flowguard_*, none labelled with an address (bounded cardinality).

    flowguard_verdicts_ingested_total{verdict}          verdicts stored, per class
    flowguard_decisions_active{mode="enforced|dry_run"} decisions in force now
    flowguard_decisions_made_total{action}              what the policy did with each verdict
    flowguard_blocks_suppressed_total                   flagged verdicts over the new-block limit
    flowguard_firewall_errors_total                     failed firewall adapter calls
    flowguard_http_request_duration_seconds{method,route}  latency per route template
    flowguard_http_responses_total{method,route,status}
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowguard.policy import ACTIONS, Policy
from flowguard.store import Store

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "<unmatched>"
"""The route label of requests no route matched (not their path: paths are unbounded)."""


class _PolicyCollector(Collector):
    """Reads the store and the policy's totals at scrape time."""

    def __init__(self, policy: Policy, store: Store, clock: Callable[[], datetime]) -> None:
        self.policy, self.store, self.clock = policy, store, clock

    def collect(self) -> Iterator[Metric]:
        active = GaugeMetricFamily("flowguard_decisions_active", "Decisions in force now.", labels=["mode"])
        counts = self.store.count_active(self.clock())
        active.add_metric(["enforced"], counts[False])
        active.add_metric(["dry_run"], counts[True])
        yield active
        made = CounterMetricFamily("flowguard_decisions_made", "What the policy did with each verdict.",
                                   labels=["action"])
        for action in ACTIONS:
            made.add_metric([action], self.policy.stats[f"decisions_{action}"])
        yield made
        yield CounterMetricFamily(
            "flowguard_blocks_suppressed",
            "Flagged verdicts stored but not enforced: over max_new_blocks_per_minute.",
            value=self.policy.stats["blocks_suppressed"],
        )
        yield CounterMetricFamily("flowguard_firewall_errors", "Failed firewall adapter calls.",
                                  value=self.policy.stats["firewall_errors"])


class Metrics:
    """One registry per app, so apps (and tests) never share counters."""

    def __init__(self, policy: Policy, store: Store, classes: tuple[str, ...],
                 clock: Callable[[], datetime]) -> None:
        self.registry = CollectorRegistry()
        self.verdicts = Counter("flowguard_verdicts_ingested", "Verdicts stored, per class.",
                                ["verdict"], registry=self.registry)
        for name in classes:
            self.verdicts.labels(name)
        self.latency = Histogram("flowguard_http_request_duration_seconds",
                                 "Request latency per route template.", ["method", "route"],
                                 registry=self.registry)
        self.responses = Counter("flowguard_http_responses", "Responses per route template and status.",
                                 ["method", "route", "status"], registry=self.registry)
        self.registry.register(_PolicyCollector(policy, store, clock))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Times every HTTP request and labels it with the route template that matched it."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            method = str(scope.get("method", ""))
            method = method if route is not None and method in METHODS else "other"
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - start)
            self.metrics.responses.labels(method, template, str(status)).inc()
