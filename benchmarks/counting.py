"""Round trips counted at the connection: every exchange with the server is one `wait()`.

psycopg's `execute` waits once for its answer, and so does the transport, which sends its
message on the connection without a cursor and waits for the answer itself: counting the
waits counts both. The pool checks a connection on checkout with an empty query
(`execute("")`), which is a round trip of its own: it is counted apart from the operation's
statements, not hidden in them.

WireTrace counts another way, for clients whose waits and round trips differ (SQLAlchemy's
psycopg dialect runs outside autocommit: psycopg sends BEGIN inside the first statement's
wait, and pipelines an executemany over two waits): it reads libpq's protocol trace of every
open TracedConnection and counts the ReadyForQuery messages, one per answered request.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any, TypeVar

import psycopg
from psycopg import pq
from psycopg.abc import Params, PQGen, Query
from psycopg.rows import TupleRow

T = TypeVar("T")

_CHECKOUT_CHECK_QUERY = ""


@dataclass(frozen=True, slots=True)
class RoundTrips:
    """Statements and checkout checks sent to the server."""

    statements: int = 0
    checkout_checks: int = 0

    def __sub__(self, earlier: RoundTrips) -> RoundTrips:
        return RoundTrips(
            self.statements - earlier.statements, self.checkout_checks - earlier.checkout_checks
        )

    def per(self, operations: int) -> dict[str, float]:
        """Statements, checks and their sum per operation, for a report row."""
        statements = self.statements / operations
        checks = self.checkout_checks / operations
        return {
            "statements_per_op": statements,
            "checkout_checks_per_op": checks,
            "round_trips_per_op": statements + checks,
        }


class RoundTripCounter:
    """A thread-safe tally of what every CountingConnection sent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._statements = 0
        self._checkout_checks = 0

    def record(self, *, checkout_check: bool) -> None:
        """Count one exchange: the pool's empty checkout query, or a statement."""
        with self._lock:
            if checkout_check:
                self._checkout_checks += 1
            else:
                self._statements += 1

    def snapshot(self) -> RoundTrips:
        """The totals so far; subtract an earlier snapshot to count a stretch of work."""
        with self._lock:
            return RoundTrips(self._statements, self._checkout_checks)

    def counted(self, work: Callable[[], T]) -> tuple[T, RoundTrips]:
        """Run `work`; its result and the round trips sent meanwhile (by every thread)."""
        before = self.snapshot()
        result = work()
        return result, self.snapshot() - before


ROUND_TRIPS = RoundTripCounter()
"""The tally of every CountingConnection in this process."""


class CountingConnection(psycopg.Connection[TupleRow]):
    """A psycopg connection that reports each exchange with the server to ROUND_TRIPS.

    Lent to one caller at a time by the pool, so the flag marking the checkout query needs
    no lock.
    """

    _checking = False

    def execute(
        self,
        query: Query,
        params: Params | None = None,
        *,
        prepare: bool | None = None,
        binary: bool = False,
    ) -> psycopg.Cursor[TupleRow]:
        self._checking = query == _CHECKOUT_CHECK_QUERY
        try:
            # The base class splits this signature into overloads (template strings take no
            # params); passing the caller's arguments through unchanged satisfies whichever
            # overload the caller matched.
            return super().execute(query, params, prepare=prepare, binary=binary)  # type: ignore[arg-type]
        finally:
            self._checking = False

    def wait(self, gen: PQGen[T], interval: float = 0.1, timeout: float | None = None) -> T:
        ROUND_TRIPS.record(checkout_check=self._checking)
        return super().wait(gen, interval, timeout)


_TRACEABLE: weakref.WeakSet[TracedConnection] = weakref.WeakSet()

WIRE_TRACE_SUPPORTED = sys.platform == "linux"
"""psycopg traces a connection (PQtrace) on Linux only."""


class TracedConnection(psycopg.AsyncConnection[TupleRow]):
    """An asyncio psycopg connection that WireTrace can trace: it registers when it opens.

    Pass it where a client takes a connection class (AsyncPostgresTransport.connect) or a
    connection factory (SQLAlchemy's `async_creator`); untraced, it is a plain connection.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _TRACEABLE.add(self)


class WireTrace:
    """`with WireTrace() as trace:` then `trace.round_trips`: the requests every open
    TracedConnection had answered meanwhile, counted on the wire.

    One round trip is one ReadyForQuery message from the server: it ends the answer to a
    simple query (which may hold several statements) and to an extended-protocol request
    up to its Sync (psycopg pipelines an executemany's Bind/Execute messages before one
    Sync). Run the work once untraced first: a connection opened during the trace is not
    traced, and is refused at the end (RuntimeError) rather than left uncounted.
    """

    def __init__(self) -> None:
        self.round_trips = 0
        self._files: list[tuple[TracedConnection, IO[str]]] = []

    def __enter__(self) -> WireTrace:
        if not WIRE_TRACE_SUPPORTED:
            raise RuntimeError("psycopg traces connections on Linux only")
        for connection in list(_TRACEABLE):
            if connection.closed:
                continue
            file = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")
            connection.pgconn.trace(file.fileno())
            connection.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
            self._files.append((connection, file))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        traced = {id(connection) for connection, _ in self._files}
        for connection, file in self._files:
            # PQuntrace flushes what libpq buffered; the file is read from the start.
            if not connection.closed:
                connection.pgconn.untrace()
            with file:
                file.seek(0)
                self.round_trips += sum(_answered(line) for line in file)
        self._files.clear()
        opened = [c for c in _TRACEABLE if id(c) not in traced and not c.closed]
        if opened and kind is None:
            raise RuntimeError(
                f"{len(opened)} connection(s) opened during the trace: run the work once first"
            )


def _answered(line: str) -> bool:
    # REGRESS_MODE lines: direction, length, message name, fields (tab-separated).
    fields = line.split("\t", 3)
    return len(fields) >= 3 and fields[0] == "B" and fields[2] == "ReadyForQuery"
