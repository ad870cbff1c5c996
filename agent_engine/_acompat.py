"""What differs between the async source (`_async/`) and the sync code generated from it.

The async modules use the `A`-prefixed names; `tools/unasync.py` renames them to the plain
ones when it writes `_sync/` (`AEvent` -> `Event`, `asleep` -> `sleep`, ...). Everything
else is the same code, so each pair below keeps the same methods and meaning.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Awaitable
from types import TracebackType
from typing import TypeVar

T = TypeVar("T")

Lock = threading.Lock


class ALock:
    """The async twin of threading.Lock around sections that never await.

    Those sections cannot be interleaved by other tasks of the loop, which is the only
    concurrency an async manager has (it belongs to one event loop), so nothing is locked.
    """

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None


class Event:
    """A one-shot signal between threads; `wait_for` says whether it came in time."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait_for(self, timeout: float) -> bool:
        return self._event.wait(timeout)


class AEvent:
    """A one-shot signal between tasks of one loop; `wait_for` says whether it came in time."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait_for(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            return self._event.is_set()
        return True


class LoopOwner:
    """The sync twin of ALoopOwner: any thread may call, so every caller is at home."""

    __slots__ = ()

    def is_foreign(self) -> bool:
        return False


class ALoopOwner:
    """Remembers the event loop that first used an async manager, and tells a call from
    another loop, whose connections (sockets, locks, futures) would not work there."""

    __slots__ = ("_loop",)

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def is_foreign(self) -> bool:
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return False
        if self._loop is None or self._loop.is_closed():
            # The first use, or the first loop is gone (asyncio.run() again, a test's loop):
            # the manager moves to this one.
            self._loop = loop
            return False
        return True


sleep = time.sleep
asleep = asyncio.sleep


def resolved(value: T | Awaitable[T]) -> T:
    """A plain callback's result; an awaitable (an async callback) is refused."""
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()  # never awaited, and never warned about either
        raise ValueError(
            "the callback returned an awaitable: an async callback needs AsyncSessionManager"
        )
    return value


async def aresolved(value: T | Awaitable[T]) -> T:
    """A callback's result, awaited if the callback was async."""
    if inspect.isawaitable(value):
        return await value
    return value
