"""The direct transport's SQL and its reading of what psycopg reports, shared by its twins.

Each request compiles to ONE statement that returns JSON built by Postgres itself
(`to_jsonb`, `jsonb_agg`), the same JSON PostgREST would have sent, so the shared parsers
serve both transports. Every value is a parameter, so the SQL depends only on the request's
shape: it is built and rendered once per shape (`STATEMENTS`), and a call only binds values.
Connection failures are classified here: which refusals may pass.
"""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Callable, Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass
from time import monotonic
from typing import Any

import psycopg
from psycopg import pq, sql
from psycopg.pq.abc import PGconn, PGresult

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
    JSONText,
    OneOf,
    Request,
    Select,
    TextArray,
    Update,
    redacted_text,
)

Parameter = str | list[str] | None
"""A value as it is bound: text of unknown type (Postgres casts it to the column's or the
argument's type), a text array for OneOf, or NULL."""

FAILED = int(pq.ExecStatus.FATAL_ERROR)
"""A failed statement's result status, as an int: compared on every call."""

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
    parameters: dict[str, str], timeout: float, client_cursor: type[Any]
) -> dict[str, Any]:
    """psycopg.connect's options: autocommit, TCP liveness checks, and how statements go.

    Client-side binding (`client_cursor`: the sync or async ClientCursor) and no prepared
    statements of psycopg's, for what goes through psycopg (the pool's ping): the transport
    sends its statements itself, and prepares them itself in prepared mode (`_prepared`).
    """
    options: dict[str, Any] = {
        "autocommit": True,
        "prepare_threshold": None,
        "cursor_factory": client_cursor,
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


def milliseconds_left(deadline: float) -> int:
    """The statement_timeout that ends a statement at `deadline` (at least 1 ms)."""
    return max(1, math.ceil((deadline - monotonic()) * 1000))


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


@dataclass(frozen=True, slots=True)
class Statement:
    """The SQL of one request shape, rendered once; every value is a `%s` placeholder."""

    text: bytes
    """The statement alone (prepared mode: the timeout is the session's)."""
    bounded_text: bytes
    """`set local statement_timeout = %s; ` and the statement: one simple-protocol message
    whose first parameter is the time left."""
    bounded_template: bytes
    """`bounded_text` as a bytes %-format (any other `%` doubled), for `bounded_query`."""
    parameter_count: int
    """The statement's placeholders (the timeout's not counted)."""
    prepared_text: bytes
    """The statement with numbered placeholders ($1, $2...), as PREPARE takes it."""

    @classmethod
    def of(cls, text: bytes) -> Statement:
        """The statement of `text`, with its bounded and prepared forms derived from it."""
        bounded = b"set local statement_timeout = %s; " + text
        pieces = bounded.split(b"%s")
        template = b"%s".join([piece.replace(b"%", b"%%") for piece in pieces])
        first, *rest = text.split(b"%s")
        numbered = [b"$%d%s" % (number, piece) for number, piece in enumerate(rest, 1)]
        return cls(text, bounded, template, len(pieces) - 2, first + b"".join(numbered))

    def bounded_query(
        self, parameters: Sequence[Parameter], deadline: float, pgconn: PGconn
    ) -> bytes:
        """`bounded_text` with the time left and `parameters` quoted in: the whole message.

        What psycopg's ClientCursor would send, built without it: each value is quoted by
        libpq (PQescapeLiteral, for the connection's encoding) as a literal of unknown type,
        which Postgres casts to the argument's or column's type, as it does a bound
        parameter; a OneOf's values become a text array's literal; None is NULL. The literals
        fill the template in one %-format, as arguments, never read as directives: the
        client CPU of a call is what this library adds to the driver's.
        """
        if len(parameters) != self.parameter_count:
            raise ValueError("the statement and its parameters do not match")
        quoted = literals(parameters, pgconn)
        return self.bounded_template % (b"%d" % milliseconds_left(deadline), *quoted)


def literals(parameters: Sequence[Parameter], pgconn: PGconn) -> list[bytes]:
    """Each value as an SQL literal of unknown type, quoted by libpq for the connection."""
    quote = pq.Escaping(pgconn).escape_literal
    return [
        b"NULL"
        if value is None
        else quote(value.encode())
        if isinstance(value, str)
        else _array_literal(value, quote)
        for value in parameters
    ]


def _array_literal(values: list[str], quote: Callable[[bytes], bytes]) -> bytes:
    return quote(array_text(values).encode())


def array_text(values: Sequence[str]) -> str:
    """A text array in Postgres' input syntax, each element quoted (so NULL stays text)."""
    items = [item.replace("\\", "\\\\").replace('"', '\\"') for item in values]
    return "{" + ",".join([f'"{item}"' for item in items]) + "}"


def first_values(
    results: Sequence[PGresult], connection: psycopg.BaseConnection[Any]
) -> list[JSONText | None]:
    """The first column of at most two rows of the last result, as JSON text.

    Raises the psycopg error of a failed statement, as a cursor would (the SET's result, then
    the statement's: an error ends the message, so it is the last result).
    """
    last = results[-1]
    if last.status == FAILED:
        raise psycopg.errors.error_from_result(last, encoding=connection.info.encoding)
    values: list[JSONText | None] = []
    for row in range(min(last.ntuples, 2)):
        value = last.get_value(row, 0)
        values.append(None if value is None else JSONText(value))
    return values


class StatementCache:
    """Statements rendered once per request shape, so that a call only binds values.

    A shape is a request without its values: a Call's function and argument names; a
    Select's or an Update's table, columns, embeds and conditions. The operations build a
    few dozen; `max_shapes` bounds the cache anyway (it starts over when full). Safe to share
    between threads: two that miss together render the same statement.
    """

    def __init__(self, max_shapes: int = 256) -> None:
        self._statements: dict[Hashable, Statement] = {}
        self._max_shapes = max_shapes

    def __len__(self) -> int:
        return len(self._statements)

    def statement(self, request: Request) -> tuple[Statement, list[Parameter]]:
        """`request`'s statement and parameters: compile_request's, rendered to bytes."""
        parameters: list[Parameter] = []
        shape = _shape(request, parameters)
        statement = self._statements.get(shape)
        if statement is None:
            statement = Statement.of(compile_request(request)[0].as_bytes(None))
            if len(self._statements) >= self._max_shapes:
                self._statements.clear()
            self._statements[shape] = statement
        return statement, parameters


STATEMENTS = StatementCache()
"""The cache both transports use: the SQL depends on the shape alone, never on a connection."""


def compile_request(request: Request) -> tuple[sql.Composed, list[Parameter]]:
    """The single SQL statement (and its parameters) that answers `request` with JSON rows.

    Built anew on each call; the transports use STATEMENTS, which renders it once per shape.
    """
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
    if request.columns == ("*",):
        row: sql.Composable = sql.SQL("to_jsonb(t)")
        for embed in request.embeds:
            row = sql.SQL("{} || jsonb_build_object({}, {})").format(
                row, sql.Literal(embed.table), _embedded(embed, parameters, _JSONB)
            )
    else:
        # Named columns: the row is built as json, which Postgres writes out as it goes,
        # where jsonb is built as a binary value first: for a page of thousands of turns
        # that is half the server's work.
        pairs = [
            sql.SQL("{}, {}").format(sql.Literal(column), sql.Identifier("t", column))
            for column in request.columns
        ]
        pairs += [
            sql.SQL("{}, {}").format(
                sql.Literal(embed.table), _embedded(embed, parameters, _JSON_TEXT)
            )
            for embed in request.embeds
        ]
        row = sql.SQL("json_build_object({})").format(sql.SQL(", ").join(pairs))
    query = sql.SQL("select {} as answer from {} as t where {}").format(
        row, _table(request.table), _where(request.conditions, _PARENT, parameters)
    )
    if request.limit is not None:
        query = sql.SQL("{} limit {}").format(query, _bind(request.limit, parameters))
    if request.single:
        return query
    return sql.SQL("select coalesce(json_agg(rows.answer), '[]'::json) from ({}) as rows").format(
        query
    )


@dataclass(frozen=True, slots=True)
class _JSONFlavour:
    """Postgres' functions for one of its two JSON types."""

    row: sql.SQL
    aggregate: sql.SQL
    empty: sql.SQL


_JSONB = _JSONFlavour(sql.SQL("to_jsonb"), sql.SQL("jsonb_agg"), sql.SQL("'[]'::jsonb"))
_JSON_TEXT = _JSONFlavour(sql.SQL("to_json"), sql.SQL("json_agg"), sql.SQL("'[]'::json"))


def _embedded(embed: Embed, parameters: list[Parameter], flavour: _JSONFlavour) -> sql.Composable:
    link = sql.SQL("c.workspace_id = t.workspace_id and {} = t.id").format(
        sql.Identifier("c", schema.SESSION_REFERENCE_COLUMN)
    )
    conditions = sql.SQL(" and ").join([link, _where(embed.conditions, _CHILD, parameters)])
    if not embed.many:
        return sql.SQL("(select {}(c) from {} as c where {})").format(
            flavour.row, _table(embed.table), conditions
        )
    order = (
        sql.SQL(" order by {}").format(sql.Identifier("c", embed.order_by))
        if embed.order_by
        else sql.SQL("")
    )
    limit = (
        sql.SQL(" limit {}").format(_bind(embed.limit, parameters)) if embed.limit else sql.SQL("")
    )
    return sql.SQL(
        "coalesce((select {aggregate}({row}(c){order}) from "
        "(select * from {table} as c where {conditions}{order}{limit}) as c), {empty})"
    ).format(
        aggregate=flavour.aggregate,
        row=flavour.row,
        order=order,
        table=_table(embed.table),
        conditions=conditions,
        limit=limit,
        empty=flavour.empty,
    )


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
    parameters.append(_parameter(value))
    return sql.SQL("%s")


def _parameter(value: JSON) -> Parameter:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, TextArray):
        return list(value)
    if not value:  # an empty list or object, as most new sessions and turns carry
        return "[]" if isinstance(value, list | tuple) else "{}"
    return json.dumps(value)


