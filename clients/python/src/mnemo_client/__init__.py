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
    "Mnemo", "AsyncMnemo", "OMIT", "Page", "Paginator", "AsyncPaginator", "__version__",
    # errors
    "MnemoError", "APIConnectionError", "APITimeoutError", "APIError", "BadRequestError",
    "UnauthorizedError", "ForbiddenError", "QuotaExceededError", "NotFoundError", "ConflictError",
    "PayloadTooLargeError", "UnsupportedMediaTypeError", "ValidationError",
    "UnprocessableEntityError", "RateLimitedError", "ServiceUnavailableError", "ServerError",
    # models
    "Memory", "NewMemory", "SearchFilter", "SearchHit", "SearchResult", "Related", "Relationship",
    "Neighbours", "GraphNode", "Graph", "Policy", "Usage", "AuditRecord", "Project", "Tenant",
    "ApiKey", "CreatedKey", "MaintenanceReport", "Health", "Ready",
]
