"""API keys: who may write, who may read, and which bouncer is pulling the stream.

A key is sent as `X-Api-Key: KEY` (what CrowdSec bouncers send) or `Authorization: Bearer KEY`.
The service keeps and compares only sha256 digests of keys and never logs them. Every write needs a
valid key; reads need one when `read_requires_key` is set, and a key that is sent is checked even
where none is needed. With no keys configured, writes are refused with a message saying how to set
them, unless `insecure_no_auth` is set (throwaway labs).
"""

from __future__ import annotations

import hmac
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from flowguard.config import Settings, hash_key

NO_KEYS = (
    "this service has no API keys, so it refuses writes: set FLOWGUARD_API_KEYS=KEY[,KEY...] "
    "(each at least 16 characters; make one with `python -c 'import secrets; "
    "print(secrets.token_urlsafe(32))'`) or api_keys in the config file, restart, and send the key "
    "as X-Api-Key: KEY or Authorization: Bearer KEY"
)
MISSING = "an API key is required: send X-Api-Key: KEY or Authorization: Bearer KEY"
INVALID = "the API key is not valid"


class AuthError(Exception):
    """A request without the key it needs; the app answers it with the error shape."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class Caller:
    """Who is calling: the key's digest (None when no key was sent) and a short label for records."""

    key_hash: str | None

    @property
    def label(self) -> str:
        return f"key:{self.key_hash[7:15]}" if self.key_hash else "anonymous"


class KeyChecker:
    def __init__(self, settings: Settings) -> None:
        self._hashes = tuple(settings.api_keys)
        self.insecure = settings.insecure_no_auth and not self._hashes
        self.read_requires_key = settings.read_requires_key

    def _known(self, digest: str) -> bool:
        found = False
        for known in self._hashes:  # compare with every key, in constant time each
            found |= hmac.compare_digest(known, digest)
        return found

    def check(self, key: str | None, write: bool, identify: bool = False) -> Caller:
        """The caller, or AuthError (401 no/invalid key, 403 no keys configured).

        identify: a key is needed to tell callers apart (the CrowdSec stream), even for reads.
        """
        digest = hash_key(key) if key else None
        if self.insecure:
            return Caller(digest)
        needed = write or identify or self.read_requires_key
        if not self._hashes:
            if needed:
                raise AuthError(403, NO_KEYS)
            return Caller(None)
        if digest is None:
            if needed:
                raise AuthError(401, MISSING)
            return Caller(None)
        if not self._known(digest):
            raise AuthError(401, INVALID)
        return Caller(digest)


_api_key_header = APIKeyHeader(name="X-Api-Key", auto_error=False, description="An API key.")
_bearer = HTTPBearer(auto_error=False, description="An API key as a bearer token.")


async def presented_key(  # async: pure CPU, so FastAPI runs it without a threadpool hop
    x_api_key: Annotated[str | None, Security(_api_key_header)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
) -> str | None:
    """The key the request carries, if any (X-Api-Key first)."""
    if x_api_key:
        return x_api_key
    if bearer is not None and bearer.credentials:
        return bearer.credentials
    return None


def _checker(request: Request) -> KeyChecker:
    checker: KeyChecker = request.app.state.keys
    return checker


class WriteLimiter:
    """A token bucket per caller: `per_minute` tokens, refilled evenly; one per write request."""

    def __init__(self, per_minute: int, clock: Callable[[], datetime]) -> None:
        self.per_minute, self.clock = per_minute, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, caller: str) -> float:
        """0 when the request may go ahead, else the seconds until it may."""
        if self.per_minute <= 0:
            return 0.0
        now = self.clock().timestamp()
        rate = self.per_minute / 60.0
        with self._lock:
            tokens, at = self._buckets.get(caller, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + max(0.0, now - at) * rate)
            if tokens >= 1.0:
                self._buckets[caller] = (tokens - 1.0, now)
                return 0.0
            self._buckets[caller] = (tokens, now)
            return (1.0 - tokens) / rate


def _writer(request: Request, key: Annotated[str | None, Depends(presented_key)]) -> Caller:
    caller = _checker(request).check(key, write=True)
    limiter: WriteLimiter | None = getattr(request.app.state, "write_limiter", None)
    if limiter is not None:
        wait = limiter.take(caller.key_hash or "anonymous")
        if wait > 0:
            raise AuthError(429, f"too many write requests for this key: at most "
                                 f"{limiter.per_minute} a minute (setting write_requests_per_minute); "
                                 f"retry in {math.ceil(wait)} s", retry_after=math.ceil(wait))
    return caller


async def _reader(request: Request, key: Annotated[str | None, Depends(presented_key)]) -> Caller:
    return _checker(request).check(key, write=False)


async def _bouncer(request: Request, key: Annotated[str | None, Depends(presented_key)]) -> Caller:
    return _checker(request).check(key, write=False, identify=True)


Writer = Annotated[Caller, Depends(_writer)]
Reader = Annotated[Caller, Depends(_reader)]
Bouncer = Annotated[Caller, Depends(_bouncer)]
