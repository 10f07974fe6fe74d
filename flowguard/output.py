"""Writers for triage results: JSON lines, CSV, and a table for people."""

from __future__ import annotations

import csv
import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol, TextIO

from rich.console import Console
from rich.table import Table

from flowguard.hosts import HostView
from flowguard.model import CLASSES
from flowguard.triage import OUTPUT_FIELDS, FileDone, FlowVerdict

FORMATS = ("table", "jsonl", "csv")


class VerdictWriter(Protocol):
    def write(self, verdicts: list[FlowVerdict]) -> None: ...
    def file_done(self, done: FileDone) -> None: ...
    def close(self) -> None: ...


class JsonLinesWriter:
    """Exactly one JSON object per flow per line, keys in OUTPUT_FIELDS order."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, verdicts: list[FlowVerdict]) -> None:
        dumps = json.dumps
        self.stream.write("".join(dumps(v.to_dict(), separators=(",", ":")) + "\n" for v in verdicts))

    def file_done(self, done: FileDone) -> None:
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class CsvWriter:
    """The JSONL fields as CSV columns; `scores` is one column per class (score_<class>)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.columns = [f for f in OUTPUT_FIELDS if f not in ("scores", "reasons")]
        self.header = self.columns + [f"score_{c}" for c in CLASSES] + ["reasons"]
        self.writer = csv.writer(stream, lineterminator="\n")
        self.writer.writerow(self.header)

    def write(self, verdicts: list[FlowVerdict]) -> None:
        self.writer.writerows(
            [getattr(v, c) for c in self.columns]
            + [v.scores.get(c, 0.0) for c in CLASSES]
            + [reasons_text(v)]
            for v in verdicts
        )

    def file_done(self, done: FileDone) -> None:
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class TableWriter:
    """Non-benign flows, highest score first, then a per-file count of flows per verdict."""

    def __init__(self, stream: TextIO, limit: int = 200) -> None:
        terminal = Console(file=stream).is_terminal
        self.console = Console(file=stream, soft_wrap=False, width=None if terminal else 200)
        self.limit = limit
        self.flagged: list[FlowVerdict] = []
        self.files: list[FileDone] = []
        self.hosts = HostView()

    def write(self, verdicts: list[FlowVerdict]) -> None:
        self.flagged.extend(v for v in verdicts if v.verdict != CLASSES[0])
        self.hosts.add(verdicts)

    def file_done(self, done: FileDone) -> None:
        self.files.append(done)

    def close(self) -> None:
        flagged = sorted(self.flagged, key=lambda v: v.score, reverse=True)
        table = Table(title=f"Flagged flows ({len(flagged)})", title_justify="left")
        for name in ("verdict", "score", "source", "destination", "proto", "app", "packets",
                     "duration", "why", "pcap"):
            table.add_column(name, justify="right" if name in ("score", "packets") else "left")
        for v in flagged[: self.limit]:
            table.add_row(
                f"[bold red]{v.verdict}[/]",
                f"{v.score:.3f}",
                f"{v.src_ip}:{v.src_port}",
                f"{v.dst_ip}:{v.dst_port}",
                str(v.protocol),
                v.application_name,
                str(v.packets),
                f"{(v.last_seen_ms - v.first_seen_ms) / 1000:.1f}s",
                ", ".join(r.feature for r in v.reasons),
                Path(v.pcap).name,
            )
        if flagged:
            self.console.print(table)
            if len(flagged) > self.limit:
                self.console.print(f"… and {len(flagged) - self.limit} more (use --format jsonl)")
        else:
            self.console.print("No flagged flows.")
        hosts = self.hosts.summaries()
        if hosts:
            table = Table(title="Hosts with flagged flows", title_justify="left")
            for name in ("host", "pattern", *CLASSES[1:], "peers", "first seen", "last seen"):
                table.add_column(name)
            for h in hosts[: self.limit]:
                d = h.to_dict()
                table.add_row(
                    h.host,
                    "[bold red]mining + tunnel[/]" if h.correlated else ", ".join(d["flagged_flows"]),
                    *(str(h.flows.get(c, 0)) for c in CLASSES[1:]),
                    ", ".join(sorted({p for ps in h.peers.values() for p in ps}))[:60],
                    _ms(d["first_seen_ms"]),
                    _ms(d["last_seen_ms"]),
                )
            self.console.print(table)
        summary = Table(title="Flows per verdict", title_justify="left")
        summary.add_column("pcap")
        for c in CLASSES:
            summary.add_column(c, justify="right")
        summary.add_column("status")
        total: Counter[str] = Counter()
        for done in self.files:
            total.update(done.counts)
            summary.add_row(
                done.pcap,
                *(str(done.counts.get(c, 0)) for c in CLASSES),
                "ok" if done.error is None else f"[yellow]{done.error}[/]",
            )
        summary.add_row("[bold]total[/]", *(f"[bold]{total.get(c, 0)}[/]" for c in CLASSES), "")
        self.console.print(summary)


def _ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def reasons_text(v: FlowVerdict) -> str:
    """`feature=value (+contribution)` for each reason, `; `-separated (CSV's reasons column)."""
    return "; ".join(f"{r.feature}={r.value} ({r.contribution:+.3f})" for r in v.reasons)


def make_writer(fmt: str, stream: TextIO) -> VerdictWriter:
    if fmt == "jsonl":
        return JsonLinesWriter(stream)
    if fmt == "csv":
        return CsvWriter(stream)
    return TableWriter(stream)
