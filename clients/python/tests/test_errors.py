"""Every exception type, reached through the real server where the server can produce it."""

from __future__ import annotations

import pytest

from mnemo_client import (
    APIConnectionError,
    APIError,
    BadRequestError,
    ConflictError,
    ForbiddenError,
    Mnemo,
    NotFoundError,
    PayloadTooLargeError,
    QuotaExceededError,
    RateLimitedError,
    ServiceUnavailableError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
    ValidationError,
)

from .conftest import Server, TenantFactory, _free_port


def test_not_found_carries_code_message_status_and_request_id(tenant_a: Mnemo) -> None:
    with pytest.raises(NotFoundError) as e:
        tenant_a.memories.get("does-not-exist")
    err = e.value
    assert (err.status, err.code) == (404, "memory_not_found")
    assert err.message and err.request_id
    assert isinstance(err, APIError)


def test_bad_cursor_is_a_bad_request(tenant_a: Mnemo) -> None:
    with pytest.raises(BadRequestError) as e:
        tenant_a.memories.list_page(cursor="not-a-cursor")
    assert (e.value.status, e.value.code) == (400, "invalid_cursor")


def test_wrong_key_is_unauthorized(server: Server) -> None:
    with pytest.raises(UnauthorizedError) as e:
        Mnemo(server.url, api_key="mnemo_sk_wrong").memories.get("x")
    assert e.value.status == 401 and e.value.code == "unauthorized"


def test_missing_scope_is_forbidden(new_tenant: TenantFactory) -> None:
    reader = new_tenant(scopes=["memories:read"])
    with pytest.raises(ForbiddenError) as e:
        reader.memories.create("not allowed")
    assert (e.value.status, e.value.code) == (403, "insufficient_scope")
    assert not isinstance(e.value, QuotaExceededError)


def test_quota_is_quota_exceeded_and_nothing_is_kept(new_tenant: TenantFactory) -> None:
    small = new_tenant(max_memories=1)
    small.memories.create("fits", memory_id="q1")
    with pytest.raises(QuotaExceededError) as e:
        small.memories.create("does not fit", memory_id="q2")
    assert isinstance(e.value, ForbiddenError) and e.value.code == "quota_exceeded"
    with pytest.raises(NotFoundError):
        small.memories.get("q2")


def test_existing_memory_id_is_a_conflict(tenant_a: Mnemo) -> None:
    tenant_a.memories.create("once", memory_id="conflict-me")
    with pytest.raises(ConflictError) as e:
        tenant_a.memories.create("twice", memory_id="conflict-me")
    assert (e.value.status, e.value.code) == (409, "memory_exists")


def test_out_of_bounds_value_is_a_validation_error_naming_the_field(tenant_a: Mnemo) -> None:
    with pytest.raises(ValidationError) as e:
        tenant_a.memories.search("anything", k=1000)
    assert (e.value.status, e.value.code) == (422, "invalid_value")
    assert e.value.details == {"field": "k"}


def test_body_over_the_limit_is_payload_too_large(
    strict_server: Server, admin: Mnemo, project_id: str
) -> None:
    client = _strict_tenant(strict_server, project_id, "big")
    with pytest.raises(PayloadTooLargeError) as e:
        client.memories.create("x" * 10_000, embedding=[0.0] * 384)
    assert e.value.status == 413


def test_non_json_body_is_unsupported_media_type(server: Server, tenant_a: Mnemo) -> None:
    odd = Mnemo(
        server.url, api_key=tenant_a._options.api_key, headers={"content-type": "text/plain"}
    )
    with pytest.raises(UnsupportedMediaTypeError) as e:
        odd.memories.create("plain")
    assert e.value.status == 415


def test_second_request_within_the_rate_is_rate_limited_with_retry_after(
    strict_server: Server, project_id: str
) -> None:
    client = _strict_tenant(strict_server, project_id, "rl", max_retries=0)
    with pytest.raises(RateLimitedError) as e:
        for _ in range(3):
            client.usage.get()
    assert (e.value.status, e.value.code) == (429, "rate_limited")
    assert e.value.details == {"limit": "api_key"}
    assert e.value.retry_after is not None and e.value.retry_after >= 1


def test_unreachable_embedder_is_service_unavailable(
    strict_server: Server, project_id: str
) -> None:
    client = _strict_tenant(strict_server, project_id, "embed", max_retries=0)
    with pytest.raises(ServiceUnavailableError) as e:
        client.memories.create("needs an embedding")
    assert (e.value.status, e.value.code) == (503, "embedding_unavailable")


def test_nothing_listening_is_a_connection_error() -> None:
    client = Mnemo(f"http://127.0.0.1:{_free_port()}", api_key="k", max_retries=0)
    with pytest.raises(APIConnectionError):
        client.memories.get("x")


def _strict_tenant(strict: Server, project_id: str, prefix: str, **kwargs: object) -> Mnemo:
    import uuid

    tid = f"{prefix}-{uuid.uuid4().hex[:8]}"
    with strict.admin() as a:
        a.admin.tenants.create(tid, project_id, tid)
        key = a.admin.keys.create(tid, "strict", ["*"])
    return Mnemo(strict.url, api_key=key.secret, **kwargs)  # type: ignore[arg-type]
