"""Round trips counted at the connection: every exchange with the server is one `wait()`.

psycopg's `execute` waits once for its answer, and so does the transport, which sends its
message on the connection without a cursor and waits for the answer itself: counting the
waits counts both. The pool checks a connection on checkout with an empty query
(`execute("")`), which is a round trip of its own: it is counted apart from the operation's
statements, not hidden in them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import psycopg
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
