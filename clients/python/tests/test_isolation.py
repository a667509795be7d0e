"""Two tenants' clients: neither sees the other's data, and the other's ids look unknown."""

from __future__ import annotations

import pytest

from mnemo_client import Mnemo, NotFoundError


@pytest.fixture(scope="module")
def a_data(tenant_a: Mnemo) -> dict:  # type: ignore[type-arg]
    tenant_a.memories.create({"text": "Tenant A's secret plan"}, memory_id="iso-a1", tags=["iso"])
    tenant_a.memories.create({"text": "Tenant A's second note"}, memory_id="iso-a2", tags=["iso"])
    rel = tenant_a.relationships.create("iso-a1", "iso-a2", "supports")
    pol = tenant_a.policies.create("iso-policy", "memories", ["read", "write", "delete"])
    return {"relationship": rel.id, "policy": pol.id}


def test_other_tenants_memory_is_not_found(tenant_b: Mnemo, a_data: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(NotFoundError) as e:
        tenant_b.memories.get("iso-a1")
    assert e.value.code == "memory_not_found"


def test_other_tenants_memory_cannot_be_updated_or_deleted(
    tenant_a: Mnemo, tenant_b: Mnemo, a_data: dict
) -> None:  # type: ignore[type-arg]
    with pytest.raises(NotFoundError):
        tenant_b.memories.update("iso-a1", tags=["stolen"])
    with pytest.raises(NotFoundError):
        tenant_b.memories.delete("iso-a1")
    assert tenant_a.memories.get("iso-a1").tags == ["iso"]


def test_other_tenants_graph_is_not_found(tenant_b: Mnemo, a_data: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(NotFoundError):
        tenant_b.memories.neighbours("iso-a1")
    with pytest.raises(NotFoundError):
        tenant_b.memories.graph("iso-a1")


def test_other_tenants_relationship_and_policy_ids_are_not_found(
    tenant_b: Mnemo, a_data: dict
) -> None:  # type: ignore[type-arg]
    with pytest.raises(NotFoundError):
        tenant_b.relationships.get(a_data["relationship"])
    with pytest.raises(NotFoundError):
        tenant_b.relationships.delete(a_data["relationship"])
    with pytest.raises(NotFoundError):
        tenant_b.policies.get(a_data["policy"])


def test_other_tenants_memories_never_appear_in_lists_or_searches(
    tenant_b: Mnemo, a_data: dict
) -> None:  # type: ignore[type-arg]
    assert [m for m in tenant_b.memories.list(tags=["iso"])] == []
    hits = tenant_b.memories.search("secret plan", k=100)
    assert all(not h.memory.memory_id.startswith("iso-a") for h in hits.results)
    assert all(p.name != "iso-policy" for p in tenant_b.policies.list())


def test_same_memory_id_in_two_tenants_is_two_memories(
    tenant_b: Mnemo, tenant_a: Mnemo, a_data: dict
) -> None:  # type: ignore[type-arg]
    tenant_b.memories.create({"text": "B's own"}, memory_id="iso-a1")
    assert tenant_b.memories.get("iso-a1").content == {"text": "B's own"}
    assert tenant_a.memories.get("iso-a1").content == {"text": "Tenant A's secret plan"}
