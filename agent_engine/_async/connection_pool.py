"""A small pool of direct Postgres connections that fails fast and heals after drops.

Why not psycopg_pool: it opens connections in background workers, so a caller waiting for
one learns nothing of a refused password or a missing database but a PoolTimeoutError after
the whole timeout (the cause only reaches a log); its checkout check sleeps 1, 2, 4 s between
failed checks; and a dead connection found at checkout leaves its dead siblings to fail the
next callers one by one. Here:

- A caller that needs a new connection opens it itself, so a connection error reaches it at
  once, with its cause.
- Every checkout first looks at the socket without a round trip: a connection the server or a
  pooler ended while it sat idle (restart, `pg_terminate_backend`, idle timeout) has its
  goodbye waiting there, or the end of the stream. A connection whose server spoke unasked,
  or that sat idle for `check_idle_after` seconds or more, is also pinged, which settles a
  goodbye still arriving and catches a peer that forgot the connection (the ping meets a
  reset). A connection found dead certainly never ran the caller's statement: it is
  discarded, the other idle connections are checked the same way (no round trip), one
  WARNING is logged on the `agent_engine` logger, and the caller is served by another
  connection (a DEBUG line).
- Waiters are served first come, first served: a returned connection, or the room left by a
  discarded one, goes to the longest waiting caller. A waiter that gives up (deadline,
  cancellation) leaves nothing behind.

Connections are lent out one caller at a time; the pool never runs statements of its own
but the ping. The async pool belongs to the event loop that uses it; the sync one is
thread-safe.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from time import monotonic
from typing import Any

import psycopg

from agent_engine._acompat import AEvent, ALock
from agent_engine._connection_checks import PoolClosedError, PoolTimeoutError, quiet, reusable

logger = logging.getLogger("agent_engine")

_WARNING_INTERVAL = 1.0
"""Seconds during which further drops are logged at DEBUG: a restart drops every connection
at once, and operators need one line for it, not one per connection."""


@dataclass(slots=True)
class _Waiter:
    """A caller queued for a connection, or for the room to open one."""

    ready: AEvent = field(default_factory=AEvent)
    connection: psycopg.AsyncConnection[Any] | None = None
    """Handed over by putconn; None when the waiter was given room to open one."""
    closed: bool = False


@dataclass(slots=True)  # one per putconn: not frozen, whose __init__ costs twice as much
class _Idle:
    connection: psycopg.AsyncConnection[Any]
    returned_at: float


class AsyncConnectionPool:
    """At most `max_size` connections to `conninfo`, opened on demand by the callers."""

    def __init__(
        self,
        conninfo: str,
        *,
        max_size: int,
        connect_kwargs: dict[str, Any],
        connection_class: type[psycopg.AsyncConnection[Any]] = psycopg.AsyncConnection,
        check_idle_after: float = 1.0,
    ) -> None:
        self._conninfo = conninfo
        self._max_size = max_size
        self._connect_kwargs = connect_kwargs
        self._connection_class = connection_class
        self._check_idle_after = check_idle_after
        self._lock = ALock()
        self._idle: list[_Idle] = []  # a stack: the most recently used connection goes first
        self._waiters: deque[_Waiter] = deque()
        self._size = 0  # connections idle, lent out, or being opened
        self._closed = False
        self._warned_at = -math.inf

    @property
    def max_size(self) -> int:
        """The most connections the pool opens."""
        return self._max_size

    async def getconn(self, deadline: float) -> psycopg.AsyncConnection[Any]:
        """A live connection, lent to the caller until `putconn`.

        Raises PoolTimeoutError if none is free by `deadline` (a `time.monotonic()` value),
        PoolClosedError after `aclose()`, or the psycopg error of a failed connection attempt.
        """
        while True:
            idle = await self._take(deadline)
            if idle is None:
                return await self._open(deadline)
            if await self._usable(idle):
                return idle.connection
            await self._forget(idle.connection)
            found = 1 + await self._discard_dead_idle()
            self._warn(
                "found %d dropped database connection(s) in the pool (server restart, "
                "terminated backend or pooler timeout); discarded them",
                found,
            )
            logger.debug("the statement never ran on the dropped connection; using another")

    async def putconn(self, connection: psycopg.AsyncConnection[Any]) -> None:
        """Give a lent connection back. A broken one is discarded, and then the idle ones
        are checked too (without a round trip), since what broke one often broke all."""
        if not reusable(connection):
            await self._forget(connection)
            dead = await self._discard_dead_idle()
            self._warn(
                "a database connection broke during a call; discarded it and %d dropped idle "
                "one(s)",
                dead,
            )
            return
        with self._lock:
            if not self._closed:
                waiter = self._next_waiter()
                if waiter is not None:
                    waiter.connection = connection
                    waiter.ready.set()
                else:
                    self._idle.append(_Idle(connection, monotonic()))
                return
            self._size -= 1
        await connection.close()

    async def aclose(self) -> None:
        """Close the idle connections and refuse every later checkout; connections lent out
        are closed when they come back. Callers waiting get PoolClosedError."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self._size -= len(idle)
            while self._waiters:
                waiter = self._waiters.popleft()
                waiter.closed = True
                waiter.ready.set()
        for entry in idle:
            await entry.connection.close()

    # Checkout

    async def _take(self, deadline: float) -> _Idle | None:
        """An idle connection, or None when the caller may open a new one."""
        with self._lock:
            if self._closed:
                raise PoolClosedError
            if self._idle:
                return self._idle.pop()
            if self._size < self._max_size and not self._waiters:
                self._size += 1
                return None
            waiter = _Waiter()
            self._waiters.append(waiter)
        try:
            arrived = await waiter.ready.wait_for(max(0.0, deadline - monotonic()))
        except BaseException:
            await self._give_up(waiter)
            raise
        if not arrived:
            await self._give_up(waiter)
            raise PoolTimeoutError
        if waiter.closed:
            raise PoolClosedError
        if waiter.connection is not None:
            # Handed over straight from putconn: it was in use a moment ago.
            return _Idle(waiter.connection, monotonic())
        return None  # room was made for it: open a new connection

    async def _give_up(self, waiter: _Waiter) -> None:
        """Leave the queue; pass on what was handed over meanwhile (cancelled, timed out)."""
        with self._lock:
            if not waiter.ready.is_set():
                self._waiters.remove(waiter)
                return
        if waiter.closed:
            return
        if waiter.connection is not None:
            await self.putconn(waiter.connection)
        else:
            self._release_room()

    def _next_waiter(self) -> _Waiter | None:
        return self._waiters.popleft() if self._waiters else None

    async def _open(self, deadline: float) -> psycopg.AsyncConnection[Any]:
        seconds = max(1, math.ceil(deadline - monotonic()))
        try:
            return await self._connection_class.connect(
                self._conninfo, **{**self._connect_kwargs, "connect_timeout": seconds}
            )
        except BaseException:
            self._release_room()
            raise

    async def _usable(self, idle: _Idle) -> bool:
        """Whether an idle connection can take a statement (a ping only if in doubt)."""
        connection = idle.connection
        looks = quiet(connection)
        if looks is None:
            return False
        if looks and monotonic() - idle.returned_at < self._check_idle_after:
            return True
        try:
            await connection.execute("")
        except psycopg.Error:
            return False
        return True

    # Discarding

    def _warn(self, message: str, count: int) -> None:
        now = monotonic()
        with self._lock:
            hushed = now - self._warned_at < _WARNING_INTERVAL
            if not hushed:
                self._warned_at = now
        logger.log(logging.DEBUG if hushed else logging.WARNING, message, count)

    async def _forget(self, connection: psycopg.AsyncConnection[Any]) -> None:
        await connection.close()
        self._release_room()

    def _release_room(self) -> None:
        """One connection fewer: the longest waiting caller may open one instead."""
        with self._lock:
            waiter = None if self._closed else self._next_waiter()
            if waiter is None:
                self._size -= 1
                return
            waiter.ready.set()

    async def _discard_dead_idle(self) -> int:
        """Close the idle connections whose socket shows they were dropped; how many."""
        with self._lock:
            candidates, self._idle = self._idle, []
        alive: list[_Idle] = []
        dead: list[_Idle] = []
        for entry in candidates:
            # In doubt (it spoke unasked) counts as dead here: no round trip in a sweep.
            (alive if quiet(entry.connection) else dead).append(entry)
        with self._lock:
            # Keep the order: the most recently used stay on top of the stack.
            self._idle[:0] = alive
        for entry in dead:
            await self._forget(entry.connection)
        return len(dead)
