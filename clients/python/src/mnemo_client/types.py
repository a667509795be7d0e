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
from typing import Any, Dict, List, Literal, Optional

from pydantic import BaseModel, ConfigDict

__all__ = [
    "Memory",
    "NewMemory",
    "SearchFilter",
    "SearchHit",
    "SearchResult",
    "Related",
    "Relationship",
    "Neighbours",
    "GraphNode",
    "Graph",
    "Policy",
    "Usage",
    "AuditRecord",
    "Project",
    "Tenant",
    "ApiKey",
    "CreatedKey",
    "MaintenanceReport",
    "Health",
    "Ready",
    "Direction",
    "SearchMode",
    "IsolationLevel",
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
    tags: List[str]
    metadata: Dict[str, Any]
    has_embedding: bool
    created_at: datetime
    updated_at: datetime
    expires_at: Optional[datetime] = None
    embedding_model: Optional[str] = None
    embedding: Optional[List[float]] = None
    """Present only when asked for with ``include_embedding=True``."""


class NewMemory(_Model):
    """One memory to create in :meth:`Memories.batch` (plain dicts work too)."""

    content: Any
    memory_id: Optional[str] = None
    tags: Optional[List[str]] = None
    metadata: Optional[Dict[str, Any]] = None
    relevance_score: Optional[float] = None
    embedding: Optional[List[float]] = None
    expires_at: Optional[datetime] = None


class SearchFilter(_Model):
    """Narrows a search: JSONB containment, tags, relevance and creation time bounds."""

    contains: Optional[Any] = None
    tags: Optional[List[str]] = None
    any_tags: Optional[List[str]] = None
    min_relevance: Optional[float] = None
    max_relevance: Optional[float] = None
    created_after: Optional[datetime] = None
    created_before: Optional[datetime] = None


class Relationship(_Model):
    """A typed, weighted edge between two memories (``source`` and ``target`` are memory ids)."""

    id: str
    source: str
    target: str
    relationship_type: str
    weight: float
    metadata: Dict[str, Any]
    created_at: datetime


class Related(_Model):
    relationship: Relationship
    memory: Memory


class SearchHit(_Model):
    """One search result: ``score`` ranks; ``similarity`` is the cosine similarity (vector part)."""

    score: float
    memory: Memory
    similarity: Optional[float] = None
    vector_rank: Optional[int] = None
    text_rank: Optional[int] = None
    related: Optional[List[Related]] = None
    """Direct graph neighbours, when the search asked for ``expand=True``."""


class SearchResult(_Model):
    mode: SearchMode
    results: List[SearchHit]
    strategy: Optional[str] = None
    """How the vector part was answered: ``exact`` or the tenant's own ``hnsw`` index."""


class Neighbours(_Model):
    memory_id: str
    relationships: List[Relationship]


class GraphNode(_Model):
    depth: int
    memory: Memory


class Graph(_Model):
    root: str
    nodes: List[GraphNode]
    edges: List[Relationship]


class Policy(_Model):
    """An access policy narrowing what the tenant's keys (or one key) may do."""

    id: str
    name: str
    resource_type: str
    resource_pattern: str
    permissions: List[str]
    conditions: Dict[str, Any]
    is_active: bool
    created_at: datetime
    updated_at: datetime
    api_key_id: Optional[str] = None


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
    avg_relevance: Optional[float] = None
    oldest_memory_at: Optional[datetime] = None
    newest_memory_at: Optional[datetime] = None
    max_memories: Optional[int] = None
    max_storage_bytes: Optional[int] = None


class AuditRecord(_Model):
    id: str
    actor: str
    action: str
    resource_type: str
    outcome: str
    details: Dict[str, Any]
    created_at: datetime
    resource_id: Optional[str] = None
    api_key_id: Optional[str] = None
    request_id: Optional[str] = None
    status_code: Optional[int] = None


class Project(_Model):
    id: str
    name: str
    owner_id: str
    settings: Dict[str, Any]
    created_at: datetime
    updated_at: datetime
    description: Optional[str] = None


class Tenant(_Model):
    id: str
    tenant_id: str
    project_id: str
    name: str
    isolation_level: str
    encryption_enabled: bool
    settings: Dict[str, Any]
    is_active: bool
    created_at: datetime
    updated_at: datetime
    max_memories: Optional[int] = None
    max_storage_bytes: Optional[int] = None


class ApiKey(_Model):
    id: str
    name: str
    prefix: str
    scopes: List[str]
    created_at: datetime
    expires_at: Optional[datetime] = None
    last_used_at: Optional[datetime] = None
    revoked_at: Optional[datetime] = None


class CreatedKey(ApiKey):
    secret: str
    """The key itself. The server shows it only in this answer."""


class MaintenanceReport(_Model):
    analytics_refreshed: bool
    errors: List[Any]
    partitions_created: Optional[int] = None
    expired_memories_removed: Optional[int] = None
    audit_rows_archived: Optional[int] = None
    usage_reconciled: Optional[Dict[str, Any]] = None
    vector_indexes: Optional[Dict[str, Any]] = None


class Health(_Model):
    status: str


class Ready(_Model):
    status: str
    database: str
    pgvector_version: Optional[str] = None
    embedder: Optional[str] = None
    error: Optional[str] = None
