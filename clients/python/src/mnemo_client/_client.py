"""The clients: :class:`Mnemo` (blocking) and :class:`AsyncMnemo` (asyncio)."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType

import httpx

from . import _calls as c
from ._async_resources import (
    AsyncAdmin,
    AsyncAudit,
    AsyncMemories,
    AsyncPolicies,
    AsyncRelationships,
    AsyncUsageResource,
)
from ._base import (
    DEFAULT_MAX_RETRIES,
    AsyncSender,
    Options,
    SyncSender,
    resolve_options,
)
from ._resources import Admin, Audit, Memories, Policies, Relationships, UsageResource
from .types import Health, Ready

__all__ = ["AsyncMnemo", "Mnemo"]


class Mnemo:
    """A blocking client of a Mnemo server.

    Arguments default to the environment: ``MNEMO_URL`` (else ``http://127.0.0.1:8080``),
    ``MNEMO_API_KEY`` (a tenant key, for ``memories``, ``relationships``, ``policies``, ``usage``,
    ``audit``) and ``MNEMO_ADMIN_KEY`` (for ``admin``).

    Args:
        base_url: the server's URL.
        api_key: a tenant API key.
        admin_key: the admin key, needed only for ``client.admin``.
        timeout: seconds per request (or an :class:`httpx.Timeout`); default 30.
        max_retries: extra attempts after a 429, a 503 or a connection failure (see
            :mod:`mnemo_client._base` for which operations are retried on which failures).
        backoff_base, backoff_max: exponential backoff with full jitter when the server sends
            no ``Retry-After``: ``random(0, min(backoff_max, backoff_base * 2**attempt))``.
        max_retry_wait: a ``Retry-After`` longer than this (seconds) is not waited for; the
            error is raised instead.
        headers: extra headers for every request (e.g. ``{"x-request-id": "..."}``).
        http_client: an :class:`httpx.Client` to use (its transport, proxies...); the client
            does not close one it was given.

    Example::

        from mnemo_client import Mnemo

        with Mnemo() as client:  # MNEMO_URL, MNEMO_API_KEY
            client.memories.create({"text": "The user prefers dark mode."}, memory_id="m1")
            for hit in client.memories.search("UI theme preference", k=5).results:
                print(hit.score, hit.memory.content)
    """

    memories: Memories
    relationships: Relationships
    policies: Policies
    usage: UsageResource
    audit: Audit
    admin: Admin

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        admin_key: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        max_retry_wait: float = 60.0,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        self._options: Options = resolve_options(
            base_url,
            api_key,
            admin_key,
            timeout,
            max_retries,
            backoff_base,
            backoff_max,
            max_retry_wait,
            headers,
        )
        self._sender = SyncSender(self._options, http_client)
        self.memories = Memories(self._sender)
        self.relationships = Relationships(self._sender)
        self.policies = Policies(self._sender)
        self.usage = UsageResource(self._sender)
        self.audit = Audit(self._sender)
        self.admin = Admin(self._sender)

    @property
    def base_url(self) -> str:
        return self._options.base_url

    def with_options(
        self,
        *,
        api_key: str | None = None,
        admin_key: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Mnemo:
        """A client like this one, sharing its connection pool, with some options changed;
        ``headers`` are added to this client's.

        Example::

            traced = client.with_options(headers={"x-request-id": "job-42"}, timeout=5)
            traced.memories.create("written under request id job-42")
        """
        o = self._options
        return Mnemo(
            o.base_url,
            api_key=api_key if api_key is not None else o.api_key,
            admin_key=admin_key if admin_key is not None else o.admin_key,
            timeout=timeout if timeout is not None else o.timeout,
            max_retries=max_retries if max_retries is not None else o.max_retries,
            backoff_base=o.backoff_base,
            backoff_max=o.backoff_max,
            max_retry_wait=o.max_retry_wait,
            headers={**o.headers, **(headers or {})},
            http_client=self._sender.http,
        )

    def health(self) -> Health:
        """``GET /healthz``: the process is up."""
        return self._sender.send(c.health())

    def ready(self) -> Ready:
        """``GET /readyz``: database reachable, pgvector version, embedder (``status`` is
        ``"ready"`` or not; a 503 answer is returned, not raised)."""
        return self._sender.send(c.ready())

    def close(self) -> None:
        """Close the connection pool (only when the client created it)."""
        self._sender.close()

    def __enter__(self) -> Mnemo:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncMnemo:
    """The asyncio client: the same resources and arguments as :class:`Mnemo`, awaited.

    Example::

        import asyncio
        from mnemo_client import AsyncMnemo

        async def main() -> None:
            async with AsyncMnemo() as client:
                await client.memories.create({"text": "The user prefers dark mode."})
                async for m in client.memories.list():
                    print(m.memory_id)

        asyncio.run(main())
    """

    memories: AsyncMemories
    relationships: AsyncRelationships
    policies: AsyncPolicies
    usage: AsyncUsageResource
    audit: AsyncAudit
    admin: AsyncAdmin

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        admin_key: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        max_retry_wait: float = 60.0,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._options: Options = resolve_options(
            base_url,
            api_key,
            admin_key,
            timeout,
            max_retries,
            backoff_base,
            backoff_max,
            max_retry_wait,
            headers,
        )
        self._sender = AsyncSender(self._options, http_client)
        self.memories = AsyncMemories(self._sender)
        self.relationships = AsyncRelationships(self._sender)
        self.policies = AsyncPolicies(self._sender)
        self.usage = AsyncUsageResource(self._sender)
        self.audit = AsyncAudit(self._sender)
        self.admin = AsyncAdmin(self._sender)

    @property
    def base_url(self) -> str:
        return self._options.base_url

    def with_options(
        self,
        *,
        api_key: str | None = None,
        admin_key: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncMnemo:
        """A client like this one, sharing its connection pool, with some options changed
        (see :meth:`Mnemo.with_options`)."""
        o = self._options
        return AsyncMnemo(
            o.base_url,
            api_key=api_key if api_key is not None else o.api_key,
            admin_key=admin_key if admin_key is not None else o.admin_key,
            timeout=timeout if timeout is not None else o.timeout,
            max_retries=max_retries if max_retries is not None else o.max_retries,
            backoff_base=o.backoff_base,
            backoff_max=o.backoff_max,
            max_retry_wait=o.max_retry_wait,
            headers={**o.headers, **(headers or {})},
            http_client=self._sender.http,
        )

    async def health(self) -> Health:
        return await self._sender.send(c.health())

    async def ready(self) -> Ready:
        return await self._sender.send(c.ready())

    async def aclose(self) -> None:
        await self._sender.aclose()

    async def __aenter__(self) -> AsyncMnemo:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
