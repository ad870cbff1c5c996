"""libpq's own trace of the protocol: what really went over the wire, message by message.

The round-trip tests count here rather than by wrapping psycopg's methods: the transports
may send through a cursor or straight through the libpq connection, and the wire is what
a round trip is.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar, Self

import psycopg
from psycopg import pq

TRACE_FLAGS = pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE
TRACE_LINE = re.compile(r"^(?P<direction>[FB])\t\d+\t(?P<message>\w+)(?:\t (?P<rest>.*))?$")


class Wire:
    """libpq's trace of the protocol messages of every connection the traced classes open.

    Each connection writes to a file of its own; `messages()` flushes them (untrace, then
    trace again) and reads what they hold so far.
    """

    watching: ClassVar[Wire | None] = None

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self.connections: list[psycopg.BaseConnection[Any]] = []
        self._descriptors: list[int] = []

    def watch(self, connection: psycopg.BaseConnection[Any]) -> None:
        path = self._directory / f"connection-{len(self.connections)}.trace"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self.connections.append(connection)
        self._descriptors.append(descriptor)
        self._trace(connection, descriptor)

    def messages(self) -> list[tuple[str, str, str]]:
        """(F or B, message type, the rest) of every message sent so far, in order per
        connection."""
        for connection, descriptor in zip(self.connections, self._descriptors, strict=True):
            if not connection.closed:
                connection.pgconn.untrace()  # flushes libpq's buffer
                self._trace(connection, descriptor)
        found = []
        for path in sorted(self._directory.glob("*.trace")):
            for line in path.read_text().splitlines():
                match = TRACE_LINE.match(line)
                if match:
                    found.append((match["direction"], match["message"], match["rest"] or ""))
        return found

    def round_trips(self) -> int:
        """Exchanges that ended: each simple query or Sync gets one ReadyForQuery."""
        return sum(1 for direction, message, _ in self.messages() if message == "ReadyForQuery")

    def stop(self) -> None:
        """Stop tracing and close the files (before the connections close)."""
        for connection in self.connections:
            if not connection.closed:
                connection.pgconn.untrace()
        for descriptor in self._descriptors:
            os.close(descriptor)
        self._descriptors = []
        self.connections = []

    @staticmethod
    def _trace(connection: psycopg.BaseConnection[Any], descriptor: int) -> None:
        connection.pgconn.trace(descriptor)
        connection.pgconn.set_trace_flags(TRACE_FLAGS)


class TracedConnection(psycopg.Connection[Any]):
    @classmethod
    def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
        connection = super().connect(conninfo, **kwargs)
        if Wire.watching is not None:
            Wire.watching.watch(connection)
        return connection


class TracedAsyncConnection(psycopg.AsyncConnection[Any]):
    @classmethod
    async def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
        connection = await super().connect(conninfo, **kwargs)
        if Wire.watching is not None:
            Wire.watching.watch(connection)
        return connection


def queries(messages: list[tuple[str, str, str]]) -> list[str]:
    """The text of each simple-protocol query the client sent, in order (a ping is "")."""
    return [
        rest[1:-1] if rest.startswith('"') else rest
        for d, m, rest in messages
        if d == "F" and m == "Query"
    ]
