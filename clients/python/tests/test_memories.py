"""`client.memories` against the real server."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mnemo_client import ConflictError, Memory, Mnemo, NewMemory, NotFoundError, SearchFilter

from .conftest import unit_vector


def test_create_then_get_returns_the_same_memory(tenant_a: Mnemo) -> None:
    created = tenant_a.memories.create(
        {"text": "The user prefers dark mode."},
        memory_id="mem-create-get",
        tags=["prefs"],
        metadata={"source": "chat"},
        relevance_score=0.7,
    )
    fetched = tenant_a.memories.get("mem-create-get")
    assert isinstance(fetched, Memory)
    assert fetched.memory_id == created.memory_id == "mem-create-get"
    assert fetched.content == {"text": "The user prefers dark mode."}
    assert fetched.tags == ["prefs"]
    assert fetched.metadata == {"source": "chat"}
    assert fetched.relevance_score == pytest.approx(0.7)
    assert fetched.has_embedding and fetched.embedding is None


def test_content_may_be_any_json_value_but_null(tenant: Mnemo) -> None:
    for i, content in enumerate(["a string", 42, [1, "two"], {"nested": {"x": True}}]):
        assert tenant.memories.create(content, memory_id=f"any-{i}").content == content


def test_create_without_memory_id_gets_one_from_the_server(tenant: Mnemo) -> None:
    assert tenant.memories.create("no id given").memory_id


def test_include_embedding_returns_the_vector(tenant: Mnemo) -> None:
    tenant.memories.create("vector please", memory_id="v", embedding=unit_vector(3))
    m = tenant.memories.get("v", include_embedding=True)
    assert m.embedding is not None and len(m.embedding) == 384
    assert m.embedding[3] == pytest.approx(1.0)
    assert m.embedding_model == "client"


def test_update_changes_only_the_given_fields(tenant: Mnemo) -> None:
    tenant.memories.create({"text": "v1"}, memory_id="upd", tags=["a"], metadata={"k": 1})
    updated = tenant.memories.update("upd", relevance_score=0.9, tags=["a", "b"])
    assert updated.relevance_score == pytest.approx(0.9)
    assert updated.tags == ["a", "b"]
    assert updated.content == {"text": "v1"} and updated.metadata == {"k": 1}


def test_update_with_none_clears_expiry_and_embedding(tenant: Mnemo) -> None:
    later = datetime.now(timezone.utc) + timedelta(days=1)
    tenant.memories.create("expiring", memory_id="exp", expires_at=later)
    assert tenant.memories.get("exp").expires_at is not None
    cleared = tenant.memories.update("exp", expires_at=None, embedding=None)
    assert cleared.expires_at is None
    assert cleared.has_embedding is False


def test_upsert_creates_then_replaces(tenant: Mnemo) -> None:
    first = tenant.memories.upsert("profile", {"theme": "dark"}, tags=["p"])
    second = tenant.memories.upsert("profile", {"theme": "light"})
    assert first.content == {"theme": "dark"}
    assert second.content == {"theme": "light"} and second.tags == []
    assert tenant.memories.get("profile").content == {"theme": "light"}


def test_delete_removes_the_memory(tenant: Mnemo) -> None:
    tenant.memories.create("bye", memory_id="gone")
    assert tenant.memories.delete("gone") is None
    with pytest.raises(NotFoundError):
        tenant.memories.get("gone")


def test_ids_with_slashes_and_spaces_are_sent_as_one_path_segment(tenant: Mnemo) -> None:
    tenant.memories.create("odd id", memory_id="notes/2024 q1?#")
    assert tenant.memories.get("notes/2024 q1?#").memory_id == "notes/2024 q1?#"


def test_batch_creates_all_given_as_dicts_or_models(tenant: Mnemo) -> None:
    made = tenant.memories.batch(
        [
            {"content": "first", "memory_id": "b1"},
            NewMemory(content="second", memory_id="b2", tags=["x"]),
        ]
    )
    assert [m.memory_id for m in made] == ["b1", "b2"]
    assert tenant.memories.get("b2").tags == ["x"]


def test_batch_is_all_or_nothing(tenant: Mnemo) -> None:
    tenant.memories.create("taken", memory_id="dup")
    with pytest.raises(ConflictError):
        tenant.memories.batch(
            [{"content": "new", "memory_id": "fresh"}, {"content": "x", "memory_id": "dup"}]
        )
    with pytest.raises(NotFoundError):
        tenant.memories.get("fresh")


def test_list_iterates_every_page_newest_first(tenant: Mnemo) -> None:
    tenant.memories.batch([{"content": f"item {i}", "memory_id": f"p{i}"} for i in range(7)])
    listing = tenant.memories.list(limit=3)
    pages = list(listing.pages())
    assert [len(p.items) for p in pages] == [3, 3, 1]
    assert pages[-1].next_cursor is None
    ids = [m.memory_id for m in tenant.memories.list(limit=3)]
    assert sorted(ids) == sorted(f"p{i}" for i in range(7))
    assert len(set(ids)) == 7


def test_list_page_and_cursor_continue_where_the_last_page_stopped(tenant: Mnemo) -> None:
    tenant.memories.batch([{"content": f"c{i}"} for i in range(4)])
    first = tenant.memories.list_page(limit=2)
    rest = list(tenant.memories.list(limit=2, cursor=first.next_cursor))
    assert len(first.items) == 2 and len(rest) == 2
    assert not {m.memory_id for m in first.items} & {m.memory_id for m in rest}


def test_list_filters_by_tags_contains_and_relevance(tenant: Mnemo) -> None:
    tenant.memories.batch(
        [
            {
                "content": {"outcome": "success"},
                "memory_id": "f1",
                "tags": ["a", "b"],
                "relevance_score": 0.9,
            },
            {
                "content": {"outcome": "failure"},
                "memory_id": "f2",
                "tags": ["a"],
                "relevance_score": 0.2,
            },
            {
                "content": {"outcome": "success"},
                "memory_id": "f3",
                "tags": ["c"],
                "relevance_score": 0.5,
            },
        ]
    )
    ids = lambda it: sorted(m.memory_id for m in it)  # noqa: E731
    assert ids(tenant.memories.list(tags=["a", "b"])) == ["f1"]
    assert ids(tenant.memories.list(any_tags=["b", "c"])) == ["f1", "f3"]
    assert ids(tenant.memories.list(contains={"outcome": "success"})) == ["f1", "f3"]
    assert ids(tenant.memories.list(min_relevance=0.4, max_relevance=0.6)) == ["f3"]
    future = datetime.now(timezone.utc) + timedelta(hours=1)
    assert ids(tenant.memories.list(created_after=future)) == []
    assert ids(tenant.memories.list(created_before=future)) == ["f1", "f2", "f3"]


def test_search_finds_by_meaning_in_each_mode(tenant: Mnemo) -> None:
    tenant.memories.create(
        {"text": "The user prefers dark mode in every editor."}, memory_id="dark"
    )
    tenant.memories.create({"text": "Paris is the capital of France."}, memory_id="paris")
    hybrid = tenant.memories.search("UI theme preference", k=5)
    assert hybrid.mode == "hybrid"
    assert hybrid.results[0].memory.memory_id == "dark"
    vector = tenant.memories.search("which colour scheme does the user like", mode="vector", k=1)
    assert [h.memory.memory_id for h in vector.results] == ["dark"]
    assert vector.results[0].similarity is not None and vector.strategy == "exact"
    text = tenant.memories.search("capital", mode="text")
    assert [h.memory.memory_id for h in text.results] == ["paris"]


def test_search_by_vector_with_filter_and_min_similarity(tenant: Mnemo) -> None:
    tenant.memories.create("x", memory_id="x", embedding=unit_vector(1), tags=["keep"])
    tenant.memories.create("y", memory_id="y", embedding=unit_vector(2), tags=["drop"])
    hits = tenant.memories.search(vector=unit_vector(1), filter=SearchFilter(tags=["keep"]), k=5)
    assert [h.memory.memory_id for h in hits.results] == ["x"]
    close = tenant.memories.search(
        vector=unit_vector(2), min_similarity=0.99, filter={"any_tags": ["keep", "drop"]}
    )
    assert [h.memory.memory_id for h in close.results] == ["y"]


def test_search_expand_attaches_graph_neighbours(tenant: Mnemo) -> None:
    tenant.memories.create("root", memory_id="r", embedding=unit_vector(5))
    tenant.memories.create("leaf", memory_id="l", embedding=unit_vector(6))
    tenant.relationships.create("r", "l", "mentions")
    hit = tenant.memories.search(vector=unit_vector(5), k=1, expand=True).results[0]
    assert hit.related is not None
    assert [r.memory.memory_id for r in hit.related] == ["l"]
