"""Runs requests as SQL over a small pool of psycopg 3 connections (direct or Supavisor).

Only the wire lives here; the SQL and the reading of errors are `_postgres_sql`'s. Connections
run in autocommit and, by default, every statement goes as one simple-protocol message,
`set local statement_timeout = <ms>; <statement>`: one round trip and one implicit
transaction, in which the timeout bounds the statement (lock waits included) and then
lapses. That works behind Supabase's pooler in transaction mode, where a session-level SET
would leak to other clients and startup options are not passed through; parameters are bound
client-side (psycopg's ClientCursor), and there are no server-side prepared statements,
which that mode breaks.

With `prepare=True` (a connection of our own: direct, or the pooler's session mode) each
statement is prepared on each connection the first time and then only executed by name, its
values bound server-side, still one round trip per call; the timeout is then the session's
statement_timeout, set in the same message whenever the time a call has left differs from
it (see `_prepared`).

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
from agent_engine._errors import ConfigError
from agent_engine._postgres_exchange import aexchange
from agent_engine._postgres_sql import (
    STATEMENTS,
    Parameter,
    Statement,
    connect_failure,
    connection_options,
    database_failure,
    first_values,
    milliseconds_left,
    pool_timeout_failure,
    single_answer,
)
from agent_engine._prepared import PreparedSessions
from agent_engine._transport import JSON, Failure, JSONText, Request, closed_failure
from agent_engine.settings import DEFAULT_TIMEOUT, ConnectionLimits


class AsyncPostgresTransport:
    """The direct Postgres transport over a pool of psycopg connections.

    The async transport belongs to the event loop that uses it; the sync one is
    thread-safe.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        timeout: float,
        secrets: Iterable[str] = (),
        prepare: bool = False,
    ) -> None:
        self._pool = pool
        self._timeout = timeout
        self._secrets = tuple(secret for secret in secrets if secret)
        self._prepare = prepare
        self._sessions = PreparedSessions()
        self._closed = False

    @classmethod
    def connect(
        cls,
        dsn: str,
        *,
        pool_size: int,
        timeout: float = DEFAULT_TIMEOUT,
        check_idle_after: float = 1.0,
        prepare: bool = False,
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
        `prepare`: server-side prepared statements (default off): each statement is prepared
        once per connection, then only executed, still in one round trip, with the timeout
        kept on the session. Only for a connection that stays ours for its whole session (a
        direct connection, or Supavisor's session mode on port 5432): transaction mode (port
        6543) hands the server connection to other clients between statements, so neither a
        prepared statement nor a session setting stays with it. ConfigError if not a bool.
        `connection_class` lets instrumentation (counting round trips) wrap the connections
        without changing how they are configured.
        """
        if not isinstance(prepare, bool):
            raise ConfigError(
                f"prepare must be True or False, got {type(prepare).__name__}", variable="prepare"
            )
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
        secrets = [parameters.get("password", "")]
        return cls(pool, timeout=limits.timeout, secrets=secrets, prepare=prepare)

    async def execute(self, request: Request) -> JSON | Failure:
        """Run `request` as one statement; database and connection errors become a Failure."""
        if self._closed:
            return closed_failure()
        statement, parameters = STATEMENTS.statement(request)
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
            if self._prepare:
                values = await self._prepared(connection, statement, parameters, deadline)
            else:
                # The message is built and sent without a cursor, and the answer read as JSON
                # text: what a ClientCursor would do, minus its general machinery, which
                # cost more client CPU than the rest of the call (see _postgres_sql).
                query = statement.bounded_query(parameters, deadline, connection.pgconn)
                values = first_values(await aexchange(connection, query), connection)
        except psycopg.Error as error:
            return database_failure(error, self._secrets)
        finally:
            await self._pool.putconn(connection)
        return single_answer(request, values)

    async def _prepared(
        self,
        connection: psycopg.AsyncConnection[Any],
        statement: Statement,
        parameters: list[Parameter],
        deadline: float,
    ) -> list[JSONText | None]:
        """The statement's answer, run as a prepared statement in one round trip."""
        session = self._sessions.of(connection)
        while True:
            milliseconds = milliseconds_left(deadline)
            call = session.call(statement, parameters, milliseconds, connection.pgconn)
            results = await aexchange(connection, call.message)
            if not session.settle(call, results):
                return first_values(results, connection)

    async def aclose(self) -> None:
        """Close the pool; later calls fail with a non-retryable error saying so."""
        self._closed = True
        await self._pool.aclose()
