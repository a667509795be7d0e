"""Typed exceptions.

Every error answer of Mnemo has one shape, ``{"error": {"code", "message", "details"}}``. The client
raises the subclass of :class:`APIError` that matches the HTTP status (and, for 403, the code), so
callers can catch what they care about::

    try:
        client.memories.get("m1")
    except mnemo_client.NotFoundError:
        ...  # unknown id, or another tenant's: both look the same
    except mnemo_client.RateLimitedError as e:
        time.sleep(e.retry_after or 1)
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "BadRequestError",
    "ConflictError",
    "ForbiddenError",
    "MnemoError",
    "NotFoundError",
    "PayloadTooLargeError",
    "QuotaExceededError",
    "RateLimitedError",
    "ServerError",
    "ServiceUnavailableError",
    "UnauthorizedError",
    "UnprocessableEntityError",
    "UnsupportedMediaTypeError",
    "ValidationError",
]


class MnemoError(Exception):
    """Base class of every exception this package raises."""


class APIConnectionError(MnemoError):
    """The server could not be reached, or the connection broke before an answer came."""

    def __init__(self, message: str, *, request: httpx.Request | None = None) -> None:
        super().__init__(message)
        self.request = request


class APITimeoutError(APIConnectionError):
    """No answer within the client's timeout."""


class APIError(MnemoError):
    """The server answered with an error status.

    Attributes:
        status: the HTTP status (e.g. 404).
        code: the machine-readable error code (e.g. ``"memory_not_found"``).
        message: the server's human-readable message.
        details: extra structured information (e.g. ``{"field": "k"}``), or ``None``.
        request_id: the ``x-request-id`` of the request, as written to the audit trail.
        retry_after: seconds from the ``Retry-After`` header, when the server sent one.
        response: the raw :class:`httpx.Response`.
    """

    def __init__(
        self,
        *,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.request_id = request_id
        self.retry_after = retry_after
        self.response = response

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status}, code={self.code!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )


class BadRequestError(APIError):
    """400: ``malformed_json``, ``invalid_query``, or ``invalid_cursor`` (a cursor this API did
    not return)."""


class UnauthorizedError(APIError):
    """401: missing, invalid, revoked or expired key."""


class ForbiddenError(APIError):
    """403: the key lacks the scope (``insufficient_scope``), a policy denies it
    (``policy_denied``), or a tenant key was used on the admin surface (``admin_only``)."""


class QuotaExceededError(ForbiddenError):
    """403 ``quota_exceeded``: the write would exceed the tenant's quota; nothing of it was kept."""


class NotFoundError(APIError):
    """404: the resource does not exist, or belongs to another tenant (indistinguishable by
    design)."""


class ConflictError(APIError):
    """409: ``memory_exists``, ``relationship_exists``, ``policy_exists``, ``tenant_exists``,
    ``project_has_tenants``, ``write_conflict`` (retry it)..."""


class PayloadTooLargeError(APIError):
    """413: the request body is larger than the server accepts."""


class UnsupportedMediaTypeError(APIError):
    """415: the body is not JSON."""


class ValidationError(APIError):
    """422 ``invalid_value`` (``details["field"]`` names the field) or ``invalid_body`` (wrong
    JSON types)."""


UnprocessableEntityError = ValidationError


class RateLimitedError(APIError):
    """429 ``rate_limited``: ``details["limit"]`` says which limit; wait ``retry_after`` seconds."""


class ServiceUnavailableError(APIError):
    """503: ``embedding_unavailable``, ``statement_timeout`` or ``database_unavailable``."""


class ServerError(APIError):
    """Any other 5xx (the server aims never to answer one)."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    422: ValidationError,
    429: RateLimitedError,
    503: ServiceUnavailableError,
}

_BY_CODE: dict[str, type[APIError]] = {
    "quota_exceeded": QuotaExceededError,
}


def parse_retry_after(value: str | None) -> float | None:
    """Seconds of a ``Retry-After`` header (delay-seconds or an HTTP date), or ``None``."""
    if value is None:
        return None
    value = value.strip()
    try:
        secs = float(value)
    except ValueError:
        from datetime import datetime, timezone
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        secs = (when - datetime.now(timezone.utc)).total_seconds()
    if secs != secs:  # NaN
        return None
    return max(0.0, secs)


def error_from_response(response: httpx.Response) -> APIError:
    """The exception for an error answer, whatever its body (the server's shape is expected)."""
    code = "http_error"
    message = response.reason_phrase or "error"
    details: dict[str, Any] | None = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        code = str(err.get("code", code))
        message = str(err.get("message", message))
        raw_details = err.get("details")
        details = raw_details if isinstance(raw_details, dict) else None
    status = response.status_code
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else APIError
    return cls(
        status=status,
        code=code,
        message=message,
        details=details,
        request_id=response.headers.get("x-request-id"),
        retry_after=parse_retry_after(response.headers.get("retry-after")),
        response=response,
    )
