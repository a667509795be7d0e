"""Retries: 429 and 503 with Retry-After, backoff, which operations are repeated, timeouts.

Most use a stub transport (httpx.MockTransport) that answers from a script, so the number of
attempts and the waits are exact; one runs against the real server's rate limiter."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

import httpx
import pytest

from mnemo_client import (
    APITimeoutError,
    AsyncMnemo,
    Mnemo,
    NotFoundError,
    RateLimitedError,
    ServiceUnavailableError,
)

from .conftest import Server

MEMORY = {
    "memory_id": "m1",
    "content": "hi",
    "relevance_score": 0.5,
    "tags": [],
    "metadata": {},
    "has_embedding": True,
    "created_at": "2026-01-01T00:00:00Z",
    "updated_at": "2026-01-01T00:00:00Z",
}


def _error(status: int, code: str, retry_after: str | None = None) -> httpx.Response:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    return httpx.Response(status, json={"error": {"code": code, "message": code}}, headers=headers)


class Script:
    """Answers requests in order and records them."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answers.pop(0)


def _client(script: Callable[[httpx.Request], httpx.Response], **kwargs: object) -> tuple:  # type: ignore[type-arg]
    client = Mnemo(
        "http://mnemo.test",
        api_key="k",
        http_client=httpx.Client(transport=httpx.MockTransport(script)),
        **kwargs,  # type: ignore[arg-type]
    )
    waits: list[float] = []
    client._sender.sleep = waits.append
    return client, waits


def test_429_is_retried_after_the_retry_after_delay() -> None:
    script = Script(_error(429, "rate_limited", "3"), httpx.Response(200, json=MEMORY))
    client, waits = _client(script)
    assert client.memories.get("m1").memory_id == "m1"
    assert waits == [3.0] and len(script.requests) == 2


def test_429_on_a_create_is_retried_because_nothing_was_done() -> None:
    script = Script(_error(429, "rate_limited", "1"), httpx.Response(201, json=MEMORY))
    client, waits = _client(script)
    assert client.memories.create("hi").memory_id == "m1"
    assert waits == [1.0]
    assert [r.method for r in script.requests] == ["POST", "POST"]


def test_retries_are_bounded_then_the_error_is_raised() -> None:
    script = Script(*[_error(429, "rate_limited", "1") for _ in range(3)])
    client, waits = _client(script, max_retries=2)
    with pytest.raises(RateLimitedError) as e:
        client.memories.get("m1")
    assert waits == [1.0, 1.0] and len(script.requests) == 3
    assert e.value.retry_after == 1.0


def test_a_retry_after_longer_than_max_retry_wait_is_not_waited_for() -> None:
    script = Script(_error(429, "rate_limited", "120"))
    client, waits = _client(script, max_retry_wait=30)
    with pytest.raises(RateLimitedError):
        client.memories.get("m1")
    assert waits == []


def test_without_retry_after_backoff_is_exponential_with_jitter() -> None:
    script = Script(*[_error(503, "statement_timeout") for _ in range(4)])
    client, waits = _client(script, max_retries=3, backoff_base=0.5, backoff_max=1.5)
    with pytest.raises(ServiceUnavailableError):
        client.memories.get("m1")
    assert len(waits) == 3
    for wait, ceiling in zip(waits, [0.5, 1.0, 1.5], strict=False):
        assert 0 <= wait <= ceiling


def test_503_database_unavailable_is_retried_for_reads() -> None:
    script = Script(_error(503, "database_unavailable", "2"), httpx.Response(200, json=MEMORY))
    client, waits = _client(script)
    client.memories.get("m1")
    assert waits == [2.0]


def test_503_database_unavailable_is_not_retried_for_a_create() -> None:
    # The connection may have broken while committing: repeating could create twice.
    script = Script(_error(503, "database_unavailable", "2"), httpx.Response(201, json=MEMORY))
    client, waits = _client(script)
    with pytest.raises(ServiceUnavailableError) as e:
        client.memories.create("hi")
    assert e.value.code == "database_unavailable" and e.value.retry_after == 2.0
    assert waits == [] and len(script.requests) == 1


def test_503_embedding_unavailable_is_retried_for_a_create() -> None:
    script = Script(_error(503, "embedding_unavailable"), httpx.Response(201, json=MEMORY))
    client, waits = _client(script)
    client.memories.create("hi")
    assert len(waits) == 1 and len(script.requests) == 2


def test_search_is_a_post_that_is_safe_to_repeat() -> None:
    answer = {"mode": "hybrid", "results": []}
    script = Script(_error(503, "database_unavailable", "1"), httpx.Response(200, json=answer))
    client, waits = _client(script)
    assert client.memories.search("q").results == []
    assert waits == [1.0]


def test_other_errors_are_not_retried() -> None:
    script = Script(_error(404, "memory_not_found"))
    client, waits = _client(script)
    with pytest.raises(NotFoundError):
        client.memories.get("m1")
    assert waits == [] and len(script.requests) == 1


def test_a_timeout_is_retried_for_reads_and_then_raised_as_api_timeout() -> None:
    calls: list[httpx.Request] = []

    def slow(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadTimeout("slow", request=request)

    client, _ = _client(slow, max_retries=1)
    with pytest.raises(APITimeoutError):
        client.memories.get("m1")
    assert len(calls) == 2

    calls.clear()
    client, _ = _client(slow, max_retries=1)
    with pytest.raises(APITimeoutError):
        client.memories.create("hi")
    assert len(calls) == 1  # the create may have been received: not repeated


def test_retry_after_as_an_http_date_is_honoured() -> None:
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 5))
    script = Script(_error(429, "rate_limited", when), httpx.Response(200, json=MEMORY))
    client, waits = _client(script)
    client.memories.get("m1")
    assert 3.0 <= waits[0] <= 5.0


def test_requests_carry_the_key_and_json_body() -> None:
    script = Script(httpx.Response(201, json=MEMORY))
    client, _ = _client(script)
    client.memories.create({"text": "hi"}, memory_id="m1", tags=["t"])
    sent = script.requests[0]
    assert sent.headers["authorization"] == "Bearer k"
    assert sent.url.path == "/v1/memories"
    assert json.loads(sent.content) == {"content": {"text": "hi"}, "memory_id": "m1", "tags": ["t"]}


@pytest.mark.anyio
async def test_async_client_retries_429_after_retry_after() -> None:
    script = Script(_error(429, "rate_limited", "2"), httpx.Response(200, json=MEMORY))
    client = AsyncMnemo(
        "http://mnemo.test",
        api_key="k",
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(script)),
    )
    waits: list[float] = []

    async def record(s: float) -> None:
        waits.append(s)

    client._sender.sleep = record
    assert (await client.memories.get("m1")).memory_id == "m1"
    assert waits == [2.0]


def test_the_real_rate_limiter_is_waited_out(strict_server: Server, project_id: str) -> None:
    tid = f"wait-{uuid.uuid4().hex[:8]}"
    with strict_server.admin() as a:
        a.admin.tenants.create(tid, project_id, tid)
        key = a.admin.keys.create(tid, "strict", ["*"])
    client = Mnemo(strict_server.url, api_key=key.secret, max_retries=3)
    started = time.monotonic()
    for _ in range(2):
        assert client.usage.get().active_memories == 0
    assert time.monotonic() - started >= 0.5  # the second request waited for Retry-After