def _table(name: str) -> sql.Identifier:
    return sql.Identifier("public", name)


# Shapes: what compile_request builds, without the values, which are collected in the same
# order as it binds them (tests/unit/test_statement_cache.py holds the two to each other).
# Run on every call, so written for speed: most values are text or NULL already.


def _shape(request: Request, parameters: list[Parameter]) -> Hashable:
    if isinstance(request, Call):
        _add_parameters(request.arguments.values(), parameters)
        return Call, request.function, tuple(request.arguments)
    if isinstance(request, Update):
        _add_parameters(request.values.values(), parameters)
        where = _conditions_shape(request.conditions, parameters)
        return Update, request.table, tuple(request.values), where
    embeds = tuple([_embed_shape(embed, parameters) for embed in request.embeds])
    where = _conditions_shape(request.conditions, parameters)
    limited = request.limit is not None
    if limited:
        parameters.append(_parameter(request.limit))
    return Select, request.table, request.columns, embeds, where, request.single, limited


def _add_parameters(values: Iterable[JSON], parameters: list[Parameter]) -> None:
    for value in values:
        parameters.append(value if value is None or type(value) is str else _parameter(value))


def _embed_shape(embed: Embed, parameters: list[Parameter]) -> Hashable:
    where = _conditions_shape(embed.conditions, parameters) if embed.conditions else ()
    if not embed.many:
        return embed.table, where
    if embed.limit:
        parameters.append(_parameter(embed.limit))
    return embed.table, where, embed.order_by, bool(embed.limit)


def _conditions_shape(
    conditions: Iterable[Condition], parameters: list[Parameter]
) -> tuple[Hashable, ...]:
    shapes: list[Hashable] = []
    for condition in conditions:
        if isinstance(condition, Equals):  # the common case, shaped as its column alone
            value = condition.value
            parameters.append(value if type(value) is str else _parameter(value))
            shapes.append(condition.column)
        elif isinstance(condition, GreaterThan):
            parameters.append(_parameter(condition.value))
            shapes.append((GreaterThan, condition.column))
        elif isinstance(condition, OneOf):
            parameters.append(list(condition.values))
            shapes.append((OneOf, condition.column))
        else:
            branches = [_conditions_shape(branch, parameters) for branch in condition.branches]
            shapes.append((AnyOf, tuple(branches)))
    return tuple(shapes)
