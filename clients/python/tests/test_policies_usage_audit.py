"""`client.policies`, `client.usage` and `client.audit`."""

from __future__ import annotations

import pytest

from mnemo_client import ConflictError, ForbiddenError, Mnemo, NotFoundError


def test_policy_create_get_update_delete(tenant: Mnemo) -> None:
    p = tenant.policies.create("notes", "memories", ["read", "write"], resource_pattern="notes-*")
    assert (p.name, p.resource_pattern, p.permissions, p.is_active) == (
        "notes",
        "notes-*",
        ["read", "write"],
        True,
    )
    assert tenant.policies.get(p.id) == p
    assert tenant.policies.update(p.id, is_active=False).is_active is False
    tenant.policies.delete(p.id)
    with pytest.raises(NotFoundError):
        tenant.policies.get(p.id)


def test_policy_names_are_unique(tenant: Mnemo) -> None:
    tenant.policies.create("same", "memories", ["read"])
    with pytest.raises(ConflictError) as e:
        tenant.policies.create("same", "memories", ["read"])
    assert e.value.code == "policy_exists"


def test_policies_list_pages_oldest_first(tenant: Mnemo) -> None:
    for i in range(5):
        tenant.policies.create(f"p{i}", "memories", ["read"], is_active=False)
    assert [p.name for p in tenant.policies.list(limit=2)] == [f"p{i}" for i in range(5)]
    assert len(list(tenant.policies.list(limit=2).pages())) == 3


def test_an_active_policy_narrows_what_the_key_may_do(tenant: Mnemo) -> None:
    tenant.memories.create("secret", memory_id="private-1")
    tenant.memories.create("note", memory_id="notes-1")
    tenant.policies.create("notes only", "memories", ["read"], resource_pattern="notes-*")
    assert tenant.memories.get("notes-1").memory_id == "notes-1"
    with pytest.raises(ForbiddenError) as e:
        tenant.memories.get("private-1")
    assert e.value.code == "policy_denied"


def test_usage_counts_the_tenants_memories(tenant: Mnemo) -> None:
    assert tenant.usage.get().active_memories == 0
    tenant.memories.batch([{"content": "one"}, {"content": "two"}])
    usage = tenant.usage.get()
    assert usage.active_memories == 2 and usage.embedded_memories == 2
    assert usage.quota_bytes > 0


def test_audit_lists_the_tenants_own_operations_with_filters(tenant: Mnemo) -> None:
    tenant.memories.create("audited", memory_id="aud")
    with pytest.raises(NotFoundError):
        tenant.memories.get("missing")
    creates = list(tenant.audit.list(action="memory.create"))
    assert [r.resource_id for r in creates] == ["aud"]
    assert creates[0].outcome == "success"
    denied = list(tenant.audit.list(outcome="not_found"))
    assert [r.resource_id for r in denied] == ["missing"]
    assert len(list(tenant.audit.list(limit=1).pages())) >= 2


def test_request_id_set_with_with_options_reaches_the_audit_trail(tenant: Mnemo) -> None:
    tagged = tenant.with_options(headers={"x-request-id": "py-req-42"})
    tagged.memories.create("tagged", memory_id="tagged")
    assert tagged._sender.http is tenant._sender.http  # one connection pool
    records = list(tenant.audit.list(request_id="py-req-42"))
    assert [r.action for r in records] == ["memory.create"]
