"""Response and input models (pydantic v2).

Written by hand from the server's ``/openapi.json`` rather than generated: the generated names
(``MemoryOut``, ``SearchHit``...) and the document's loose ``content`` schema would leak into the
surface, and hand-written models read better in an editor. Every model has ``extra="allow"``: a
field a newer server adds is kept (``model.model_extra``) instead of breaking older clients.
``tests/test_models.py`` checks each model against the served OpenAPI document, so a field
the server adds or renames shows up as a failing test.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "ApiKey",
    "AuditRecord",
    "CreatedKey",
    "Direction",
    "Graph",
    "GraphNode",
    "Health",
    "IsolationLevel",
    "MaintenanceReport",
    "Memory",
    "Neighbours",
    "NewMemory",
    "Policy",
    "Project",
    "Ready",
    "Related",
    "Relationship",
    "SearchFilter",
    "SearchHit",
    "SearchMode",
    "SearchResult",
    "Tenant",
    "Usage",
]

Direction = Literal["out", "in", "both"]
SearchMode = Literal["vector", "text", "hybrid"]
IsolationLevel = Literal["strict", "shared", "federated"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Memory(_Model):
    """A contextual memory. ``content`` is any JSON value but null."""

    memory_id: str
    content: Any
    relevance_score: float
    tags: list[str]
    metadata: dict[str, Any]
    has_embedding: bool
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None
    embedding_model: str | None = None
    embedding: list[float] | None = None
    """Present only when asked for with ``include_embedding=True``."""
    archived_at: datetime | None = None
    """When it was archived; present only on archived memories (``archived=true``)."""


class NewMemory(_Model):
    """One memory to create in :meth:`Memories.batch` (plain dicts work too)."""

    content: Any
    memory_id: str | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None
    relevance_score: float | None = None
    embedding: list[float] | None = None
    expires_at: datetime | None = None


class SearchFilter(_Model):
    """Narrows a search: JSONB containment, tags, relevance and creation time bounds."""

    contains: Any | None = None
    tags: list[str] | None = None
    any_tags: list[str] | None = None
    min_relevance: float | None = None
    max_relevance: float | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


class Relationship(_Model):
    """A typed, weighted edge between two memories (``source`` and ``target`` are memory ids)."""

    id: str
    source: str
    target: str
    relationship_type: str
    weight: float
    metadata: dict[str, Any]
    created_at: datetime


class Related(_Model):
    relationship: Relationship
    memory: Memory


class SharedFrom(_Model):
    """Marks a hit another tenant's sharing rule exposes (content anonymized by the rule)."""

    rule_id: str
    source_tenant_id: str | None = None
    """The owner's public tenant id, only when its rule reveals it."""


class SearchHit(_Model):
    """One search result: ``score`` ranks; ``similarity`` is the cosine similarity (vector part)."""

    score: float
    memory: Memory
    similarity: float | None = None
    vector_rank: int | None = None
    text_rank: int | None = None
    related: list[Related] | None = None
    shared: SharedFrom | None = None
    """Present on a hit shared by another tenant's rule; its ``memory_id`` is a handle."""
    """Direct graph neighbours, when the search asked for ``expand=True``."""


class SearchResult(_Model):
    mode: SearchMode
    results: list[SearchHit]
    strategy: str | None = None
    """How the vector part was answered: ``exact`` or the tenant's own ``hnsw`` index."""


class Neighbours(_Model):
    memory_id: str
    relationships: list[Relationship]


class GraphNode(_Model):
    depth: int
    memory: Memory


class Graph(_Model):
    root: str
    nodes: list[GraphNode]
    edges: list[Relationship]


class Policy(_Model):
    """An access policy narrowing what the tenant's keys (or one key) may do."""

    id: str
    name: str
    resource_type: str
    resource_pattern: str
    permissions: list[str]
    conditions: dict[str, Any]
    is_active: bool
    created_at: datetime
    updated_at: datetime
    api_key_id: str | None = None


class Usage(_Model):
    """The tenant's usage; ``quota_bytes`` is what ``max_storage_bytes`` limits."""

    total_memories: int
    active_memories: int
    expired_memories: int
    embedded_memories: int
    content_bytes: int
    embedding_bytes: int
    storage_bytes: int
    relationship_count: int
    relationship_bytes: int
    offloaded_context_count: int
    context_bytes: int
    quota_bytes: int
    avg_relevance: float | None = None
    oldest_memory_at: datetime | None = None
    newest_memory_at: datetime | None = None
    max_memories: int | None = None
    max_storage_bytes: int | None = None


class AuditRecord(_Model):
    id: str
    actor: str
    action: str
    resource_type: str
    outcome: str
    details: dict[str, Any]
    created_at: datetime
    resource_id: str | None = None
    api_key_id: str | None = None
    request_id: str | None = None
    status_code: int | None = None


class Project(_Model):
    id: str
    name: str
    owner_id: str
    settings: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    description: str | None = None


class Tenant(_Model):
    id: str
    tenant_id: str
    project_id: str
    name: str
    isolation_level: str
    encryption_enabled: bool
    settings: dict[str, Any]
    is_active: bool
    created_at: datetime
    updated_at: datetime
    privacy_budget_epsilon: float
    """The tenant's total differential-privacy budget (epsilon) over all federated releases."""
    privacy_budget_delta: float
    max_memories: int | None = None
    max_storage_bytes: int | None = None


class ApiKey(_Model):
    id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class CreatedKey(ApiKey):
    secret: str
    """The key itself. The server shows it only in this answer."""


class MaintenanceReport(_Model):
    analytics_refreshed: bool
    errors: list[Any]
    partitions_created: int | None = None
    expired_memories_removed: int | None = None
    expired_contexts_removed: int | None = None
    audit_rows_archived: int | None = None
    usage_reconciled: dict[str, Any] | None = None
    vector_indexes: dict[str, Any] | None = None
    metric_partitions_dropped: list[str] | None = None
    federated_sessions_expired: int | None = None
    retention: dict[str, Any] | None = None
    """The expiry and retention cleanup per tenant (``tenants``, ``batches``)."""
    audit_partitions_dropped: list[str] | None = None


class Health(_Model):
    status: str


class Ready(_Model):
    status: str
    database: str
    pgvector_version: str | None = None
    embedder: str | None = None
    error: str | None = None
    pending_migrations: list[int] | None = None
    """Migrations the database lacks: the server is not ready until they are applied."""
