"""The direct transport's SQL and its reading of what psycopg reports, shared by its twins.

Each request compiles to ONE statement that returns JSON built by Postgres itself
(`to_jsonb`, `jsonb_agg`), the same JSON PostgREST would have sent, so the shared parsers
serve both transports. Connection failures are classified here: which refusals may pass.
"""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Collection, Iterable
from time import monotonic
from typing import Any

import psycopg
from psycopg import sql

from agent_engine import _schema as schema
from agent_engine._transport import (
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
    redacted_text,
)

Parameter = str | list[str] | None

_PARENT = sql.Identifier("t")
_CHILD = sql.Identifier("c")

# Connection failures carry no SQLSTATE (libpq gives none before the session starts): the
# server's own words tell a refusal that retrying cannot change from a passing state. They
# are matched only here, and only to decide retryability and name the condition.
_PASSING_REFUSALS = (
    ("the database system is starting up", "57P03"),
    ("the database system is shutting down", "57P03"),
    ("the database system is in recovery mode", "57P03"),
    ("the database system is not yet accepting connections", "57P03"),
    ("sorry, too many clients already", "53300"),
    ("remaining connection slots are reserved", "53300"),
    ("too many connections for", "53300"),
)
_DEFINITIVE_REFUSALS = (
    ("password authentication failed", "28P01"),
    ('role "', "28000"),  # role "x" does not exist
    ("no pg_hba.conf entry", "28000"),
    ('database "', "3D000"),  # database "x" does not exist
    ("permission denied for database", "42501"),
)


def database_failure(error: psycopg.Error, secrets: Collection[str]) -> Failure:
    """The Failure of a statement the database (or the lost connection) refused."""
    diagnostic = error.diag
    return Failure(
        code=error.sqlstate,
        message=redacted_text(diagnostic.message_primary or type(error).__name__, secrets),
        details=diagnostic.message_detail,
        hint=diagnostic.message_hint,
        # No SQLSTATE: the server never answered (connection dropped or timed out), so
        # the statement may or may not have run.
        unreachable=error.sqlstate is None and isinstance(error, psycopg.OperationalError),
        cause=error,
    )


def connect_failure(error: psycopg.Error, secrets: Collection[str]) -> Failure:
    """The Failure of a connection attempt, saying whether retrying may succeed."""
    text = redacted_text(str(error).strip(), secrets)
    code, retryable = _classify_connect_error(text)
    first_line = text.splitlines()[0] if text else type(error).__name__
    return Failure(
        code=code,
        message=f"could not connect to the database: {first_line}",
        retryable=retryable,
        # psycopg keeps the failed connection on the error, and its repr lists every
        # connection parameter, password included: chain a copy without it.
        cause=type(error)(text),
    )


def pool_timeout_failure(timeout: float, pool_size: int, cause: BaseException) -> Failure:
    """The Failure of a call that found every connection in use until its deadline."""
    return Failure(
        code=None,
        message=f"no database connection became free within {timeout:g} s (all {pool_size} in use)",
        retryable=True,
        cause=cause,
    )


def connection_options(
    parameters: dict[str, str], timeout: float, cursor_factory: type[Any]
) -> dict[str, Any]:
    """psycopg.connect's options: autocommit, no prepared statements, client-side binding
    (`cursor_factory`: the sync or async ClientCursor), and TCP liveness checks."""
    options: dict[str, Any] = {
        "autocommit": True,
        "prepare_threshold": None,
        "cursor_factory": cursor_factory,
    }
    # A vanished peer (no reset, no FIN) would otherwise hold a call for the kernel's TCP
    # timeouts (minutes); libpq ignores these on Unix sockets. The DSN's own values win.
    network = {
        "keepalives": "1",
        "keepalives_idle": str(max(1, math.ceil(timeout))),
        "keepalives_interval": "1",
        "keepalives_count": "3",
        "tcp_user_timeout": str(max(1, math.ceil(timeout * 1000))),
    }
    options.update({name: value for name, value in network.items() if name not in parameters})
    return options


def bounded(statement: sql.Composed, deadline: float) -> sql.Composed:
    """The statement preceded by a statement_timeout set to the time the call has left."""
    milliseconds = max(1, math.ceil((deadline - monotonic()) * 1000))
    return sql.SQL("set local statement_timeout = {}; {}").format(
        sql.Literal(milliseconds), statement
    )


def _classify_connect_error(text: str) -> tuple[str | None, bool]:
    """(the SQLSTATE the server's refusal stands for, whether retrying may succeed)."""
    for pattern, code in _PASSING_REFUSALS:
        if pattern in text:
            return code, True
    for pattern, code in _DEFINITIVE_REFUSALS:
        if pattern in text:
            return code, False
    if text.startswith("failed to resolve host"):
        # An unknown name stays unknown; only a temporary resolver failure may pass.
        return None, f"[Errno {socket.EAI_AGAIN}]" in text
    # The server refused us for a reason not listed: retrying the same credentials will not
    # help. Without a FATAL the server was not reached (refused, reset, timed out).
    return None, "FATAL:" not in text


def single_answer(request: Request, values: list[JSON]) -> JSON | Failure:
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
