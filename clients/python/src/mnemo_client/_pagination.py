"""Auto-paginating iterators: iterate items across pages, fetching each page only when needed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Generic, TypeVar

from ._calls import Page

T = TypeVar("T")

__all__ = ["AsyncPaginator", "Page", "Paginator"]


class Paginator(Generic[T]):
    """Iterates every item of a listing, fetching pages lazily.

    Example::

        for memory in client.memories.list(tags=["prefs"]):
            print(memory.memory_id)

        for page in client.memories.list(limit=100).pages():
            print(len(page.items), page.next_cursor)
    """

    def __init__(self, fetch: Callable[[str | None], Page[T]], start: str | None = None) -> None:
        self._fetch = fetch
        self._start = start

    def pages(self) -> Iterator[Page[T]]:
        """The pages themselves, each with ``items`` and ``next_cursor``."""
        cursor = self._start
        while True:
            page = self._fetch(cursor)
            yield page
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def __iter__(self) -> Iterator[T]:
        for page in self.pages():
            yield from page.items

    def to_list(self) -> list[T]:
        """Every item, fetching every page."""
        return list(self)


class AsyncPaginator(Generic[T]):
    """The async counterpart of :class:`Paginator`::

    async for memory in client.memories.list():
        ...
    """

    def __init__(
        self, fetch: Callable[[str | None], Awaitable[Page[T]]], start: str | None = None
    ) -> None:
        self._fetch = fetch
        self._start = start

    async def pages(self) -> AsyncIterator[Page[T]]:
        cursor = self._start
        while True:
            page = await self._fetch(cursor)
            yield page
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def __aiter__(self) -> AsyncIterator[T]:
        async for page in self.pages():
            for item in page.items:
                yield item

    async def to_list(self) -> list[T]:
        return [item async for item in self]
