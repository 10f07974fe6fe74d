"""What the API accepts, and the one shape of every error it answers.

Every error, whatever the endpoint or the cause (404, 405, 401, 403, 409, 413, 422, 500, 503):

    {"ok": false, "status": 422, "error": "one line for people", "errors": ["body.0.src_ip: ...", ...]}
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi.responses import JSONResponse
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    model_validator,
)

from flowguard.policy import normalize_address, normalize_cidr
from flowguard.triage import FlowVerdict

MAX_BATCH = 10_000
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
MAX_COUNT = 2**62
DB_INT_MAX = 2**63 - 1
VerdictClass = Literal["benign", "stratum_mining", "reverse_tunnel"]


def _utf8(text: str) -> str:
    """Refuse strings that are not valid Unicode text (lone surrogates from JSON escapes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return text


def _address(text: str) -> str:
    try:
        return normalize_address(text)
    except ValueError:
        raise ValueError("must be an IPv4 or IPv6 address") from None


def _cidr(text: str) -> str:
    try:
        return normalize_cidr(text)
    except ValueError:
        raise ValueError("must be an IP address or a CIDR such as 10.0.0.0/8 or 2001:db8::/32") from None


ShortText = Annotated[str, StringConstraints(max_length=256), AfterValidator(_utf8)]
LongText = Annotated[str, StringConstraints(max_length=4096), AfterValidator(_utf8)]


_OCTET = r"(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])"
ADDRESS_SCHEMA: dict[str, Any] = {"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}
"""How addresses look in the OpenAPI spec (what clients and schema-driven tests generate)."""
CIDR_SCHEMA: dict[str, Any] = {"anyOf": [
    {"format": "ipv4"}, {"format": "ipv6"},
    {"pattern": rf"^{_OCTET}(\.{_OCTET}){{3}}/([0-9]|[12][0-9]|3[0-2])$"},
]}

IPAddressText = Annotated[
    str,
    StringConstraints(max_length=64),
    AfterValidator(_utf8),
    AfterValidator(_address),
    Field(json_schema_extra=ADDRESS_SCHEMA),
]
CIDRText = Annotated[
    str,
    StringConstraints(max_length=64),
    AfterValidator(_utf8),
    AfterValidator(_cidr),
    Field(json_schema_extra=CIDR_SCHEMA),
]
Port = Annotated[int, Field(ge=0, le=65535)]
Score = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Millis = Annotated[int, Field(ge=0, le=MAX_MS)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]


class VerdictIn(BaseModel):
    """One object of `flowguard triage --format jsonl` (unknown fields are ignored)."""

    model_config = ConfigDict(extra="ignore")

    pcap: LongText = ""
    src_ip: IPAddressText
    src_port: Port
    dst_ip: IPAddressText
    dst_port: Port
    protocol: Annotated[int, Field(ge=0, le=255, description="IANA protocol number")]
    first_seen_ms: Millis
    last_seen_ms: Millis
    packets: Count = 0
    bytes: Count = 0
    application_name: ShortText = ""
    verdict: VerdictClass
    score: Score
    scores: dict[VerdictClass, Score] = Field(default_factory=dict)
    model: ShortText = ""

    @model_validator(mode="after")
    def _times(self) -> VerdictIn:
        if self.first_seen_ms > self.last_seen_ms:
            raise ValueError("first_seen_ms must not be after last_seen_ms")
        return self

    def to_flow(self) -> FlowVerdict:
        return FlowVerdict(**self.model_dump())


class VerdictBatch(BaseModel):
    """The object form of a batch: the verdicts and, optionally, who sends them."""

    verdicts: Annotated[list[VerdictIn], Field(max_length=MAX_BATCH)]
    source: ShortText | None = None


def _batch_kind(value: Any) -> str:
    return "list" if isinstance(value, list) else "batch"


VerdictsBody = Annotated[
    Annotated[Annotated[list[VerdictIn], Field(max_length=MAX_BATCH)], Tag("list")]
    | Annotated[VerdictBatch, Tag("batch")],
    Discriminator(_batch_kind),
]
"""A JSON list of verdicts, or {"verdicts": [...], "source": "..."}."""


class FeedbackIn(BaseModel):
    """An analyst's judgement of a verdict: true_positive, false_positive, or the correct class."""

    label: Literal["true_positive", "false_positive", "benign", "stratum_mining", "reverse_tunnel"]
    note: LongText = ""
    analyst: ShortText = ""


class AllowIn(BaseModel):
    """A CIDR (or one address) never to block."""

    cidr: CIDRText
    note: LongText = ""


class ErrorBody(BaseModel):
    """The shape of every error response."""

    ok: Literal[False] = False
    status: int
    error: str
    errors: list[str] = Field(default_factory=list)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (401, "No API key, or not a valid one"),
        (403, "Refused (no API keys configured on the server)"),
        (404, "Not found"),
        (413, "Request body too large"),
        (422, "Invalid request"),
        (429, "Too many write requests for this key"),
    )
}


def error_response(
    status: int, error: str, errors: list[str] | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The one error shape, as a response."""
    body = ErrorBody(status=status, error=error, errors=errors or [])
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def describe_validation(errors: list[Any]) -> list[str]:
    """Pydantic's errors as "where: what" lines (the union tags of VerdictsBody left out)."""
    lines = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        if len(loc) > 1 and loc[0] == "body" and loc[1] in ("list", "batch"):
            del loc[1]
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        lines.append(f"{'.'.join(loc)}: {message}" if loc else message)
    return lines


class ApiError(Exception):
    """An error a route answers with the error shape."""

    def __init__(self, status: int, error: str, errors: list[str] | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.errors = status, error, errors or []
