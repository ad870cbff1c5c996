"""What the connection pools (async and sync) know about a connection without a round trip.

Kept apart from the pools so both twins share it: whether a lent connection can go back to
the pool, and whether an idle one looks alive from its socket.
"""

from __future__ import annotations

import select
from typing import Any

import psycopg
from psycopg import pq

MAX_UNSOLICITED_READS = 4
"""Reads of unsolicited input at checkout: the goodbye of a dying connection is an error
message, then the end of the stream."""


class PoolTimeoutError(Exception):
    """No connection became free before the caller's deadline (every one is in use)."""


class PoolClosedError(Exception):
    """The pool was closed: no connection will ever be lent again."""


_OK = int(pq.ConnStatus.OK)
_IDLE = int(pq.TransactionStatus.IDLE)
# Plain ints: these checks run twice per call, and reading a member off an enum class costs
# more than the comparison (closed is status BAD, so status OK says it is open).


def reusable(connection: psycopg.BaseConnection[Any]) -> bool:
    """Whether a connection is open and idle, outside any transaction."""
    pgconn = connection.pgconn
    return pgconn.status == _OK and pgconn.transaction_status == _IDLE


def quiet(connection: psycopg.BaseConnection[Any]) -> bool | None:
    """How an idle connection looks from its socket, without a round trip.

    None: it is broken or closed. False: the server spoke unasked (it sends a FATAL message
    then ends the stream when it ends a connection, and the end may not have arrived yet;
    only a ping settles it). True: nothing to read, as an idle connection should be.
    """
    if not reusable(connection):
        return None
    spoke = False
    for _ in range(MAX_UNSOLICITED_READS):
        if not _readable(connection.pgconn.socket):
            break
        spoke = True
        try:
            connection.pgconn.consume_input()
        except psycopg.OperationalError:
            return None
        if connection.pgconn.status != _OK:
            return None
    return not spoke


def _readable(socket: int) -> bool:
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(socket, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([socket], [], [], 0)  # Windows has no poll()
    return bool(readable)
