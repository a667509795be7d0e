"""Transport: one request description (:class:`Call`), sent by a sync or an async sender with
bounded retries.

Retry policy (``max_retries`` extra attempts, default 2):

* **429** ``rate_limited`` is retried for every operation. The rate limiter refuses a request while
  authenticating it, before its handler runs, so nothing of it took effect.
* **503** is retried for operations safe to repeat: reads (including ``POST /v1/memories/search``),
  ``PUT``, ``PATCH``, ``DELETE`` and maintenance. Other ``POST`` creates are retried on 503 only for
  ``embedding_unavailable`` (embeddings are computed before any transaction opens) and
  ``statement_timeout`` (the transaction was rolled back). ``database_unavailable`` can also mean
  the connection broke while committing, so a create answered so is *not* retried: it is raised,
  and the caller decides (a create with a ``memory_id`` answers 409 ``memory_exists`` if it had
  committed).
* Connection failures before anything was sent (connect errors) are retried for every operation;
  timeouts and broken connections after sending only for operations safe to repeat.

The wait is the server's ``Retry-After`` when it sends one (a wait longer than
``max_retry_wait`` is not waited for: the error is raised), otherwise exponential backoff with full
jitter: ``random(0, min(backoff_max, backoff_base * 2**attempt))``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Generic, TypeVar

import httpx

from ._errors import APIConnectionError, APIError, APITimeoutError, MnemoError, error_from_response
from ._version import __version__

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 2

# Codes of 503 answers given before any effect of the request (see the module docs).
_NO_EFFECT_503 = frozenset({"embedding_unavailable", "statement_timeout"})


class _Omit:
    """Marks an argument that was not given (as opposed to ``None``, which sends JSON null)."""

    _instance: _Omit | None = None

    def __new__(cls) -> _Omit:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "OMIT"

    def __bool__(self) -> bool:
        return False


OMIT: Any = _Omit()
"""Default of optional update fields: the field is left out of the request."""


def jsonable(value: Any) -> Any:
    """Request JSON for ``value``: datetimes as RFC 3339 (naive ones taken as UTC), models as
    dicts."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "model_dump"):
        return jsonable(value.model_dump(exclude_none=True, exclude_unset=False))
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items() if v is not OMIT}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def body(**fields: Any) -> dict[str, Any]:
    """A JSON object of the given fields, leaving out those that are ``OMIT``."""
    return {k: jsonable(v) for k, v in fields.items() if v is not OMIT}


def query(**params: Any) -> dict[str, Any]:
    """Query parameters, leaving out ``None``; lists comma-joined, booleans lowercase."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        if v is None or v is OMIT:
            continue
        if isinstance(v, bool):
            out[k] = "true" if v else "false"
        elif isinstance(v, (list, tuple)):
            out[k] = ",".join(str(x) for x in v)
        elif isinstance(v, datetime):
            out[k] = jsonable(v)
        else:
            out[k] = v
    return out


def segment(value: str) -> str:
    """A path segment, percent-encoded (ids may hold any character)."""
    from urllib.parse import quote

    if not isinstance(value, str) or value == "":
        raise ValueError("an id must be a non-empty string")
    return quote(value, safe="")


R = TypeVar("R")


@dataclass
class Call(Generic[R]):
    """One API operation: what to send, whether repeating it is harmless, how to read the answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], R]
    params: dict[str, Any] | None = None
    json: Any = None
    idempotent: bool = True
    admin: bool = False
    accept: frozenset[int] = frozenset()
    """Error statuses whose body ``parse`` reads instead of raising."""


@dataclass
class Options:
    base_url: str
    api_key: str | None
    admin_key: str | None
    timeout: float | httpx.Timeout
    max_retries: int
    backoff_base: float
    backoff_max: float
    max_retry_wait: float
    headers: dict[str, str]


def resolve_options(
    base_url: str | None,
    api_key: str | None,
    admin_key: str | None,
    timeout: float | httpx.Timeout | None,
    max_retries: int,
    backoff_base: float,
    backoff_max: float,
    max_retry_wait: float,
    headers: Mapping[str, str] | None,
) -> Options:
    if max_retries < 0:
        raise ValueError("max_retries must be 0 or more")
    return Options(
        base_url=(base_url or os.environ.get("MNEMO_URL") or DEFAULT_URL).rstrip("/"),
        api_key=api_key if api_key is not None else os.environ.get("MNEMO_API_KEY"),
        admin_key=admin_key if admin_key is not None else os.environ.get("MNEMO_ADMIN_KEY"),
        timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
        max_retries=max_retries,
        backoff_base=backoff_base,
        backoff_max=backoff_max,
        max_retry_wait=max_retry_wait,
        headers=dict(headers or {}),
    )


