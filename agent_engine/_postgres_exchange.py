"""One simple-protocol message sent on a psycopg connection and its whole answer read.

The sync and async twins the direct transport's cursorless path uses (`tools/unasync.py`
renames `aexchange` to `exchange`); kept apart from `_acompat` because they need psycopg,
which only the `postgres` extra installs.

The sync one is psycopg's own wait, a C loop around poll(). The async one waits for the
socket itself instead of going through `AsyncConnection.wait`, which costs the event loop
more per wait than the exchange needs: two closures, a timer that wakes it every 100 ms to
look for an interrupt (asyncio delivers a cancellation to the awaiting task anyway) and
bookkeeping for generators that write a lot. With 8 tasks on one loop, the loop's thread is
what limits the calls per second (it shares two cores with the server's backends), so what
it spends per call counts. What psycopg's wait does on an interruption is kept: the
statement is cancelled on the server and its answer drained, so the connection goes back to
the pool idle, or closed if that fails; never still busy.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg
from psycopg import pq
from psycopg.abc import PQGen
from psycopg.generators import execute
from psycopg.pq.abc import PGconn, PGresult
from psycopg.waiting import Ready, Wait

logger = logging.getLogger("agent_engine")

CANCEL_SECONDS = 5.0
"""How long an interrupted exchange waits for the server to cancel its statement (sending
the cancel request, then the rest of the answer) before closing the connection; psycopg's
figure."""

Message = bytes | tuple[bytes, list[bytes | None]]
"""What an exchange sends: a simple-protocol query, or a prepared statement's name and its
values in text format (see `_prepared`)."""

_INTERRUPTIONS = (asyncio.CancelledError, KeyboardInterrupt, SystemExit)
_READ, _WRITE = int(Wait.R), int(Wait.W)
_READABLE, _WRITABLE = int(Ready.R), int(Ready.W)


def exchange(connection: psycopg.Connection[Any], message: Message) -> list[PGresult]:
    """Send `message` and return every result of its answer."""
    pgconn = connection.pgconn
    _send(pgconn, message)
    return connection.wait(execute(pgconn))


async def aexchange(connection: psycopg.AsyncConnection[Any], message: Message) -> list[PGresult]:
    """Send `message` and return every result of its answer.

    Raises what `connection.wait` would. If interrupted (the task cancelled, Ctrl-C) while
    the statement runs, cancels it on the server and reads the rest of the answer, for up to
    CANCEL_SECONDS, then re-raises; the connection is closed if that did not finish.
    """
    pgconn = connection.pgconn
    _send(pgconn, message)
    answer = execute(pgconn)
    results: list[PGresult]
    try:
        state = next(answer)  # flushes the message; then nearly always waits to read
    except StopIteration as done:
        results = done.value
        return results
    loop = asyncio.get_running_loop()
    socket = pgconn.socket
    try:
        while True:
            state = answer.send(await _ready(loop, socket, state))
    except StopIteration as done:
        results = done.value
        return results
    except OSError as error:
        raise psycopg.OperationalError("connection socket closed") from error
    except _INTERRUPTIONS:
        if pgconn.transaction_status == pq.TransactionStatus.ACTIVE:
            await _cancel(connection, answer, state, loop, socket)
        raise


def _send(pgconn: PGconn, message: Message) -> None:
    if isinstance(message, bytes):
        pgconn.send_query(message)
    else:
        pgconn.send_query_prepared(*message)


async def _ready(loop: asyncio.AbstractEventLoop, socket: int, state: int) -> int:
    """Once the socket can do what the answer's generator waits for (`state`): what it can."""
    reading, writing = state & _READ, state & _WRITE
    if not (reading or writing):
        raise psycopg.InternalError(f"bad poll status: {state}")
    ready: asyncio.Future[int] = loop.create_future()
    if reading:
        loop.add_reader(socket, _wake, ready, _READABLE)
    if writing:
        loop.add_writer(socket, _wake, ready, _WRITABLE)
    try:
        return await ready
    finally:
        if reading:
            loop.remove_reader(socket)
        if writing:
            loop.remove_writer(socket)


def _wake(ready: asyncio.Future[int], what: int) -> None:
    # Both callbacks may run in one loop iteration when the generator waits on both.
    if not ready.done():
        ready.set_result(what)


async def _cancel(
    connection: psycopg.AsyncConnection[Any],
    answer: PQGen[list[PGresult]],
    state: int,
    loop: asyncio.AbstractEventLoop,
    socket: int,
) -> None:
    """Cancel the running statement on the server and drain its answer (psycopg's recovery
    in `AsyncConnection.wait`); close the connection if either does not finish in time."""
    pgconn = connection.pgconn
    try:
        async with asyncio.timeout(CANCEL_SECONDS):
            try:
                await connection.cancel_safe(timeout=CANCEL_SECONDS)
            except Exception as error:
                # The statement may still end by itself (its timeout bounds it): drain anyway.
                logger.warning("query cancellation failed: %s", type(error).__name__)
            try:
                while True:
                    state = answer.send(await _ready(loop, socket, state))
            except StopIteration:
                pass  # the statement's error (canceled) or its result: nothing to return
    except TimeoutError:
        logger.warning("query not terminated after cancellation: closing connection")
        pgconn.finish()
    except BaseException as error:
        # Interrupted again, or the connection failed meanwhile: its state is unknown.
        logger.warning(
            "query cancellation interrupted (%s): closing connection", type(error).__name__
        )
        pgconn.finish()
        if not isinstance(error, Exception):
            raise
