"""Runs requests as SQL over a psycopg 3 connection pool (direct or Supavisor connection).

Only the wire format lives here. Each request compiles to ONE statement that returns JSON
built by Postgres itself (`to_jsonb`, `jsonb_agg`), the same JSON PostgREST would have sent,
so the shared parsers serve both transports. Connections run in autocommit: one statement
is one transaction and one round trip (no BEGIN/COMMIT exchanges). Every parameter is sent
as text of unknown type, so Postgres coerces it to the column's or argument's own type, as
PostgREST does with JSON values.

Behind Supabase's pooler in transaction mode (port 6543) server-side prepared statements
break ("prepared statement ... already exists"), so they are off (`prepare_threshold=None`;
0 would prepare everything). A connection that sat idle in the pool is checked on checkout,
so one the pooler or the server dropped meanwhile is replaced instead of handed out; one
reused within `check_idle_after` seconds is not pinged, which keeps a busy caller at one
round trip per operation (a connection broken in that window fails its statement with a
retryable error and is discarded).
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from agent_engine import schema
from agent_engine.transport import (
    JSON,
    NO_ROWS_CODE,
    AnyOf,
    Call,
    Condition,
    Embed,
    Equals,
    Failure,
    GreaterThan,
    Request,
    Select,
    Update,
)

Parameter = str | list[str] | None

_PARENT = sql.Identifier("t")
_CHILD = sql.Identifier("c")


class IdleConnectionCheck:
    """The pool's checkout check, run only on connections idle for `idle_after` seconds.

    psycopg_pool's own check pings every checkout: one more round trip per operation.
    The transport stamps each connection as it gives it back (not the pool's `reset` hook,
    which would move every return onto a worker thread); a fresh connection or one back
    within `idle_after` is handed out without a ping.
    """

    def __init__(self, idle_after: float) -> None:
        self._idle_after = idle_after
        self._lock = threading.Lock()
        self._returned_at: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = (
            weakref.WeakKeyDictionary()
        )

    def returned(self, connection: psycopg.Connection[Any]) -> None:
        """Remember when the connection went back to the pool."""
        with self._lock:
            self._returned_at[connection] = time.monotonic()

    def check(self, connection: psycopg.Connection[Any]) -> None:
        """Pool `check` hook: ping the connection if it has been idle long enough."""
        with self._lock:
            returned_at = self._returned_at.get(connection)
        if returned_at is not None and time.monotonic() - returned_at >= self._idle_after:
            ConnectionPool.check_connection(connection)


class PostgresTransport:
    """The direct Postgres transport over a psycopg_pool.ConnectionPool. Thread-safe."""

    def __init__(
        self,
        pool: ConnectionPool[Any],
        *,
        owns_pool: bool = False,
        idle_check: IdleConnectionCheck | None = None,
    ) -> None:
        self._pool = pool
        self._owns_pool = owns_pool
        self._idle_check = idle_check

    @classmethod
    def connect(
        cls,
        dsn: str,
        *,
        pool_size: int,
        timeout: float = 10.0,
        check_idle_after: float = 1.0,
        connection_class: type[psycopg.Connection[Any]] = psycopg.Connection,
    ) -> PostgresTransport:
        """Open a pool of at most `pool_size` connections to `dsn` (the DSN is never logged).

        `timeout` bounds the wait for a free connection and the connection attempt.
        `check_idle_after`: connections idle in the pool at least this long (seconds) are
        pinged on checkout; 0 pings every checkout (one more round trip per operation).
        `connection_class` lets instrumentation (benchmarks counting round trips) wrap the
        connections without changing how they are configured.
        """
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, got {pool_size}")
        idle_check = IdleConnectionCheck(check_idle_after)
        pool: ConnectionPool[Any] = ConnectionPool(
            dsn,
            min_size=1,
            max_size=pool_size,
            timeout=timeout,
            connection_class=connection_class,
            kwargs={
                "autocommit": True,
                "prepare_threshold": None,
                "connect_timeout": max(1, round(timeout)),
            },
            check=idle_check.check,
            name="agent_engine",
            open=True,
        )
        return cls(pool, owns_pool=True, idle_check=idle_check)

    def execute(self, request: Request) -> JSON | Failure:
        """Run `request` as one statement; database and connection errors become a Failure."""
        statement, parameters = compile_request(request)
        try:
            with self._pool.connection() as connection:
                try:
                    rows = connection.execute(statement, parameters).fetchmany(2)
                finally:
                    if self._idle_check is not None:
                        self._idle_check.returned(connection)
        except PoolTimeout as error:
            return Failure(
                code=None,
                message="no database connection became available in time",
                unreachable=True,
                cause=error,
            )
        except psycopg.Error as error:
            return _failure(error)
        return _single_answer(request, [row[0] for row in rows])

    def close(self) -> None:
        """Close the pool if this transport opened it."""
        if self._owns_pool:
            self._pool.close()


def _failure(error: psycopg.Error) -> Failure:
    diagnostic = error.diag
    return Failure(
        code=error.sqlstate,
        message=diagnostic.message_primary or type(error).__name__,
        details=diagnostic.message_detail,
        hint=diagnostic.message_hint,
        # No SQLSTATE: the server never answered (connection refused, dropped or timed out).
        unreachable=error.sqlstate is None and isinstance(error, psycopg.OperationalError),
        cause=error,
    )


def _single_answer(request: Request, values: list[JSON]) -> JSON | Failure:
    if isinstance(request, Call) or (isinstance(request, Select) and not request.single):
        return values[0]
    if len(values) != 1:
        count = "0 rows" if not values else "more than 1 row"
        return Failure(
            code=NO_ROWS_CODE,
            message="exactly one row was expected",
            details=f"The result contains {count}",
        )
    return values[0]


def compile_request(request: Request) -> tuple[sql.Composed, list[Parameter]]:
    """The single SQL statement (and its parameters) that answers `request` with JSON rows."""
    parameters: list[Parameter] = []
    if isinstance(request, Call):
        arguments = sql.SQL(", ").join(
            sql.SQL("{} => {}").format(sql.Identifier(name), _bind(value, parameters))
            for name, value in request.arguments.items()
        )
        statement = sql.SQL("select {}({})").format(
            sql.Identifier("public", request.function), arguments
        )
        return statement, parameters
    if isinstance(request, Update):
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(column), _bind(value, parameters))
            for column, value in request.values.items()
        )
        statement = sql.SQL("update {} as t set {} where {} returning to_jsonb(t)").format(
            _table(request.table),
            assignments,
            _where(request.conditions, _PARENT, parameters),
        )
        return statement, parameters
    return _select(request, parameters), parameters


def _select(request: Select, parameters: list[Parameter]) -> sql.Composed:
    row = _row_json(request.columns)
    for embed in request.embeds:
        row = sql.SQL("{} || jsonb_build_object({}, {})").format(
            row, sql.Literal(embed.table), _embedded(embed, parameters)
        )
    query = sql.SQL("select {} as answer from {} as t where {}").format(
        row, _table(request.table), _where(request.conditions, _PARENT, parameters)
    )
    if request.limit is not None:
        query = sql.SQL("{} limit {}").format(query, sql.Literal(request.limit))
    if request.single:
        return query
    return sql.SQL("select coalesce(jsonb_agg(rows.answer), '[]'::jsonb) from ({}) as rows").format(
        query
    )


def _row_json(columns: tuple[str, ...]) -> sql.Composable:
    if columns == ("*",):
        return sql.SQL("to_jsonb(t)")
    pairs = sql.SQL(", ").join(
        sql.SQL("{}, {}").format(sql.Literal(column), sql.Identifier("t", column))
        for column in columns
    )
    return sql.SQL("jsonb_build_object({})").format(pairs)


def _embedded(embed: Embed, parameters: list[Parameter]) -> sql.Composable:
    link = sql.SQL("c.workspace_id = t.workspace_id and {} = t.id").format(
        sql.Identifier("c", schema.SESSION_REFERENCE_COLUMN)
    )
    conditions = sql.SQL(" and ").join([link, _where(embed.conditions, _CHILD, parameters)])
    if not embed.many:
        return sql.SQL("(select to_jsonb(c) from {} as c where {})").format(
            _table(embed.table), conditions
        )
    order = (
        sql.SQL(" order by {}").format(sql.Identifier("c", embed.order_by))
        if embed.order_by
        else sql.SQL("")
    )
    limit = sql.SQL(" limit {}").format(sql.Literal(embed.limit)) if embed.limit else sql.SQL("")
    return sql.SQL(
        "coalesce((select jsonb_agg(to_jsonb(c){order}) from "
        "(select * from {table} as c where {conditions}{order}{limit}) as c), '[]'::jsonb)"
    ).format(order=order, table=_table(embed.table), conditions=conditions, limit=limit)


def _where(
    conditions: Iterable[Condition], alias: sql.Identifier, parameters: list[Parameter]
) -> sql.Composable:
    parts = [_condition(condition, alias, parameters) for condition in conditions]
    return sql.SQL(" and ").join(parts) if parts else sql.SQL("true")


def _condition(
    condition: Condition, alias: sql.Identifier, parameters: list[Parameter]
) -> sql.Composable:
    if isinstance(condition, AnyOf):
        branches = [
            sql.SQL("({})").format(_where(branch, alias, parameters))
            for branch in condition.branches
        ]
        return (
            sql.SQL("({})").format(sql.SQL(" or ").join(branches)) if branches else sql.SQL("false")
        )
    column = sql.SQL("{}.{}").format(alias, sql.Identifier(condition.column))
    if isinstance(condition, Equals):
        return sql.SQL("{} = {}").format(column, _bind(condition.value, parameters))
    if isinstance(condition, GreaterThan):
        return sql.SQL("{} > {}").format(column, _bind(condition.value, parameters))
    parameters.append(list(condition.values))
    return sql.SQL("{} = any(%s::text[])").format(column)


def _bind(value: JSON, parameters: list[Parameter]) -> sql.Composable:
    """Append `value` as a text parameter of unknown type and return its placeholder."""
    if value is None or isinstance(value, str):
        parameters.append(value)
    elif isinstance(value, bool):
        parameters.append("true" if value else "false")
    elif isinstance(value, int | float):
        parameters.append(repr(value))
    else:
        parameters.append(json.dumps(value))
    return sql.SQL("%s")


def _table(name: str) -> sql.Identifier:
    return sql.Identifier("public", name)
