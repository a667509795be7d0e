"""Every operation of the API as a :class:`Call` builder, shared by the sync and async clients.

Paths, parameters and bodies follow the server's ``/openapi.json``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import (
    Any,
    Generic,
    TypeVar,
)

import httpx
from pydantic import BaseModel

from ._base import Call, body, jsonable, query, segment
from .types import (
    ApiKey,
    AuditRecord,
    CreatedKey,
    Graph,
    Health,
    MaintenanceReport,
    Memory,
    Neighbours,
    NewMemory,
    Policy,
    Project,
    Ready,
    Relationship,
    SearchFilter,
    SearchResult,
    Tenant,
    Usage,
)

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class Page(Generic[T]):
    """One page of a listing: ``items`` and the cursor of the next page (``None`` on the last)."""

    def __init__(self, items: list[T], next_cursor: str | None) -> None:
        self.items = items
        self.next_cursor = next_cursor

    def __repr__(self) -> str:
        return f"Page(items={len(self.items)}, next_cursor={self.next_cursor!r})"


def one(cls: type[M]) -> Callable[[httpx.Response], M]:
    return lambda r: cls.model_validate(r.json())


def many(cls: type[M]) -> Callable[[httpx.Response], list[M]]:
    return lambda r: [cls.model_validate(x) for x in r.json()]


def nothing(_: httpx.Response) -> None:
    return None


def page(cls: type[M], key: str) -> Callable[[httpx.Response], Page[M]]:
    def parse(r: httpx.Response) -> Page[M]:
        data = r.json()
        return Page([cls.model_validate(x) for x in data[key]], data.get("next_cursor"))

    return parse


def after_page(
    cls: type[M], limit: int, key: Callable[[M], str]
) -> Callable[[httpx.Response], Page[M]]:
    """Admin listings page by the last id seen: a full page may have a next one."""

    def parse(r: httpx.Response) -> Page[M]:
        items = [cls.model_validate(x) for x in r.json()]
        return Page(items, key(items[-1]) if items and len(items) >= limit else None)

    return parse


JSONObject = dict[str, Any]
FilterArg = SearchFilter | Mapping[str, Any] | None

# --- memories -----------------------------------------------------------------------------------


def create_memory(
    content: Any,
    memory_id: str | None,
    tags: Sequence[str] | None,
    metadata: JSONObject | None,
    relevance_score: float | None,
    embedding: Sequence[float] | None,
    expires_at: datetime | None,
) -> Call[Memory]:
    fields: dict[str, Any] = {"content": jsonable(content)}
    for name, value in (
        ("memory_id", memory_id),
        ("tags", list(tags) if tags is not None else None),
        ("metadata", metadata),
        ("relevance_score", relevance_score),
        ("embedding", list(embedding) if embedding is not None else None),
        ("expires_at", expires_at),
    ):
        if value is not None:
            fields[name] = jsonable(value)
    return Call("POST", "/v1/memories", one(Memory), json=fields, idempotent=False)


def upsert_memory(
    memory_id: str,
    content: Any,
    tags: Sequence[str] | None,
    metadata: JSONObject | None,
    relevance_score: float | None,
    embedding: Sequence[float] | None,
    expires_at: datetime | None,
) -> Call[Memory]:
    call = create_memory(content, None, tags, metadata, relevance_score, embedding, expires_at)
    return Call("PUT", f"/v1/memories/{segment(memory_id)}", one(Memory), json=call.json)


def batch_memories(memories: Sequence[NewMemory | Mapping[str, Any]]) -> Call[list[Memory]]:
    items = [
        jsonable(m.model_dump(exclude_none=True)) if isinstance(m, NewMemory) else jsonable(dict(m))
        for m in memories
    ]
    return Call(
        "POST",
        "/v1/memories/batch",
        lambda r: [Memory.model_validate(x) for x in r.json()["memories"]],
        json={"memories": items},
        idempotent=False,
    )


def get_memory(memory_id: str, include_embedding: bool) -> Call[Memory]:
    return Call(
        "GET",
        f"/v1/memories/{segment(memory_id)}",
        one(Memory),
        params=query(include_embedding=include_embedding or None),
    )


def update_memory(memory_id: str, **fields: Any) -> Call[Memory]:
    return Call("PATCH", f"/v1/memories/{segment(memory_id)}", one(Memory), json=body(**fields))


def delete_memory(memory_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/memories/{segment(memory_id)}", nothing)


def list_memories(
    limit: int | None,
    cursor: str | None,
    contains: Any,
    tags: Sequence[str] | None,
    any_tags: Sequence[str] | None,
    min_relevance: float | None,
    max_relevance: float | None,
    created_after: datetime | None,
    created_before: datetime | None,
    include_embedding: bool,
) -> Call[Page[Memory]]:
    import json

    return Call(
        "GET",
        "/v1/memories",
        page(Memory, "memories"),
        params=query(
            limit=limit,
            cursor=cursor,
            contains=json.dumps(jsonable(contains)) if contains is not None else None,
            tags=tags,
            any_tags=any_tags,
            min_relevance=min_relevance,
            max_relevance=max_relevance,
            created_after=created_after,
            created_before=created_before,
            include_embedding=include_embedding or None,
        ),
    )


def search_memories(
    query_text: str | None,
    vector: Sequence[float] | None,
    k: int | None,
    mode: str | None,
    filter: FilterArg,
    min_similarity: float | None,
    expand: bool,
    include_embedding: bool,
) -> Call[SearchResult]:
    fields: dict[str, Any] = {}
    if query_text is not None:
        fields["query"] = query_text
    if vector is not None:
        fields["vector"] = list(vector)
    if k is not None:
        fields["k"] = k
    if mode is not None:
        fields["mode"] = mode
    if filter is not None:
        fields["filter"] = (
            jsonable(filter.model_dump(exclude_none=True))
            if isinstance(filter, SearchFilter)
            else jsonable(dict(filter))
        )
    if min_similarity is not None:
        fields["min_similarity"] = min_similarity
    if expand:
        fields["expand"] = True
    if include_embedding:
        fields["include_embedding"] = True
    # A search changes nothing: safe to repeat.
    return Call("POST", "/v1/memories/search", one(SearchResult), json=fields)


def neighbours(
    memory_id: str, direction: str | None, relationship_type: str | None, limit: int | None
) -> Call[Neighbours]:
    return Call(
        "GET",
        f"/v1/memories/{segment(memory_id)}/neighbours",
        one(Neighbours),
        params=query(direction=direction, relationship_type=relationship_type, limit=limit),
    )


def graph(
    memory_id: str,
    depth: int | None,
    direction: str | None,
    relationship_type: str | None,
    max_nodes: int | None,
) -> Call[Graph]:
    return Call(
        "GET",
        f"/v1/memories/{segment(memory_id)}/graph",
        one(Graph),
        params=query(
            depth=depth,
            direction=direction,
            relationship_type=relationship_type,
            max_nodes=max_nodes,
        ),
    )


# --- relationships ------------------------------------------------------------------------------


def create_relationship(
    source: str,
    target: str,
    relationship_type: str,
    weight: float | None,
    metadata: JSONObject | None,
) -> Call[Relationship]:
    fields: dict[str, Any] = {
        "source": source,
        "target": target,
        "relationship_type": relationship_type,
    }
    if weight is not None:
        fields["weight"] = weight
    if metadata is not None:
        fields["metadata"] = jsonable(metadata)
    return Call("POST", "/v1/relationships", one(Relationship), json=fields, idempotent=False)


def get_relationship(id: str) -> Call[Relationship]:
    return Call("GET", f"/v1/relationships/{segment(id)}", one(Relationship))


def delete_relationship(id: str) -> Call[None]:
    return Call("DELETE", f"/v1/relationships/{segment(id)}", nothing)


# --- policies -----------------------------------------------------------------------------------


def create_policy(
    name: str,
    resource_type: str,
    permissions: Sequence[str],
    resource_pattern: str | None,
    api_key_id: str | None,
    conditions: JSONObject | None,
    is_active: bool | None,
) -> Call[Policy]:
    fields: dict[str, Any] = {
        "name": name,
        "resource_type": resource_type,
        "permissions": list(permissions),
    }
    for k, v in (
        ("resource_pattern", resource_pattern),
        ("api_key_id", api_key_id),
        ("conditions", conditions),
        ("is_active", is_active),
    ):
        if v is not None:
            fields[k] = jsonable(v)
    return Call("POST", "/v1/policies", one(Policy), json=fields, idempotent=False)


def get_policy(id: str) -> Call[Policy]:
    return Call("GET", f"/v1/policies/{segment(id)}", one(Policy))


def update_policy(id: str, is_active: bool) -> Call[Policy]:
    return Call("PATCH", f"/v1/policies/{segment(id)}", one(Policy), json={"is_active": is_active})


def delete_policy(id: str) -> Call[None]:
    return Call("DELETE", f"/v1/policies/{segment(id)}", nothing)


def list_policies(limit: int | None, cursor: str | None) -> Call[Page[Policy]]:
    return Call(
        "GET", "/v1/policies", page(Policy, "policies"), params=query(limit=limit, cursor=cursor)
    )


# --- usage, audit, health -----------------------------------------------------------------------


def usage() -> Call[Usage]:
    return Call("GET", "/v1/usage", one(Usage))


def list_audit(
    limit: int | None,
    cursor: str | None,
    action: str | None,
    outcome: str | None,
    request_id: str | None,
    since: datetime | None,
    until: datetime | None,
) -> Call[Page[AuditRecord]]:
    return Call(
        "GET",
        "/v1/audit",
        page(AuditRecord, "records"),
        params=query(
            limit=limit,
            cursor=cursor,
            action=action,
            outcome=outcome,
            request_id=request_id,
            since=since,
            until=until,
        ),
    )


def health() -> Call[Health]:
    return Call("GET", "/healthz", one(Health))


def ready() -> Call[Ready]:
    # A 503 answer carries a Ready body too: it is returned, not raised.
    return Call("GET", "/readyz", one(Ready), accept=frozenset({503}))


# --- admin --------------------------------------------------------------------------------------


def create_project(
    name: str, owner_id: str, description: str | None, settings: JSONObject | None
) -> Call[Project]:
    fields: dict[str, Any] = {"name": name, "owner_id": owner_id}
    if description is not None:
        fields["description"] = description
    if settings is not None:
        fields["settings"] = jsonable(settings)
    return Call(
        "POST", "/v1/admin/projects", one(Project), json=fields, idempotent=False, admin=True
    )


def get_project(id: str) -> Call[Project]:
    return Call("GET", f"/v1/admin/projects/{segment(id)}", one(Project), admin=True)


def update_project(id: str, **fields: Any) -> Call[Project]:
    return Call(
        "PATCH", f"/v1/admin/projects/{segment(id)}", one(Project), json=body(**fields), admin=True
    )


def delete_project(id: str, cascade: bool) -> Call[None]:
    return Call(
        "DELETE",
        f"/v1/admin/projects/{segment(id)}",
        nothing,
        params=query(cascade=cascade or None),
        admin=True,
    )


def list_projects(limit: int, after: str | None) -> Call[Page[Project]]:
    return Call(
        "GET",
        "/v1/admin/projects",
        after_page(Project, limit, lambda p: p.id),
        params=query(limit=limit, after=after),
        admin=True,
    )


def create_tenant(tenant_id: str, project_id: str, name: str, **fields: Any) -> Call[Tenant]:
    payload = {"tenant_id": tenant_id, "project_id": project_id, "name": name}
    payload.update({k: jsonable(v) for k, v in fields.items() if v is not None})
    return Call(
        "POST", "/v1/admin/tenants", one(Tenant), json=payload, idempotent=False, admin=True
    )


def get_tenant(tenant_id: str) -> Call[Tenant]:
    return Call("GET", f"/v1/admin/tenants/{segment(tenant_id)}", one(Tenant), admin=True)


def update_tenant(tenant_id: str, **fields: Any) -> Call[Tenant]:
    return Call(
        "PATCH",
        f"/v1/admin/tenants/{segment(tenant_id)}",
        one(Tenant),
        json=body(**fields),
        admin=True,
    )


def delete_tenant(tenant_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/admin/tenants/{segment(tenant_id)}", nothing, admin=True)


def list_tenants(project_id: str | None, limit: int, after: str | None) -> Call[Page[Tenant]]:
    return Call(
        "GET",
        "/v1/admin/tenants",
        after_page(Tenant, limit, lambda t: t.tenant_id),
        params=query(project_id=project_id, limit=limit, after=after),
        admin=True,
    )


def create_key(
    tenant_id: str, name: str, scopes: Sequence[str], expires_at: datetime | None
) -> Call[CreatedKey]:
    fields: dict[str, Any] = {"name": name, "scopes": list(scopes)}
    if expires_at is not None:
        fields["expires_at"] = jsonable(expires_at)
    return Call(
        "POST",
        f"/v1/admin/tenants/{segment(tenant_id)}/keys",
        one(CreatedKey),
        json=fields,
        idempotent=False,
        admin=True,
    )


def list_keys(tenant_id: str) -> Call[list[ApiKey]]:
    return Call("GET", f"/v1/admin/tenants/{segment(tenant_id)}/keys", many(ApiKey), admin=True)


def revoke_key(tenant_id: str, key_id: str) -> Call[ApiKey]:
    return Call(
        "DELETE",
        f"/v1/admin/tenants/{segment(tenant_id)}/keys/{segment(key_id)}",
        one(ApiKey),
        admin=True,
    )


def run_maintenance() -> Call[MaintenanceReport]:
    # Upkeep converges: running it twice does no harm.
    return Call("POST", "/v1/admin/maintenance", one(MaintenanceReport), admin=True)
