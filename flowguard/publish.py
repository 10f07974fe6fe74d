"""Send verdicts to a flowguard service (`flowguard triage --publish URL`).

    with Publisher("http://127.0.0.1:8080", api_key) as publisher:
        for batch in batches:
            publisher.add(batch)          # posts whenever a batch is full
        publisher.flush()                 # posts the rest

Batches hold at most `batch_size` verdicts and `max_batch_bytes` of JSON (under the service's
default 1 MiB body limit). A failed POST is retried with exponential backoff when the failure may
pass (connection errors, timeouts, 408, 429, 5xx); the service keeps each flow verdict once, so a
retry never stores it twice. Anything else raises PublishError, whose message names the URL.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

import httpx

from flowguard import __version__
from flowguard.errors import PublishError
from flowguard.triage import FlowVerdict

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
VERDICTS_PATH = "/v1/verdicts"


def verdicts_url(url: str) -> str:
    """The ingest endpoint of a service URL (given as its base or as the endpoint itself)."""
    if not url.startswith(("http://", "https://")):
        raise PublishError(f"--publish: {url!r} is not an http:// or https:// URL")
    base = url.rstrip("/")
    return base if base.endswith(VERDICTS_PATH) else base + VERDICTS_PATH


class Publisher:
    def __init__(
        self,
        url: str,
        api_key: str | None,
        *,
        batch_size: int = 500,
        max_batch_bytes: int = 512 * 1024,
        attempts: int = 4,
        backoff_s: float = 0.5,
        timeout_s: float = 30.0,
        source: str | None = None,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = verdicts_url(url)
        self.batch_size, self.max_batch_bytes = batch_size, max_batch_bytes
        self.attempts, self.backoff_s, self.sleep = attempts, backoff_s, sleep
        self.source = source or f"triage@{socket.gethostname()}"
        headers = {"User-Agent": f"flowguard/{__version__}", "Content-Type": "application/json"}
        if api_key:
            headers["X-Api-Key"] = api_key
        self._client = client or httpx.Client(timeout=timeout_s)
        self._headers = headers
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self.sent = 0
        """Verdicts the service acknowledged."""
        self.actions: dict[str, int] = {}
        """What the service's policy did with them (its `counts`), summed."""

    def add(self, verdicts: Iterable[FlowVerdict]) -> None:
        for verdict in verdicts:
            item = json.dumps(verdict.to_dict(), separators=(",", ":")).encode()
            if self._pending and (len(self._pending) >= self.batch_size
                                  or self._pending_bytes + len(item) > self.max_batch_bytes):
                self.flush()
            self._pending.append(item)
            self._pending_bytes += len(item) + 1

    def flush(self) -> None:
        if not self._pending:
            return
        source = json.dumps(self.source).encode()
        body = b'{"source":' + source + b',"verdicts":[' + b",".join(self._pending) + b"]}"
        count = len(self._pending)
        reply = self._post(body)
        self._pending, self._pending_bytes = [], 0
        self.sent += count
        for action, n in (reply.get("counts") or {}).items():
            self.actions[action] = self.actions.get(action, 0) + int(n)

    def _post(self, body: bytes) -> dict[str, Any]:
        problem = ""
        for attempt in range(self.attempts):
            if attempt:
                self.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                response = self._client.post(self.url, content=body, headers=self._headers)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                continue
            if response.status_code < 300:
                try:
                    reply: dict[str, Any] = response.json()
                except ValueError:
                    reply = {}
                return reply
            problem = f"HTTP {response.status_code}: {_error_text(response)}"
            if response.status_code not in RETRY_STATUS:
                raise PublishError(f"publishing to {self.url} failed: {problem}")
        raise PublishError(f"publishing to {self.url} failed after {self.attempts} attempts: {problem}")

    def close(self) -> None:
        """Release the connection (what was not flushed is not sent)."""
        self._client.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _error_text(response: httpx.Response) -> str:
    """The service's error message (its JSON error shape), else the start of the body."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason_phrase
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])
    return response.text[:200].strip()
