"""The service's endpoints (see docs/service.md). Handlers are plain functions: FastAPI runs them in
its thread pool, where the store's SQLite calls belong."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
from collections import Counter
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from flowguard import __version__
from flowguard.errors import StoreError
from flowguard.policy import normalize_address, normalize_cidr
from flowguard.service.auth import Bouncer, Reader, Writer
from flowguard.service.feeds import Feed, crowdsec_decision, iso, not_modified, stream_body
from flowguard.service.feeds import scope as scope_of
from flowguard.service.schemas import (
    ADDRESS_SCHEMA,
    CIDR_SCHEMA,
    DB_INT_MAX,
    AllowIn,
    ApiError,
    FeedbackIn,
    VerdictBatch,
    VerdictClass,
    VerdictsBody,
    error_response,
)
from flowguard.service.state import Service
from flowguard.store import DecisionRecord

router = APIRouter()
Id = Annotated[int, Path(ge=1, le=DB_INT_MAX)]
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
QUIET = ("benign", "below_threshold")
"""Outcomes left out of the ingest response's `decisions` (they are in `counts`)."""


async def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


Svc = Annotated[Service, Depends(_service)]


# -- service ----------------------------------------------------------------------------------------


@router.get("/healthz", tags=["service"], summary="The process is up")
def healthz() -> dict[str, Any]:
    return {"ok": True, "version": __version__}


@router.get("/readyz", tags=["service"], summary="The store answers (and live capture runs, if any)",
            responses={503: {}})
def readyz(svc: Svc) -> Any:
    try:
        svc.store.ping()
    except StoreError as exc:
        return error_response(503, f"the store does not answer: {exc}")
    if svc.capture is not None and not svc.capture.running:
        why = f": {svc.capture.error}" if svc.capture.error else ""
        return error_response(503, f"live capture on {svc.capture.source.interface} is not running{why}")
    return {"ok": True}


@router.get("/metrics", tags=["service"], summary="Prometheus metrics", response_class=Response)
def metrics(svc: Svc, _: Reader) -> Response:
    return Response(svc.metrics.render(), media_type=PROMETHEUS_TEXT)


@router.get("/v1/model", tags=["service"], summary="The loaded model's metadata and the policy in force")
def model(svc: Svc, _: Reader) -> dict[str, Any]:
    policy = svc.policy
    return {**svc.model, "policy": {
        "thresholds": policy.thresholds,
        "ttl_seconds": {c: svc.settings.ttl_for(c) for c in policy.thresholds},
        "max_new_blocks_per_minute": svc.settings.max_new_blocks_per_minute,
        "dry_run": svc.settings.dry_run,
        "firewall": svc.settings.firewall,
    }}


# -- verdicts ---------------------------------------------------------------------------------------


@router.post("/v1/verdicts", tags=["verdicts"], status_code=201, summary="Store verdicts and decide")
def post_verdicts(svc: Svc, caller: Writer, body: Annotated[VerdictsBody, Body()]) -> dict[str, Any]:
    """A JSON list of `flowguard triage --format jsonl` objects, or `{"verdicts": [...], "source": "..."}`.
    Stored in one transaction (a verdict already stored keeps its id), then the policy decides."""
    if isinstance(body, VerdictBatch):
        items, source = body.verdicts, body.source or caller.label
    else:
        items, source = body, caller.label
    flows = [item.to_flow() for item in items]
    ids = svc.store.add_verdicts(flows, source, svc.clock())
    for verdict, count in Counter(f.verdict for f in flows).items():
        svc.metrics.verdicts.labels(verdict).inc(count)
    outcomes = svc.policy.apply(list(zip(ids, flows, strict=True)))
    return {
        "ok": True,
        "ids": ids,
        "counts": dict(Counter(o.action for o in outcomes)),
        "decisions": [o.to_dict() for o in outcomes if o.action not in QUIET],
    }


def _cursor(order: str, last_id: int) -> str:
    return base64.urlsafe_b64encode(f"{order}:{last_id}".encode()).decode().rstrip("=")


def _uncursor(cursor: str) -> tuple[str, int]:
    try:
        order, _, last = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().partition(":")
        last_id = int(last)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ApiError(422, "invalid request: cursor is not one this service gave",
                       ["query.cursor: not a cursor from a previous page's `next`"]) from None
    if order not in ("asc", "desc") or not 0 <= last_id <= DB_INT_MAX:
        raise ApiError(422, "invalid request: cursor is not one this service gave",
                       ["query.cursor: not a cursor from a previous page's `next`"])
    return order, last_id


def _ip(value: str, where: str) -> str:
    try:
        return normalize_address(value)
    except ValueError:
        raise ApiError(422, f"invalid request: {where} must be an IP address",
                       [f"{where}: must be an IPv4 or IPv6 address"]) from None


