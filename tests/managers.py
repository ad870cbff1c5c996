"""Both managers behind one test API, so every suite runs against SessionManager and
AsyncSessionManager without being written twice.

The suites are written as plain calls (`manager.add_turn(...)`). For the `async` flavour,
the manager under test is a real AsyncSessionManager whose coroutines run on one event loop
in a background thread (an anyio blocking portal): each call a test makes is a task on that
loop, and calls made from several test threads at once are concurrent tasks of the same
loop, which is how an async app shares its manager. Nothing of the async manager is
replaced: its transports, its pool and its errors are the ones users get. Native async
tests (`async def`, awaited) are in the `*_async*` test modules.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, cast

from anyio.from_thread import BlockingPortal

from agent_engine import AgentRegistry, AsyncSessionManager, SessionManager
from agent_engine._async.postgres_transport import AsyncPostgresTransport
from agent_engine._sync.postgres_transport import PostgresTransport
from agent_engine._transport import JSON, Failure, Request

Flavour = Literal["sync", "async"]
FLAVOURS: tuple[Flavour, ...] = ("sync", "async")


class BlockingManager:
    """An AsyncSessionManager whose coroutine methods are called like plain ones.

    Each method call runs the coroutine to completion on the portal's loop and returns its
    result or raises its exception (the same object, cause chain included).
    """

    def __init__(self, manager: AsyncSessionManager, portal: BlockingPortal) -> None:
        self.wrapped = manager
        self._portal = portal

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.wrapped, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        @functools.wraps(attribute)
        def call(*args: Any, **kwargs: Any) -> Any:
            return self._portal.call(functools.partial(attribute, *args, **kwargs))

        return call

    def close(self) -> None:
        self._portal.call(self.wrapped.aclose)

    def __enter__(self) -> BlockingManager:
        self._portal.call(self.wrapped.__aenter__)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._portal.call(self.wrapped.__aexit__, exc_type, exc, traceback)


class SpyTransport:
    """Records every request given to the transport it wraps (sync or async), then runs it."""

    def __init__(self, transport: PostgresTransport | AsyncPostgresTransport) -> None:
        self.transport = transport
        self.requests: list[Request] = []
        self._lock = threading.Lock()

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)


class _SyncSpy(SpyTransport):
    transport: PostgresTransport

    def execute(self, request: Request) -> JSON | Failure:
        self.record(request)
        return self.transport.execute(request)

    def close(self) -> None:
        self.transport.close()


class _AsyncSpy(SpyTransport):
    transport: AsyncPostgresTransport

    async def execute(self, request: Request) -> JSON | Failure:
        self.record(request)
        return await self.transport.execute(request)

    async def aclose(self) -> None:
        await self.transport.aclose()


class Managers:
    """Builds managers and direct transports of one flavour, each the way users build them.

    Every manager is typed as SessionManager: the async one is driven by BlockingManager,
    which has the same methods.
    """

    def __init__(self, flavour: Flavour, portal: BlockingPortal) -> None:
        self.flavour = flavour
        self.portal = portal

    def __repr__(self) -> str:
        return f"Managers({self.flavour})"

    @property
    def is_async(self) -> bool:
        return self.flavour == "async"

    def driven(self, manager: AsyncSessionManager) -> SessionManager:
        """The async manager, callable from test code like the sync one."""
        return cast(SessionManager, BlockingManager(manager, self.portal))

    def from_postgres(self, dsn: str, **options: Any) -> SessionManager:
        """SessionManager.from_postgres or AsyncSessionManager.from_postgres."""
        if self.is_async:
            return self.driven(AsyncSessionManager.from_postgres(dsn, **options))
        return SessionManager.from_postgres(dsn, **options)

    def postgres_transport(
        self, dsn: str, **options: Any
    ) -> PostgresTransport | AsyncPostgresTransport:
        """The direct transport of this flavour (nothing connects yet)."""
        if self.is_async:
            return AsyncPostgresTransport.connect(dsn, **options)
        return PostgresTransport.connect(dsn, **options)

    def over(
        self,
        transport: PostgresTransport | AsyncPostgresTransport | SpyTransport,
        *,
        registry: AgentRegistry | None = None,
    ) -> SessionManager:
        """A manager over a transport of this flavour."""
        if self.is_async:
            return self.driven(AsyncSessionManager(cast(Any, transport), registry=registry))
        return SessionManager(cast(Any, transport), registry=registry)

    def spy(self, dsn: str, **options: Any) -> SpyTransport:
        """A spying direct transport of this flavour."""
        transport = self.postgres_transport(dsn, **options)
        if isinstance(transport, AsyncPostgresTransport):
            return _AsyncSpy(transport)
        return _SyncSpy(transport)

    def close_transport(self, transport: object) -> None:
        """close() a sync transport, or aclose() an async one on the portal's loop."""
        aclose: Callable[[], Any] | None = getattr(transport, "aclose", None)
        if aclose is not None:
            self.portal.call(aclose)
        else:
            cast(Any, transport).close()

    def run(self, function: Callable[[], Any]) -> Any:
        """Call `function` where the managers live: on the portal's loop for async."""
        return self.portal.call(function) if self.is_async else function()


class LoopTicks:
    """Counts how often the running event loop got to run another task, every `interval`
    seconds, while the block runs: a call that blocked the loop would leave it near 0."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.count = 0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.count += 1

    async def __aenter__(self) -> LoopTicks:
        self._task = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
