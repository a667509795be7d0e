"""`client.relationships`, `memories.neighbours` and `memories.graph`."""

from __future__ import annotations

import pytest

from mnemo_client import ConflictError, Mnemo, NotFoundError


def _chain(client: Mnemo) -> None:
    client.memories.batch([{"content": n, "memory_id": n} for n in ("a", "b", "c", "d")])
    client.relationships.create("a", "b", "supports", weight=0.9, metadata={"why": "test"})
    client.relationships.create("b", "c", "supports")
    client.relationships.create("c", "a", "contradicts")  # a cycle
    client.relationships.create("d", "a", "mentions")


def test_relationship_create_get_delete(tenant: Mnemo) -> None:
    tenant.memories.batch([{"content": "s", "memory_id": "s"}, {"content": "t", "memory_id": "t"}])
    rel = tenant.relationships.create("s", "t", "supports", weight=0.5, metadata={"k": "v"})
    assert (rel.source, rel.target, rel.relationship_type) == ("s", "t", "supports")
    assert rel.weight == pytest.approx(0.5) and rel.metadata == {"k": "v"}
    assert tenant.relationships.get(rel.id) == rel
    tenant.relationships.delete(rel.id)
    with pytest.raises(NotFoundError):
        tenant.relationships.get(rel.id)


def test_duplicate_relationship_is_a_conflict(tenant: Mnemo) -> None:
    tenant.memories.batch([{"content": "s", "memory_id": "s"}, {"content": "t", "memory_id": "t"}])
    tenant.relationships.create("s", "t", "supports")
    with pytest.raises(ConflictError) as e:
        tenant.relationships.create("s", "t", "supports")
    assert e.value.code == "relationship_exists"


def test_relationship_to_a_missing_memory_is_not_found(tenant: Mnemo) -> None:
    tenant.memories.create("s", memory_id="s")
    with pytest.raises(NotFoundError):
        tenant.relationships.create("s", "nowhere", "supports")


def test_neighbours_by_direction_and_type(tenant: Mnemo) -> None:
    _chain(tenant)
    both = tenant.memories.neighbours("a")
    assert both.memory_id == "a" and len(both.relationships) == 3
    out = tenant.memories.neighbours("a", direction="out")
    assert [(r.source, r.target) for r in out.relationships] == [("a", "b")]
    incoming = tenant.memories.neighbours("a", direction="in", relationship_type="mentions")
    assert [r.source for r in incoming.relationships] == ["d"]


def test_graph_walks_to_the_given_depth_and_survives_cycles(tenant: Mnemo) -> None:
    _chain(tenant)
    g = tenant.memories.graph("a", depth=3, direction="out")
    assert g.root == "a"
    depths = {n.memory.memory_id: n.depth for n in g.nodes}
    assert depths == {"a": 0, "b": 1, "c": 2}
    assert len(g.edges) == 3
    shallow = tenant.memories.graph("a", depth=1, direction="both", max_nodes=10)
    assert {n.memory.memory_id for n in shallow.nodes} == {"a", "b", "c", "d"}