@router.get("/v1/verdicts", tags=["verdicts"], summary="List verdicts, newest first")
def list_verdicts(
    request: Request,
    svc: Svc,
    _: Reader,
    verdict: VerdictClass | None = None,
    ip: Annotated[str | None, Query(max_length=64, description="Source or destination address",
                                    json_schema_extra=ADDRESS_SCHEMA)] = None,
    since: Annotated[datetime | None, Query(description="Flows seen at or after (ISO 8601)")] = None,
    min_score: Annotated[float | None, Query(ge=0.0, le=1.0, allow_inf_nan=False)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=DB_INT_MAX)] = 0,
    cursor: Annotated[str | None, Query(max_length=200, description="`next` of the previous page")] = None,
    order: Literal["desc", "asc"] = "desc",
) -> dict[str, Any]:
    after_id = None
    if cursor is not None:
        if offset:
            raise ApiError(422, "invalid request: use offset or cursor, not both",
                           ["query.offset: not allowed with cursor"])
        order, after_id = _uncursor(cursor)  # type: ignore[assignment]
    since_ms = None
    if since is not None:
        if since.tzinfo is None:
            since = since.replace(tzinfo=timezone.utc)
        since_ms = max(0, int(since.timestamp() * 1000))
    rows = svc.store.verdicts(
        verdict=verdict, ip=_ip(ip, "query.ip") if ip is not None else None, since_ms=since_ms,
        min_score=min_score, limit=limit, offset=offset, after_id=after_id, descending=order == "desc",
    )
    next_cursor = _cursor(order, rows[-1].id) if len(rows) == limit else None
    next_url = None
    if next_cursor is not None:
        next_url = str(request.url.remove_query_params(["offset", "cursor"]).include_query_params(
            cursor=next_cursor))
    return {"verdicts": [r.to_dict() for r in rows], "next": next_cursor, "next_url": next_url}


@router.get("/v1/verdicts/{verdict_id}", tags=["verdicts"], summary="One verdict and its feedback")
def get_verdict(svc: Svc, _: Reader, verdict_id: Id) -> dict[str, Any]:
    stored = svc.store.verdict(verdict_id)
    if stored is None:
        raise ApiError(404, f"no verdict {verdict_id}")
    return {**stored.to_dict(), "feedback": [f.to_dict() for f in svc.store.feedback_for(verdict_id)]}


@router.post("/v1/verdicts/{verdict_id}/feedback", tags=["feedback"], status_code=201,
             summary="An analyst's judgement of a verdict")
def post_feedback(svc: Svc, _: Writer, verdict_id: Id, body: FeedbackIn) -> dict[str, Any]:
    """label: true_positive (the verdict is right), false_positive (a flagged flow is benign), or
    the class the flow really is. Exported for training by GET /v1/feedback."""
    stored = svc.store.verdict(verdict_id)
    if stored is None:
        raise ApiError(404, f"no verdict {verdict_id}")
    flagged = stored.flow.verdict
    if body.label == "true_positive":
        true_class = flagged
    elif body.label == "false_positive":
        if flagged == "benign":
            raise ApiError(422, "invalid request: a benign verdict cannot be a false positive",
                           ["body.label: give the class the flow really is instead"])
        true_class = "benign"
    else:
        true_class = body.label
    feedback = svc.store.add_feedback(verdict_id, body.label, true_class, body.note, body.analyst,
                                      svc.clock())
    if feedback is None:
        raise ApiError(404, f"no verdict {verdict_id}")
    return {"ok": True, "feedback": feedback.to_dict()}


@router.get("/v1/feedback", tags=["feedback"], summary="All feedback with its verdicts, as JSON Lines",
            response_class=Response)
def export_feedback(svc: Svc, _: Reader) -> Response:
    lines = (json.dumps(record, separators=(",", ":")) + "\n" for record in svc.store.export_feedback())
    return Response("".join(lines), media_type="application/x-ndjson")


# -- pull lists -------------------------------------------------------------------------------------


def _conditional(request: Request, svc: Service, feed: Feed, kind: str, media_type: str) -> Response:
    """The representation `kind` of the feed, or 304 when the client's copy is current."""
    etag = feed.etag(kind)
    headers = feed.headers(etag)
    if not_modified(request.headers, etag, feed.last_modified, svc.clock()):
        return Response(status_code=304, headers=headers)
    return Response(feed.body(kind), media_type=media_type, headers=headers)


async def _feed(svc: Service) -> Feed:
    """The current blocklist feed: from memory on the event loop when it is surely current (the
    common case under load), else checked or rendered against the database in the threadpool."""
    feed = svc.feeds.cached()
    return feed if feed is not None else await run_in_threadpool(svc.feeds.get)


@router.get("/v1/blocklist.txt", tags=["pull lists"], response_class=Response,
            summary="Blocked addresses, one per line", responses={304: {"description": "Not modified"}})
async def blocklist_txt(
    request: Request, svc: Svc, _: Reader,
    comments: Annotated[bool, Query(description="Add ` # scenario until ISO-time` to each line")] = True,
) -> Response:
    feed = await _feed(svc)
    return _conditional(request, svc, feed, "text" if comments else "bare", "text/plain; charset=utf-8")


@router.get("/v1/blocklist.json", tags=["pull lists"], response_class=Response,
            summary="Blocked addresses with their decisions",
            responses={304: {"description": "Not modified"}})
