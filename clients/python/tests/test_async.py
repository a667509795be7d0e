"""`AsyncMnemo` against the real server."""

from __future__ import annotations

import asyncio

import pytest

from mnemo_client import AsyncMnemo, Mnemo, NotFoundError

from .conftest import Server, TenantFactory

pytestmark = pytest.mark.anyio


def _async_twin(server: Server, client: Mnemo) -> AsyncMnemo:
    return AsyncMnemo(server.url, api_key=client._options.api_key)


async def test_async_create_get_update_delete(server: Server, new_tenant: TenantFactory) -> None:
    async with _async_twin(server, new_tenant()) as client:
        m = await client.memories.create({"text": "async hello"}, memory_id="am")
        assert (await client.memories.get("am")).content == m.content
        assert (await client.memories.update("am", tags=["t"])).tags == ["t"]
        await client.memories.delete("am")
        with pytest.raises(NotFoundError):
            await client.memories.get("am")


async def test_async_list_iterates_every_page(server: Server, new_tenant: TenantFactory) -> None:
    async with _async_twin(server, new_tenant()) as client:
        await client.memories.batch([{"content": f"a{i}", "memory_id": f"a{i}"} for i in range(5)])
        ids = [m.memory_id async for m in client.memories.list(limit=2)]
        assert sorted(ids) == [f"a{i}" for i in range(5)]
        pages = [p async for p in client.memories.list(limit=2).pages()]
        assert [len(p.items) for p in pages] == [2, 2, 1]
        assert len(await client.memories.list(limit=4).to_list()) == 5


async def test_async_requests_run_concurrently(server: Server, new_tenant: TenantFactory) -> None:
    async with _async_twin(server, new_tenant()) as client:
        made = await asyncio.gather(
            *(client.memories.create(f"c{i}", memory_id=f"c{i}") for i in range(8))
        )
        assert sorted(m.memory_id for m in made) == [f"c{i}" for i in range(8)]
        hits = await client.memories.search("c3", mode="text")
        assert [h.memory.memory_id for h in hits.results] == ["c3"]


async def test_async_graph_policies_usage_audit(server: Server, new_tenant: TenantFactory) -> None:
    async with _async_twin(server, new_tenant()) as client:
        await client.memories.batch(
            [{"content": "x", "memory_id": "x"}, {"content": "y", "memory_id": "y"}]
        )
        rel = await client.relationships.create("x", "y", "next")
        assert (await client.relationships.get(rel.id)).id == rel.id
        assert [r.id for r in (await client.memories.neighbours("x")).relationships] == [rel.id]
        assert len((await client.memories.graph("x")).nodes) == 2
        await client.relationships.delete(rel.id)
        p = await client.policies.create("all", "memories", ["read", "write", "delete"])
        assert [q.id async for q in client.policies.list()] == [p.id]
        assert (await client.policies.update(p.id, is_active=False)).is_active is False
        await client.policies.delete(p.id)
        assert (await client.usage.get()).active_memories == 2
        assert [r.action async for r in client.audit.list(action="relationship.create")] == [
            "relationship.create"
        ]


async def test_async_admin(server: Server, project_id: str) -> None:
    async with AsyncMnemo(server.url, admin_key=server.admin_key) as admin:
        assert (await admin.health()).status == "ok"
        assert (await admin.ready()).status == "ready"
        t = await admin.admin.tenants.create("async-tenant", project_id, "Async")
        key = await admin.admin.keys.create(t.tenant_id, "k", ["*"])
        assert [k.id for k in await admin.admin.keys.list(t.tenant_id)] == [key.id]
        assert "async-tenant" in [
            x.tenant_id async for x in admin.admin.tenants.list(project_id=project_id)
        ]
        assert project_id in [p.id async for p in admin.admin.projects.list()]
        await admin.admin.keys.revoke(t.tenant_id, key.id)
        await admin.admin.tenants.delete(t.tenant_id)
        assert (await admin.admin.run_maintenance()).analytics_refreshed
