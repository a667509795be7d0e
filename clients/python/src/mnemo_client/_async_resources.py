"""Resources of the asynchronous client (:class:`mnemo_client.AsyncMnemo`): the same methods as
the synchronous ones (see ``_resources.py`` for the documentation), awaited."""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from . import _calls as c
from ._base import OMIT, AsyncSender
from ._pagination import AsyncPaginator, Page
from .types import (
    ApiKey,
    AuditRecord,
    CreatedKey,
    Direction,
    Graph,
    IsolationLevel,
    MaintenanceReport,
    Memory,
    Neighbours,
    NewMemory,
    Policy,
    Project,
    Relationship,
    SearchFilter,
    SearchMode,
    SearchResult,
    Tenant,
    Usage,
)

JSONObject = dict[str, Any]


class _AsyncResource:
    def __init__(self, sender: AsyncSender) -> None:
        self._sender = sender


class AsyncMemories(_AsyncResource):
    """``/v1/memories``: create, read, update, delete, list and search memories."""

    async def create(
        self,
        content: Any,
        *,
        memory_id: str | None = None,
        tags: Sequence[str] | None = None,
        metadata: JSONObject | None = None,
        relevance_score: float | None = None,
        embedding: Sequence[float] | None = None,
        expires_at: datetime | None = None,
    ) -> Memory:
        """Create a memory. ``content`` is any JSON value but null; its text is embedded by the
        server unless ``embedding`` (384 floats) is given. Raises :class:`ConflictError`
        (``memory_exists``) when ``memory_id`` is taken.

        Example::

            m = await client.memories.create({"text": "The user prefers dark mode."},
                                             memory_id="m1",
                                       tags=["prefs"])
        """
        return await self._sender.send(
            c.create_memory(
                content, memory_id, tags, metadata, relevance_score, embedding, expires_at
            )
        )

    async def upsert(
        self,
        memory_id: str,
        content: Any,
        *,
        tags: Sequence[str] | None = None,
        metadata: JSONObject | None = None,
        relevance_score: float | None = None,
        embedding: Sequence[float] | None = None,
        expires_at: datetime | None = None,
    ) -> Memory:
        """Create the memory ``memory_id`` or replace it whole (``PUT``).

        Example::

            await client.memories.upsert("profile", {"name": "Ada", "theme": "dark"})
        """
        return await self._sender.send(
            c.upsert_memory(
                memory_id, content, tags, metadata, relevance_score, embedding, expires_at
            )
        )

    async def batch(
        self, memories: Sequence[NewMemory | Mapping[str, Any]]
    ) -> builtins.list[Memory]:
        """Create up to 1,000 memories at once, all or nothing.

        Example::

            await client.memories.batch([{"content": "a"}, NewMemory(content="b", tags=["x"])])
        """
        return await self._sender.send(c.batch_memories(memories))

    async def get(self, memory_id: str, *, include_embedding: bool = False) -> Memory:
        """One memory. Raises :class:`NotFoundError` for an unknown id or another tenant's.

        Example::

            m = await client.memories.get("m1")
        """
        return await self._sender.send(c.get_memory(memory_id, include_embedding))

    async def update(
        self,
        memory_id: str,
        *,
        content: Any = OMIT,
        relevance_score: float | None = OMIT,
        tags: Sequence[str] | None = OMIT,
        metadata: JSONObject | None = OMIT,
        embedding: Sequence[float] | None = OMIT,
        expires_at: datetime | None = OMIT,
    ) -> Memory:
        """Change some fields (``PATCH``); fields not given stay as they are. ``embedding=None``
        removes the vector and ``expires_at=None`` the expiry. New content without an ``embedding``
        is re-embedded by the server.

        Example::

            await client.memories.update("m1", relevance_score=0.9, tags=["prefs", "ui"])
        """
        return await self._sender.send(
            c.update_memory(
                memory_id,
                content=content,
                relevance_score=relevance_score,
                tags=list(tags) if tags else tags,
                metadata=metadata,
                embedding=list(embedding) if embedding else embedding,
                expires_at=expires_at,
            )
        )

    async def delete(self, memory_id: str) -> None:
        """Delete a memory (and its relationships).

        Example::

            await client.memories.delete("m1")
        """
        await self._sender.send(c.delete_memory(memory_id))

    async def list_page(
        self,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        contains: Any = None,
        tags: Sequence[str] | None = None,
        any_tags: Sequence[str] | None = None,
        min_relevance: float | None = None,
        max_relevance: float | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        include_embedding: bool = False,
    ) -> Page[Memory]:
        """One page of memories, newest first; pass ``next_cursor`` as ``cursor`` for the next.

        Example::

            page = await client.memories.list_page(limit=20)
            more = await client.memories.list_page(limit=20, cursor=page.next_cursor)
        """
        return await self._sender.send(
            c.list_memories(
                limit,
                cursor,
                contains,
                tags,
                any_tags,
                min_relevance,
                max_relevance,
                created_after,
                created_before,
                include_embedding,
            )
        )

    def list(
        self,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        contains: Any = None,
        tags: Sequence[str] | None = None,
        any_tags: Sequence[str] | None = None,
        min_relevance: float | None = None,
        max_relevance: float | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        include_embedding: bool = False,
    ) -> AsyncPaginator[Memory]:
        """Every memory matching the filters, newest first, fetched ``limit`` (page size) at a time.

        ``contains`` is JSON the content must contain (``@>``); ``tags`` must all be present,
        ``any_tags`` at least one.

        Example::

            async for m in client.memories.list(tags=["prefs"], min_relevance=0.5):
                print(m.memory_id, m.content)
        """
        return AsyncPaginator(
            lambda cur: self.list_page(
                limit=limit,
                cursor=cur,
                contains=contains,
                tags=tags,
                any_tags=any_tags,
                min_relevance=min_relevance,
                max_relevance=max_relevance,
                created_after=created_after,
                created_before=created_before,
                include_embedding=include_embedding,
            ),
            cursor,
        )

    async def search(
        self,
        query: str | None = None,
        *,
        vector: Sequence[float] | None = None,
        k: int | None = None,
        mode: SearchMode | None = None,
        filter: SearchFilter | Mapping[str, Any] | None = None,
        min_similarity: float | None = None,
        expand: bool = False,
        include_embedding: bool = False,
    ) -> SearchResult:
        """Search by meaning, by words, or both (``mode``: ``vector``, ``text``, ``hybrid``).

        Example::

            hits = await client.memories.search("UI theme preference", k=5)
            for hit in hits.results:
                print(hit.score, hit.memory.content)
        """
        return await self._sender.send(
            c.search_memories(
                query, vector, k, mode, filter, min_similarity, expand, include_embedding
            )
        )

    async def neighbours(
        self,
        memory_id: str,
        *,
        direction: Direction | None = None,
        relationship_type: str | None = None,
        limit: int | None = None,
    ) -> Neighbours:
        """The relationships of a memory (``direction``: ``out``, ``in`` or ``both``).

        Example::

            for rel in (await client.memories.neighbours("m1", direction="out")).relationships:
                print(rel.relationship_type, rel.target)
        """
        return await self._sender.send(c.neighbours(memory_id, direction, relationship_type, limit))

    async def graph(
        self,
        memory_id: str,
        *,
        depth: int | None = None,
        direction: Direction | None = None,
        relationship_type: str | None = None,
        max_nodes: int | None = None,
    ) -> Graph:
        """The knowledge graph around a memory, up to ``depth`` hops (safe on cycles).

        Example::

            g = await client.memories.graph("m1", depth=2)
            print([(n.depth, n.memory.memory_id) for n in g.nodes])
        """
        return await self._sender.send(
            c.graph(memory_id, depth, direction, relationship_type, max_nodes)
        )


