"""Runs requests as SQL over a small pool of psycopg 3 connections (direct or Supavisor).

Only the wire lives here; the SQL and the reading of errors are `_postgres_sql`'s. Connections
run in autocommit and every statement goes as one simple-protocol message,
`set local statement_timeout = <ms>; <statement>`: one round trip and one implicit
transaction, in which the timeout bounds the statement (lock waits included) and then
lapses. That works behind Supabase's pooler in transaction mode, where a session-level SET
would leak to other clients and startup options are not passed through; parameters are bound
client-side (psycopg's ClientCursor), and there are no server-side prepared statements,
which that mode breaks.

How connections are checked, replaced after drops and opened is the pool's job; this module
turns what goes wrong into a `Failure` that says whether retrying can help.
"""

from __future__ import annotations

from collections.abc import Iterable
from time import monotonic
from typing import Any

import psycopg

from agent_engine._async.connection_pool import AsyncConnectionPool
from agent_engine._connection_checks import PoolClosedError, PoolTimeoutError
from agent_engine._dsn import parse_dsn
from agent_engine._postgres_sql import (
    bounded,
    compile_request,
    connect_failure,
    connection_options,
    database_failure,
    pool_timeout_failure,
    single_answer,
)
from agent_engine._transport import JSON, Failure, Request, closed_failure
from agent_engine.settings import DEFAULT_TIMEOUT, ConnectionLimits


class AsyncPostgresTransport:
    """The direct Postgres transport over a pool of psycopg connections.

    The async transport belongs to the event loop that uses it; the sync one is
    thread-safe.
    """

    def __init__(
        self, pool: AsyncConnectionPool, *, timeout: float, secrets: Iterable[str] = ()
    ) -> None:
        self._pool = pool
        self._timeout = timeout
        self._secrets = tuple(secret for secret in secrets if secret)
        self._closed = False

    @classmethod
    def connect(
        cls,
        dsn: str,
        *,
        pool_size: int,
        timeout: float = DEFAULT_TIMEOUT,
        check_idle_after: float = 1.0,
        connection_class: type[psycopg.AsyncConnection[Any]] = psycopg.AsyncConnection,
    ) -> AsyncPostgresTransport:
        """A transport with a pool of at most `pool_size` connections to `dsn`.

        Nothing connects yet: the first calls open connections. The DSN is parsed here
        (ConfigError, password masked, for a malformed one) and never logged; so are the
        numbers (ConfigError naming the argument: pool_size an int >= 1, timeout finite in
        (0, 3600], check_idle_after >= 0). `timeout` bounds every call: waiting for a
        connection, opening one (libpq's minimum is 2 s), and the statement itself, lock
        waits included (server-side statement_timeout). On TCP it also sets keepalives and
        tcp_user_timeout unless the DSN sets them, so a peer that vanished is noticed.
        `check_idle_after`: connections idle in the pool at least this long are pinged on
        checkout; 0 pings every checkout (one more round trip per operation).
        `connection_class` lets instrumentation (counting round trips) wrap the connections
        without changing how they are configured.
        """
        parameters = parse_dsn(dsn)
        limits = ConnectionLimits.of(
            pool_size=pool_size, timeout=timeout, check_idle_after=check_idle_after
        )
        pool = AsyncConnectionPool(
            dsn.strip(),
            max_size=limits.pool_size,
            connect_kwargs=connection_options(
                parameters, limits.timeout, psycopg.AsyncClientCursor
            ),
            connection_class=connection_class,
            check_idle_after=limits.check_idle_after,
        )
        return cls(pool, timeout=limits.timeout, secrets=[parameters.get("password", "")])

    async def execute(self, request: Request) -> JSON | Failure:
        """Run `request` as one statement; database and connection errors become a Failure."""
        if self._closed:
            return closed_failure()
        statement, parameters = compile_request(request)
        deadline = monotonic() + self._timeout
        try:
            connection = await self._pool.getconn(deadline)
        except PoolClosedError:
            return closed_failure()
        except PoolTimeoutError as error:
            return pool_timeout_failure(self._timeout, self._pool.max_size, error)
        except psycopg.Error as error:
            return connect_failure(error, self._secrets)
        try:
            cursor = await connection.execute(bounded(statement, deadline), parameters)
            cursor.nextset()  # past the SET's empty result, to the statement's rows
            rows = await cursor.fetchmany(2)
        except psycopg.Error as error:
            return database_failure(error, self._secrets)
        finally:
            await self._pool.putconn(connection)
        return single_answer(request, [row[0] for row in rows])

    async def aclose(self) -> None:
        """Close the pool; later calls fail with a non-retryable error saying so."""
        self._closed = True
        await self._pool.aclose()
