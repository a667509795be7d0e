"""Python client for Mnemo, the multi-tenant long-term memory service for AI agents.

Example::

    from mnemo_client import Mnemo

    client = Mnemo()  # MNEMO_URL, MNEMO_API_KEY from the environment
    client.memories.create({"text": "The user prefers dark mode."}, memory_id="m1")
    print(client.memories.search("UI theme preference", k=5).results[0].memory.content)
"""

from ._base import OMIT
from ._client import AsyncMnemo, Mnemo
from ._errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    BadRequestError,
    ConflictError,
    ForbiddenError,
    MnemoError,
    NotFoundError,
    PayloadTooLargeError,
    QuotaExceededError,
    RateLimitedError,
    ServerError,
    ServiceUnavailableError,
    UnauthorizedError,
    UnprocessableEntityError,
    UnsupportedMediaTypeError,
    ValidationError,
)
from ._pagination import AsyncPaginator, Page, Paginator
from ._version import __version__
from .types import (
    ApiKey,
    AuditRecord,
    CreatedKey,
    Graph,
    GraphNode,
    Health,
    MaintenanceReport,
    Memory,
    Neighbours,
    NewMemory,
    Policy,
    Project,
    Ready,
    Related,
    Relationship,
    SearchFilter,
    SearchHit,
    SearchResult,
    Tenant,
    Usage,
)

__all__ = [
    "OMIT",
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "ApiKey",
    "AsyncMnemo",
    "AsyncPaginator",
    "AuditRecord",
    "BadRequestError",
    "ConflictError",
    "CreatedKey",
    "ForbiddenError",
    "Graph",
    "GraphNode",
    "Health",
    "MaintenanceReport",
    # models
    "Memory",
    "Mnemo",
    # errors
    "MnemoError",
    "Neighbours",
    "NewMemory",
    "NotFoundError",
    "Page",
    "Paginator",
    "PayloadTooLargeError",
    "Policy",
    "Project",
    "QuotaExceededError",
    "RateLimitedError",
    "Ready",
    "Related",
    "Relationship",
    "SearchFilter",
    "SearchHit",
    "SearchResult",
    "ServerError",
    "ServiceUnavailableError",
    "Tenant",
    "UnauthorizedError",
    "UnprocessableEntityError",
    "UnsupportedMediaTypeError",
    "Usage",
    "ValidationError",
    "__version__",
]