def request_headers(options: Options, call: Call[Any]) -> dict[str, str]:
    headers = {"user-agent": f"mnemo-client-python/{__version__}", "accept": "application/json"}
    headers.update(options.headers)
    key = options.admin_key if call.admin else options.api_key
    if call.admin and not key:
        raise MnemoError(
            "an admin operation needs the admin key: pass admin_key= or set MNEMO_ADMIN_KEY"
        )
    if key:
        headers["authorization"] = f"Bearer {key}"
    return headers


def retry_delay(
    options: Options, call: Call[Any], attempt: int, outcome: APIError | Exception
) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``, or ``None`` when the failure is final."""
    if attempt >= options.max_retries:
        return None
    if isinstance(outcome, APIError):
        if outcome.status == 429:
            pass
        elif outcome.status == 503:
            if not call.idempotent and outcome.code not in _NO_EFFECT_503:
                return None
        else:
            return None
        if outcome.retry_after is not None:
            if outcome.retry_after > options.max_retry_wait:
                return None
            return outcome.retry_after
    elif isinstance(outcome, (httpx.ConnectError, httpx.ConnectTimeout)):
        pass
    elif isinstance(outcome, httpx.TransportError):
        if not call.idempotent:
            return None
    else:
        return None
    ceiling = min(options.backoff_max, options.backoff_base * (2**attempt))
    return random.uniform(0, ceiling)


def wrap_transport_error(e: httpx.TransportError) -> APIConnectionError:
    request = None
    with contextlib.suppress(RuntimeError):
        request = e.request
    if isinstance(e, httpx.TimeoutException):
        return APITimeoutError(f"request timed out: {e}", request=request)
    return APIConnectionError(f"connection failed: {e}", request=request)


def build(
    client: httpx.Client | httpx.AsyncClient, options: Options, call: Call[Any]
) -> httpx.Request:
    return client.build_request(
        call.method,
        options.base_url + call.path,
        params=call.params,
        json=call.json,
        headers=request_headers(options, call),
        timeout=options.timeout,
    )


def finish(call: Call[R], response: httpx.Response) -> R:
    if response.status_code >= 400 and response.status_code not in call.accept:
        raise error_from_response(response)
    return call.parse(response)


class SyncSender:
    """Sends :class:`Call`s over an :class:`httpx.Client`, retrying per the module's policy."""

    def __init__(self, options: Options, http_client: httpx.Client | None) -> None:
        self.options = options
        self._owns_client = http_client is None
        self.http = http_client or httpx.Client(timeout=options.timeout)
        self.sleep: Callable[[float], None] = time.sleep

    def send(self, call: Call[R]) -> R:
        attempt = 0
        while True:
            request = build(self.http, self.options, call)
            try:
                response = self.http.send(request)
            except httpx.TransportError as e:
                delay = retry_delay(self.options, call, attempt, e)
                if delay is None:
                    raise wrap_transport_error(e) from e
            else:
                try:
                    return finish(call, response)
                except APIError as e:
                    delay = retry_delay(self.options, call, attempt, e)
                    if delay is None:
                        raise
            self.sleep(delay)
            attempt += 1

    def close(self) -> None:
        if self._owns_client:
            self.http.close()


class AsyncSender:
    """Sends :class:`Call`s over an :class:`httpx.AsyncClient`, retrying per the module's policy."""

    def __init__(self, options: Options, http_client: httpx.AsyncClient | None) -> None:
        self.options = options
        self._owns_client = http_client is None
        self.http = http_client or httpx.AsyncClient(timeout=options.timeout)
        self.sleep: Callable[[float], Any] = asyncio.sleep

    async def send(self, call: Call[R]) -> R:
        attempt = 0
        while True:
            request = build(self.http, self.options, call)
            try:
                response = await self.http.send(request)
            except httpx.TransportError as e:
                delay = retry_delay(self.options, call, attempt, e)
                if delay is None:
                    raise wrap_transport_error(e) from e
            else:
                try:
                    return finish(call, response)
                except APIError as e:
                    delay = retry_delay(self.options, call, attempt, e)
                    if delay is None:
                        raise
            await self.sleep(delay)
            attempt += 1

    async def aclose(self) -> None:
        if self._owns_client:
            await self.http.aclose()