async def blocklist_json(request: Request, svc: Svc, _: Reader) -> Response:
    feed = await _feed(svc)
    return _conditional(request, svc, feed, "json", "application/json")


# -- CrowdSec LAPI ----------------------------------------------------------------------------------


@router.get("/v1/decisions", tags=["crowdsec"], summary="Active decisions (CrowdSec LAPI shape)")
def decisions(
    svc: Svc,
    _: Reader,
    ip: Annotated[str | None, Query(max_length=64, description="Decisions covering this address",
                                    json_schema_extra=ADDRESS_SCHEMA)] = None,
    value: Annotated[str | None, Query(max_length=64)] = None,
    scope: Annotated[str | None, Query(max_length=16, description="Ip or Range")] = None,
    type: Annotated[str | None, Query(max_length=16, description="ban")] = None,
    dry_run: Annotated[bool, Query(description="The dry-run decisions instead (not CrowdSec's)")] = False,
) -> JSONResponse:
    now = svc.clock()
    address = ipaddress.ip_address(_ip(ip, "query.ip")) if ip is not None else None
    out = []
    for record in svc.store.decisions(now, dry_run=dry_run):
        d = record.decision
        if value is not None and d.value != value:
            continue
        if scope is not None and scope_of(d.value).lower() != scope.lower():
            continue
        if type is not None and d.type != type:
            continue
        if address is not None and (address.version != d.network.version or address not in d.network):
            continue
        out.append(crowdsec_decision(d, now))
    return JSONResponse(out)


@router.get("/v1/decisions/stream", tags=["crowdsec"], summary="Decisions stream for CrowdSec bouncers")
def decisions_stream(
    svc: Svc,
    caller: Bouncer,
    startup: bool = False,
    scopes: Annotated[str | None, Query(max_length=100, description="Comma-separated: ip,range")] = None,
) -> dict[str, Any]:
    """`{"new": [...], "deleted": [...]}`. Each bouncer is told apart by its API key: startup=true
    (or its first call) returns every active decision, later calls what changed since its last."""
    now = svc.clock()
    new, deleted = svc.store.stream(caller.key_hash or "anonymous", startup, now)
    if scopes:
        wanted = {s.strip().lower() for s in scopes.split(",")}
        new = [d for d in new if scope_of(d.value).lower() in wanted]
        deleted = [d for d in deleted if scope_of(d.value).lower() in wanted]
    return stream_body(new, deleted, now)


@router.delete("/v1/decisions/{decision_id}", tags=["crowdsec"], summary="End a decision now")
def delete_decision(svc: Svc, _: Writer, decision_id: Id) -> dict[str, Any]:
    ended = svc.policy.revoke(decision_id)
    if ended is None:
        raise ApiError(404, f"no active decision {decision_id}")
    return {"ok": True, "decision": _record(ended)}


def _record(record: DecisionRecord) -> dict[str, Any]:
    d = record.decision
    return {"id": d.id, "value": d.value, "scenario": d.scenario, "origin": d.origin,
            "created_at": iso(d.created_at), "expires_at": iso(d.expires_at), "dry_run": record.dry_run,
            "revoked_at": iso(record.revoked_at) if record.revoked_at else None,
            "end_reason": record.end_reason}


# -- allowlist --------------------------------------------------------------------------------------


@router.get("/v1/allowlist", tags=["allowlist"], summary="Networks never blocked")
def get_allowlist(svc: Svc, _: Reader) -> dict[str, Any]:
    local = {str(n) for n in svc.policy.protected}
    fixed = [{"cidr": cidr, "note": "", "source": "local" if cidr in local else "settings"}
             for cidr in svc.policy.fixed_allowlist()]
    return {"allowlist": fixed + [e.to_dict() for e in svc.store.allowlist()]}


@router.post("/v1/allowlist", tags=["allowlist"], summary="Never block a network (ends its decisions)")
def post_allowlist(svc: Svc, _: Writer, body: AllowIn, response: Response) -> dict[str, Any]:
    entry, fresh, ended = svc.policy.allow(body.cidr, body.note)
    response.status_code = 201 if fresh else 200
    return {"ok": True, "entry": entry.to_dict(), "revoked": [_record(r) for r in ended]}


@router.delete("/v1/allowlist", tags=["allowlist"], summary="Remove a network added through the API")
def delete_allowlist(
    svc: Svc, _: Writer,
    cidr: Annotated[str, Query(max_length=64, description="As listed", json_schema_extra=CIDR_SCHEMA)],
) -> dict[str, Any]:
    try:
        normal = normalize_cidr(cidr)
    except ValueError:
        raise ApiError(422, "invalid request: cidr must be an IP address or CIDR",
                       ["query.cidr: must be an IP address or a CIDR such as 10.0.0.0/8"]) from None
    if normal in svc.policy.fixed_allowlist():
        raise ApiError(409, f"{normal} comes from the settings (or is built in); change it there")
    if not svc.policy.disallow(normal):
        raise ApiError(404, f"{normal} is not in the allowlist")
    return {"ok": True, "removed": normal}