class AsyncRelationships(_AsyncResource):
    """``/v1/relationships``: typed, weighted edges between memories."""

    async def create(
        self,
        source: str,
        target: str,
        relationship_type: str,
        *,
        weight: float | None = None,
        metadata: JSONObject | None = None,
    ) -> Relationship:
        """Link two memories by their ``memory_id``.

        Example::

            rel = await client.relationships.create("m1", "m2", "supports", weight=0.8)
        """
        return await self._sender.send(
            c.create_relationship(source, target, relationship_type, weight, metadata)
        )

    async def get(self, id: str) -> Relationship:
        """One relationship by its id.

        Example::

            rel = await client.relationships.get(rel_id)
        """
        return await self._sender.send(c.get_relationship(id))

    async def delete(self, id: str) -> None:
        """Delete a relationship.

        Example::

            await client.relationships.delete(rel.id)
        """
        await self._sender.send(c.delete_relationship(id))


class AsyncPolicies(_AsyncResource):
    """``/v1/policies``: access policies that narrow what the tenant's keys may do."""

    async def create(
        self,
        name: str,
        resource_type: str,
        permissions: Sequence[str],
        *,
        resource_pattern: str | None = None,
        api_key_id: str | None = None,
        conditions: JSONObject | None = None,
        is_active: bool | None = None,
    ) -> Policy:
        """Create a policy. ``resource_pattern`` is ``*``, a prefix like ``notes-*`` or an exact id.

        Example::

            await client.policies.create("read-notes", "memories", ["read"],
                                         resource_pattern="notes-*")
        """
        return await self._sender.send(
            c.create_policy(
                name,
                resource_type,
                permissions,
                resource_pattern,
                api_key_id,
                conditions,
                is_active,
            )
        )

    async def get(self, id: str) -> Policy:
        """One policy by its id.

        Example::

            policy = await client.policies.get(policy_id)
        """
        return await self._sender.send(c.get_policy(id))

    async def update(self, id: str, *, is_active: bool) -> Policy:
        """Switch a policy on or off.

        Example::

            await client.policies.update(policy.id, is_active=False)
        """
        return await self._sender.send(c.update_policy(id, is_active))

    async def delete(self, id: str) -> None:
        """Delete a policy.

        Example::

            await client.policies.delete(policy.id)
        """
        await self._sender.send(c.delete_policy(id))

    async def list_page(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[Policy]:
        """One page of policies, oldest first.

        Example::

            page = await client.policies.list_page(limit=50)
        """
        return await self._sender.send(c.list_policies(limit, cursor))

    def list(self, *, limit: int | None = None) -> AsyncPaginator[Policy]:
        """Every policy, oldest first.

        Example::

            names = [p.name async for p in client.policies.list()]
        """
        return AsyncPaginator(lambda cur: self.list_page(limit=limit, cursor=cur))


class AsyncUsageResource(_AsyncResource):
    """``/v1/usage``."""

    async def get(self) -> Usage:
        """The tenant's usage and quotas.

        Example::

            print((await client.usage.get()).active_memories)
        """
        return await self._sender.send(c.usage())


class AsyncAudit(_AsyncResource):
    """``/v1/audit``: the tenant's own audit trail, newest first."""

    async def list_page(
        self,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        request_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Page[AuditRecord]:
        """One page of audit records, newest first.

        Example::

            page = await client.audit.list_page(limit=100, outcome="denied")
        """
        return await self._sender.send(
            c.list_audit(limit, cursor, action, outcome, request_id, since, until)
        )

    def list(
        self,
        *,
        limit: int | None = None,
        action: str | None = None,
        outcome: str | None = None,
        request_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> AsyncPaginator[AuditRecord]:
        """Audit records matching the filters (``action`` like ``memory.create``; ``outcome``
        ``success``, ``denied``, ``not_found``...).

        Example::

            async for rec in client.audit.list(action="memory.create"):
                print(rec.created_at, rec.resource_id)
        """
        return AsyncPaginator(
            lambda cur: self.list_page(
                limit=limit,
                cursor=cur,
                action=action,
                outcome=outcome,
                request_id=request_id,
                since=since,
                until=until,
            )
        )


class AsyncProjects(_AsyncResource):
    """``/v1/admin/projects`` (admin key)."""

    async def create(
        self,
        name: str,
        owner_id: str,
        *,
        description: str | None = None,
        settings: JSONObject | None = None,
    ) -> Project:
        """Example::

        project = await admin.admin.projects.create("my-project", "user123")
        """
        return await self._sender.send(c.create_project(name, owner_id, description, settings))

    async def get(self, id: str) -> Project:
        """One project by its id.

        Example::

            project = await admin.admin.projects.get(project_id)
        """
        return await self._sender.send(c.get_project(id))

    async def update(
        self,
        id: str,
        *,
        name: str | None = OMIT,
        owner_id: str | None = OMIT,
        description: str | None = OMIT,
        settings: JSONObject | None = OMIT,
    ) -> Project:
        """Change some fields; the others stay as they are.

        Example::

            await admin.admin.projects.update(project.id, description="Agents in production")
        """
        return await self._sender.send(
            c.update_project(
                id, name=name, owner_id=owner_id, description=description, settings=settings
            )
        )

    async def delete(self, id: str, *, cascade: bool = False) -> None:
        """Delete a project; refused (409 ``project_has_tenants``) while it has tenants unless
        ``cascade=True``.

        Example::

            await admin.admin.projects.delete(project.id, cascade=True)
        """
        await self._sender.send(c.delete_project(id, cascade))

    def list(self, *, limit: int = 100) -> AsyncPaginator[Project]:
        """Every project, ``limit`` per request.

        Example::

            names = [p.name async for p in admin.admin.projects.list()]
        """
        return AsyncPaginator(lambda after: self._sender.send(c.list_projects(limit, after)))


class AsyncTenants(_AsyncResource):
    """``/v1/admin/tenants`` (admin key)."""

    async def create(
        self,
        tenant_id: str,
        project_id: str,
        name: str,
        *,
        isolation_level: IsolationLevel | None = None,
        encryption_enabled: bool | None = None,
        settings: JSONObject | None = None,
        max_memories: int | None = None,
        max_storage_bytes: int | None = None,
    ) -> Tenant:
        """Example::

        await admin.admin.tenants.create("tenant-001", project.id, "Production",
                                             max_memories=10_000)
        """
        return await self._sender.send(
            c.create_tenant(
                tenant_id,
                project_id,
                name,
                isolation_level=isolation_level,
                encryption_enabled=encryption_enabled,
                settings=settings,
                max_memories=max_memories,
                max_storage_bytes=max_storage_bytes,
            )
        )

    async def get(self, tenant_id: str) -> Tenant:
        """One tenant by its ``tenant_id``.

        Example::

            tenant = await admin.admin.tenants.get("tenant-001")
        """
        return await self._sender.send(c.get_tenant(tenant_id))

    async def update(
        self,
        tenant_id: str,
        *,
        name: str | None = OMIT,
        isolation_level: IsolationLevel | None = OMIT,
        encryption_enabled: bool | None = OMIT,
        settings: JSONObject | None = OMIT,
        is_active: bool | None = OMIT,
        max_memories: int | None = OMIT,
        max_storage_bytes: int | None = OMIT,
    ) -> Tenant:
        """Change some fields; ``max_memories=None`` / ``max_storage_bytes=None`` lift a quota.

        Example::

            await admin.admin.tenants.update("tenant-001", max_storage_bytes=10 * 2**20)
        """
        return await self._sender.send(
            c.update_tenant(
                tenant_id,
                name=name,
                isolation_level=isolation_level,
                encryption_enabled=encryption_enabled,
                settings=settings,
                is_active=is_active,
                max_memories=max_memories,
                max_storage_bytes=max_storage_bytes,
            )
        )

    async def delete(self, tenant_id: str) -> None:
        """Delete a tenant and everything it holds.

        Example::

            await admin.admin.tenants.delete("tenant-001")
        """
        await self._sender.send(c.delete_tenant(tenant_id))

    def list(self, *, project_id: str | None = None, limit: int = 100) -> AsyncPaginator[Tenant]:
        """Every tenant (of one project, if given), ``limit`` per request.

        Example::

            ids = [t.tenant_id async for t in admin.admin.tenants.list(project_id=project.id)]
        """
        return AsyncPaginator(
            lambda after: self._sender.send(c.list_tenants(project_id, limit, after))
        )


class AsyncKeys(_AsyncResource):
    """``/v1/admin/tenants/{tenant_id}/keys`` (admin key)."""

    async def create(
        self,
        tenant_id: str,
        name: str,
        scopes: Sequence[str],
        *,
        expires_at: datetime | None = None,
    ) -> CreatedKey:
        """Create a key; its ``secret`` is in this answer only.

        Example::

            scopes = ["memories:read", "memories:write"]
            key = await admin.admin.keys.create("tenant-001", "agent", scopes)
            client = AsyncMnemo(api_key=key.secret)
        """
        return await self._sender.send(c.create_key(tenant_id, name, scopes, expires_at))

    async def list(self, tenant_id: str) -> builtins.list[ApiKey]:
        """The tenant's keys (never their secrets).

        Example::

            for key in await admin.admin.keys.list("tenant-001"):
                print(key.prefix, key.scopes, key.revoked_at)
        """
        return await self._sender.send(c.list_keys(tenant_id))

    async def revoke(self, tenant_id: str, key_id: str) -> ApiKey:
        """Revoke a key; it stops working on the next request.

        Example::

            await admin.admin.keys.revoke("tenant-001", key.id)
        """
        return await self._sender.send(c.revoke_key(tenant_id, key_id))


class AsyncAdmin(_AsyncResource):
    """The admin surface: ``projects``, ``tenants``, ``keys`` and ``run_maintenance()``."""

    def __init__(self, sender: AsyncSender) -> None:
        super().__init__(sender)
        self.projects = AsyncProjects(sender)
        self.tenants = AsyncTenants(sender)
        self.keys = AsyncKeys(sender)

    async def run_maintenance(self) -> MaintenanceReport:
        """Run the background upkeep now (expired memories, partitions, audit archival, analytics,
        usage counters).

        Example::

            report = await admin.admin.run_maintenance()
        """
        return await self._sender.send(c.run_maintenance())
