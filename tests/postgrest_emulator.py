"""An in-process PostgREST for tests: an httpx transport that answers from a real database.

`PostgrestEmulator` sits where the socket would be under a real supabase-py client (sync or
async): postgrest-py builds, sends and reads every request as on the wire, and the emulator
turns each one into SQL the way PostgREST does, in one transaction per request:
`set local role <api role>`, `request.jwt.claims` (and `request.method`, `request.path`,
`request.headers`) set with `set_config(..., true)`, the statement, commit. A request that
fails, or a singular one (`Accept: application/vnd.pgrst.object+json`) that does not find
exactly one row, is rolled back. Answers and errors have PostgREST's shapes, statuses and
headers (as PostgREST v13's `Error.hs` and `Response.hs` make them).

Emulated, because the library sends it:

- `POST /rest/v1/rpc/<function>` with a JSON object: `public.<function>` called with named
  arguments, the JSON converted to the declared argument types by `json_to_record` (as
  PostgREST does); the function is chosen like PostgREST chooses it (every key a parameter,
  every parameter without a default given). A scalar result is the JSON value, a `setof` or
  `table` result an array, a void function 204 without a body. No match: 404 PGRST202;
  several: 300 PGRST203.
- `GET /rest/v1/<table>` with `select=` (columns, `*`, and embedded child tables
  `child(*)`/`child(a,b)` joined along the child's foreign key to the table, composite keys
  included: an object per row when the key's columns are unique in the child, an array
  otherwise), filters `col=eq.v`, `col=gt.v`, `col=in.(a,"b,c")`, `or=(and(...),...)`,
  `order=`, `limit=`, `offset=`, and the same modifiers on an embedded table
  (`child.col=gt.v`, `child.order=...`, `child.limit=...`, `child.offset=...`, `child.or=...`).
  Read requests run in a read-only transaction, as PostgREST runs them.
- `PATCH /rest/v1/<table>` with the same filters, a JSON object body (columns converted by
  `json_populate_record`) and `Prefer: return=representation`.

Refused loudly (UnsupportedRequestError, which httpx and the library let through to the
test): any other method, path or query parameter, another operator (neq, lt, is, not...),
aliases, casts, JSON paths, embedding hints, nested embeds, many-to-one embeds, other
`Prefer` values, other media types, a non-object RPC body, and a request without `apikey` or
`Authorization: Bearer ...` headers. JWTs are not validated: every request runs as the role
the emulator was built with. Not emulated: PostgREST's schema cache (the catalog is read
once per emulator, so objects created later are seen only by a new one), its retry of
serialization failures, `Prefer: count`, HEAD, inserts, upserts and deletes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias
from urllib.parse import urlencode

import anyio.to_thread
import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.pq import TransactionStatus

from tests.postgrest_responses import error_response

REST_PREFIX = "/rest/v1/"
SCHEMA = "public"
JSON_MEDIA_TYPE = "application/json"
OBJECT_MEDIA_TYPE = "application/vnd.pgrst.object+json"
CHARSET = "; charset=utf-8"

ApiRole = Literal["anon", "authenticated", "service_role"]


class UnsupportedRequestError(AssertionError):
    """The emulator was sent a request (or a part of one) it does not emulate.

    An AssertionError, raised out of the transport: neither httpx nor the library catches
    it, so the test that sent the request fails instead of getting a made-up answer.
    """


# ---------------------------------------------------------------------------
# Requests as data
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Filter:
    column: str
    operator: Literal["eq", "gt", "in"]
    value: str | tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Logic:
    operator: Literal["and", "or"]
    parts: tuple[_Filter | _Logic, ...]


_Condition: TypeAlias = _Filter | _Logic


@dataclass(frozen=True, slots=True)
class _Order:
    column: str
    descending: bool
    nulls: Literal["first", "last"] | None


@dataclass(slots=True)
class _Modifiers:
    """What narrows one level of a read: the top table or one embedded table."""

    conditions: list[_Condition] = field(default_factory=list)
    order: tuple[_Order, ...] = ()
    limit: int | None = None
    offset: int | None = None


@dataclass(slots=True)
class _Embed:
    table: str
    columns: tuple[str, ...]
    modifiers: _Modifiers = field(default_factory=_Modifiers)


@dataclass(frozen=True, slots=True)
class _Function:
    name: str
    inputs: tuple[tuple[str, str], ...]
    """(name, SQL type) of each input parameter, in order."""
    defaults: int
    returns_set: bool
    returns_void: bool

    def required(self) -> set[str]:
        return {name for name, _ in self.inputs[: len(self.inputs) - self.defaults]}

    def accepts(self, keys: set[str]) -> bool:
        return keys <= {name for name, _ in self.inputs} and self.required() <= keys


@dataclass(frozen=True, slots=True)
class _Relationship:
    """A child table's foreign key to its parent: (child column, parent column) pairs."""

    pairs: tuple[tuple[str, str], ...]
    one_to_one: bool


class _RollbackError(Exception):
    """An answer decided inside the transaction that must roll it back (PGRST116)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


# ---------------------------------------------------------------------------
# The transport
# ---------------------------------------------------------------------------


class PostgrestEmulator(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """PostgREST in process over `dsn`; every request runs as `role` on its own connection.

    `dsn`: a DSN of the database (a superuser's is fine: the emulator logs in as
    `login_role`, PostgREST's `authenticator` by default, and switches to `role`).
    Connections are pooled (a request takes an idle one or opens one, so concurrent requests
    never share one); `close()` closes the idle ones, and later requests open new ones. The
    async side runs the same work on a worker thread (`anyio.to_thread`).
    """

    def __init__(
        self,
        dsn: str,
        role: ApiRole = "service_role",
        *,
        login_role: str | None = "authenticator",
        max_idle: int = 8,
    ) -> None:
        self.role: ApiRole = role
        self.claims: dict[str, str] = {"role": role}
        self._conninfo = dsn if login_role is None else make_conninfo(dsn, user=login_role)
        self._max_idle = max_idle
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._functions: dict[str, list[_Function]] = {}
        self._columns: dict[str, tuple[str, ...] | None] = {}
        self._relationships: dict[tuple[str, str], list[_Relationship]] = {}

    # httpx

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._respond(request, request.read())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        content = await request.aread()
        return await anyio.to_thread.run_sync(self._respond, request, content)

    def close(self) -> None:
        """Close the idle connections (requests still running keep theirs)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self.close)

    # One request

    def _respond(self, request: httpx.Request, content: bytes) -> httpx.Response:
        _check_keys(request.headers)
        path = request.url.path
        if not path.startswith(REST_PREFIX):
            raise UnsupportedRequestError(f"not a PostgREST path: {path}")
        resource = path.removeprefix(REST_PREFIX)
        params = request.url.params.multi_items()
        singular = _singular(request.headers, request.method)
        if resource.startswith("rpc/") and request.method == "POST":
            if params:
                raise UnsupportedRequestError(f"query parameters on an RPC call: {params}")
            if singular:
                raise UnsupportedRequestError("an RPC call with the object media type")
            _check_prefer(request.headers, allowed=set())
            return self._run(request, lambda cursor: self._call(cursor, resource[4:], content))
        if "/" in resource or not resource:
            raise UnsupportedRequestError(f"not a table path: {path}")
        if request.method == "GET":
            _check_prefer(request.headers, allowed=set())
            return self._run(
                request,
                lambda cursor: self._read(cursor, resource, params, singular=singular),
                read_only=True,
            )
        if request.method == "PATCH":
            _check_prefer(request.headers, allowed={"return=representation"})
            return self._run(
                request,
                lambda cursor: self._update(cursor, resource, params, content, singular=singular),
            )
        raise UnsupportedRequestError(f"{request.method} {path} is not emulated")

    def _run(
        self,
        request: httpx.Request,
        statement: Callable[[psycopg.Cursor[Any]], httpx.Response],
        *,
        read_only: bool = False,
    ) -> httpx.Response:
        """Run `statement(cursor)` in one transaction as the API role; errors as PostgREST's."""
        headers = {key.lower(): value for key, value in request.headers.items()}
        try:
            with self._connection() as connection:
                try:
                    with connection.transaction(), connection.cursor() as cursor:
                        if read_only:
                            cursor.execute("set transaction read only")
                        cursor.execute(
                            sql.SQL("set local role {}").format(sql.Identifier(self.role))
                        )
                        cursor.execute(
                            "select set_config('request.jwt.claims', %s, true),"
                            " set_config('request.method', %s, true),"
                            " set_config('request.path', %s, true),"
                            " set_config('request.headers', %s, true)",
                            (
                                json.dumps(self.claims),
                                request.method,
                                request.url.path,
                                json.dumps(headers),
                            ),
                        )
                        return statement(cursor)
                except _RollbackError as answer:  # the transaction was rolled back
                    return answer.response
        except psycopg.Error as error:
            return _database_error(error, authenticated=self.role != "anon")

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        with self._lock:
            connection = self._idle.pop() if self._idle else None
        if connection is None:
            connection = psycopg.connect(self._conninfo, autocommit=True)
        try:
            yield connection
        finally:
            reusable = (
                not connection.closed
                and connection.info.transaction_status == TransactionStatus.IDLE
            )
            with self._lock:
                keep = reusable and len(self._idle) < self._max_idle
                if keep:
                    self._idle.append(connection)
            if not keep:
                connection.close()

    # POST /rpc/<function>

    def _call(self, cursor: psycopg.Cursor[Any], name: str, content: bytes) -> httpx.Response:
        arguments = _json_object(content, what="an RPC body")
        keys = set(arguments)
        candidates = [f for f in self._functions_named(cursor, name) if f.accepts(keys)]
        if not candidates:
            return _no_function(name, sorted(keys))
        if len(candidates) > 1:
            return error_response(
                300,
                "PGRST203",
                f"Could not choose the best candidate function between: {SCHEMA}.{name}",
                hint="Try renaming the parameters or the function itself in the database so "
                "function overloading can be resolved",
            )
        function = candidates[0]
        given = [(n, t) for n, t in function.inputs if n in keys]
        call = sql.SQL("{}({})").format(
            sql.Identifier(SCHEMA, name),
            sql.SQL(", ").join(
                sql.SQL("{} := _args.{}").format(sql.Identifier(n), sql.Identifier(n))
                for n, _ in given
            ),
        )
        source: sql.Composable = sql.SQL(
            "json_to_record(%(body)s::json) as _args({}) cross join lateral {} as _result"
        ).format(
            sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in given
            ),
            call,
        )
        if not given:
            source = sql.SQL("{} as _result").format(call)
        body = (
            sql.SQL("coalesce(json_agg(_result), '[]')::text")
            if function.returns_set
            else sql.SQL("coalesce((json_agg(_result) -> 0)::text, 'null')")
        )
        cursor.execute(
            sql.SQL("select count(*), {} from {}").format(body, source),
            {"body": json.dumps(arguments)},
        )
        count, text = _one(cursor)
        if function.returns_void:
            return httpx.Response(204, headers=[("Content-Range", "0-0/*")])
        rows = int(count) if function.returns_set else 1
        return _success(200, str(text), singular=False, rows=rows)

    def _functions_named(self, cursor: psycopg.Cursor[Any], name: str) -> list[_Function]:
        if name not in self._functions:
            cursor.execute(
                """
                select p.proargnames, p.proargmodes::text[],
                       array(select format_type(t.oid, null)
                             from unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]))
                                  with ordinality as t(oid, position)
                             order by t.position),
                       p.pronargdefaults, p.proretset, p.prorettype = 'void'::regtype
                from pg_catalog.pg_proc p
                join pg_catalog.pg_namespace n on n.oid = p.pronamespace
                where n.nspname = %s and p.proname = %s and p.prokind = 'f'
                """,
                (SCHEMA, name),
            )
            self._functions[name] = [_function(name, *row) for row in cursor.fetchall()]
        return self._functions[name]

    # GET /<table>

    def _read(
        self,
        cursor: psycopg.Cursor[Any],
        table: str,
        params: Sequence[tuple[str, str]],
        *,
        singular: bool,
    ) -> httpx.Response:
        missing = self._missing_table(cursor, table)
        if missing is not None:
            return missing
        select = [value for key, value in params if key == "select"]
        if len(select) > 1:
            raise UnsupportedRequestError("select= given twice")
        columns, embeds = _parse_select(select[0] if select else "*")
        top = _Modifiers()
        for key, value in params:
            if key == "select":
                continue
            target, _, name = key.rpartition(".")
            if target:
                if target not in embeds:
                    return error_response(
                        400,
                        "PGRST108",
                        f"'{target}' is not an embedded resource in this request",
                        hint=f"Verify that '{target}' is included in the 'select' query parameter.",
                    )
                _modify(embeds[target].modifiers, name, value)
            else:
                _modify(top, name, value)
        projection: list[sql.Composable] = [_column(column) for column in columns]
        for embed in embeds.values():
            relationship = self._relationship(cursor, table, embed.table)
            if isinstance(relationship, httpx.Response):
                return relationship
            projection.append(_embedded(embed, relationship))
        query = sql.SQL("select {} from {} as _row{}").format(
            sql.SQL(", ").join(projection), sql.Identifier(SCHEMA, table), _narrowed(top, "_row")
        )
        cursor.execute(
            sql.SQL(
                "select count(*), coalesce(json_agg(_rows), '[]')::text,"
                " (json_agg(_rows) -> 0)::text from ({}) as _rows"
            ).format(query)
        )
        count, array, first = _one(cursor)
        response = _rows_response(int(count), array, first, singular=singular, offset=top.offset)
        if response.status_code == 200:
            query_string = urlencode(sorted(params))
            response.headers["Content-Location"] = f"/{table}" + (
                f"?{query_string}" if query_string else ""
            )
        return response

    # PATCH /<table>

    def _update(
        self,
        cursor: psycopg.Cursor[Any],
        table: str,
        params: Sequence[tuple[str, str]],
        content: bytes,
        *,
        singular: bool,
    ) -> httpx.Response:
        missing = self._missing_table(cursor, table)
        if missing is not None:
            return missing
        values = _json_object(content, what="a PATCH body")
        if not values:
            raise UnsupportedRequestError("a PATCH with an empty body")
        known = self._columns[table] or ()
        for column in values:
            if column not in known:
                return error_response(
                    400,
                    "PGRST204",
                    f"Could not find the '{column}' column of '{table}' in the schema cache",
                )
        where = _Modifiers()
        for key, value in params:
            if "." in key or key in ("select", "order", "limit", "offset"):
                raise UnsupportedRequestError(f"PATCH parameter {key}={value} is not emulated")
            _modify(where, key, value)
        statement = sql.SQL(
            "with _updated as (update {table} as _row set {changes}"
            " from json_populate_record(null::{table}, %(body)s::json) as _body"
            " where {conditions} returning _row.*)"
            " select count(*), coalesce(json_agg(_updated), '[]')::text,"
            " (json_agg(_updated) -> 0)::text from _updated"
        ).format(
            table=sql.Identifier(SCHEMA, table),
            changes=sql.SQL(", ").join(
                sql.SQL("{} = _body.{}").format(sql.Identifier(c), sql.Identifier(c))
                for c in values
            ),
            conditions=_conditions(where.conditions, "_row"),
        )
        cursor.execute(statement, {"body": json.dumps(values)})
        count, array, first = _one(cursor)
        response = _rows_response(int(count), array, first, singular=singular, offset=None)
        if response.status_code != 200:
            raise _RollbackError(response)  # rolls the update back, as PostgREST does
        response.headers["Preference-Applied"] = "return=representation"
        return response

    # The catalog

    def _missing_table(self, cursor: psycopg.Cursor[Any], table: str) -> httpx.Response | None:
        if table not in self._columns:
            cursor.execute(
                """
                select array(select a.attname::text from pg_catalog.pg_attribute a
                             where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
                             order by a.attnum)
                from pg_catalog.pg_class c
                join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                where n.nspname = %s and c.relname = %s and c.relkind in ('r', 'p', 'v', 'm', 'f')
                """,
                (SCHEMA, table),
            )
            row = cursor.fetchone()
            self._columns[table] = None if row is None else tuple(row[0])
        if self._columns[table] is None:
            return error_response(
                404, "PGRST205", f"Could not find the table '{SCHEMA}.{table}' in the schema cache"
            )
        return None

    def _relationship(
        self, cursor: psycopg.Cursor[Any], parent: str, child: str
    ) -> _Relationship | httpx.Response:
        missing = self._missing_table(cursor, child)
        if missing is not None:
            return missing
        if (parent, child) not in self._relationships:
            cursor.execute(
                """
                select array(select a.attname::text from unnest(f.conkey) with ordinality k(n, i)
                             join pg_catalog.pg_attribute a
                               on a.attrelid = f.conrelid and a.attnum = k.n order by k.i),
                       array(select a.attname::text from unnest(f.confkey) with ordinality k(n, i)
                             join pg_catalog.pg_attribute a
                               on a.attrelid = f.confrelid and a.attnum = k.n order by k.i),
                       exists(select from pg_catalog.pg_constraint u
                              where u.conrelid = f.conrelid and u.contype in ('p', 'u')
                                and u.conkey @> f.conkey and f.conkey @> u.conkey)
                from pg_catalog.pg_constraint f
                where f.contype = 'f'
                  and f.conrelid = %s::regclass and f.confrelid = %s::regclass
                """,
                (f"{SCHEMA}.{child}", f"{SCHEMA}.{parent}"),
            )
            self._relationships[(parent, child)] = [
                _Relationship(tuple(zip(columns, references, strict=True)), bool(unique))
                for columns, references, unique in cursor.fetchall()
            ]
        found = self._relationships[(parent, child)]
        if len(found) == 1:
            return found[0]
        if not found:
            cursor.execute(
                "select exists(select from pg_catalog.pg_constraint where contype = 'f'"
                " and conrelid = %s::regclass and confrelid = %s::regclass)",
                (f"{SCHEMA}.{parent}", f"{SCHEMA}.{child}"),
            )
            if _one(cursor)[0]:
                raise UnsupportedRequestError(
                    f"embedding {child} in {parent} is many-to-one, which is not emulated"
                )
            return error_response(
                400,
                "PGRST200",
                f"Could not find a relationship between '{parent}' and '{child}' in the "
                "schema cache",
                details=f"Searched for a foreign key relationship between '{parent}' and "
                f"'{child}' in the schema '{SCHEMA}', but no matches were found.",
            )
        return error_response(
            300,
            "PGRST201",
            f"Could not embed because more than one relationship was found for '{parent}' "
            f"and '{child}'",
        )


# ---------------------------------------------------------------------------
# Reading the request
# ---------------------------------------------------------------------------


def _check_keys(headers: httpx.Headers) -> None:
    authorization = headers.get("authorization", "")
    if not headers.get("apikey") or not authorization.startswith("Bearer "):
        raise UnsupportedRequestError(
            "a request without the apikey and Authorization: Bearer headers"
        )
    if not authorization.removeprefix("Bearer ").strip():
        raise UnsupportedRequestError("an empty bearer token")
    for profile in ("accept-profile", "content-profile"):
        if headers.get(profile, SCHEMA) != SCHEMA:
            raise UnsupportedRequestError(f"{profile}: only the {SCHEMA} schema is emulated")


def _singular(headers: httpx.Headers, method: str) -> bool:
    accept = headers.get("accept", "*/*").split(";")[0].strip()
    if accept == OBJECT_MEDIA_TYPE:
        return True
    if accept in ("*/*", JSON_MEDIA_TYPE):
        return False
    raise UnsupportedRequestError(f"{method} with Accept: {accept} is not emulated")


def _check_prefer(headers: httpx.Headers, *, allowed: set[str]) -> None:
    given = {
        part.strip()
        for value in headers.get_list("prefer")
        for part in value.split(",")
        if part.strip()
    }
    if given - allowed:
        raise UnsupportedRequestError(f"Prefer: {sorted(given - allowed)} is not emulated")
    if allowed and given != allowed:
        raise UnsupportedRequestError(f"expected Prefer: {sorted(allowed)}, got {sorted(given)}")


def _json_object(content: bytes, *, what: str) -> dict[str, Any]:
    try:
        value = json.loads(content)
    except ValueError as error:
        raise UnsupportedRequestError(f"{what} that is not JSON") from error
    if not isinstance(value, dict):
        raise UnsupportedRequestError(f"{what} that is not a JSON object")
    return value


def _function(
    name: str,
    names: list[str] | None,
    modes: list[str] | None,
    types: list[str],
    defaults: int,
    returns_set: bool,
    returns_void: bool,
) -> _Function:
    modes = modes or ["i"] * len(types)
    names = names or [""] * len(types)
    if "v" in modes:
        raise UnsupportedRequestError(f"{name} is variadic, which is not emulated")
    inputs = tuple((names[i], types[i]) for i, mode in enumerate(modes) if mode in ("i", "b"))
    return _Function(name, inputs, defaults, returns_set, returns_void)


_PLAIN_NAME = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _name(text: str, what: str) -> str:
    if not text or not set(text) <= _PLAIN_NAME:
        raise UnsupportedRequestError(f"{what} {text!r} is not a plain name (not emulated)")
    return text


def _parse_select(text: str) -> tuple[list[str], dict[str, _Embed]]:
    """`*`, plain columns, and `child(...)` embeds of `*` or plain columns."""
    columns: list[str] = []
    embeds: dict[str, _Embed] = {}
    for item in _split(text):
        if item.endswith(")") and "(" in item:
            table, _, inner = item[:-1].partition("(")
            table = _name(table, "embedded resource")
            inner_columns = tuple(
                part if part == "*" else _name(part, "column") for part in _split(inner)
            )
            if table in embeds:
                raise UnsupportedRequestError(f"{table} embedded twice")
            embeds[table] = _Embed(table, inner_columns)
        else:
            columns.append(item if item == "*" else _name(item, "column"))
    return columns, embeds


def _modify(modifiers: _Modifiers, name: str, value: str) -> None:
    """Apply one query parameter to a level of the read: a modifier or a filter."""
    if name == "order":
        modifiers.order = tuple(_order(part) for part in _split(value))
    elif name in ("limit", "offset"):
        if not value.isdigit():
            raise UnsupportedRequestError(f"{name}={value} is not a non-negative integer")
        setattr(modifiers, name, int(value))
    elif name in ("or", "and"):
        if not (value.startswith("(") and value.endswith(")")):
            raise UnsupportedRequestError(f"{name}={value} is not a logic tree")
        modifiers.conditions.append(_logic(name, value[1:-1]))
    else:
        modifiers.conditions.append(_filter(_name(name, "column"), value, top_level=True))


def _order(text: str) -> _Order:
    column, *options = text.split(".")
    descending, nulls = False, None
    for option in options:
        if option in ("asc", "desc"):
            descending = option == "desc"
        elif option in ("nullsfirst", "nullslast"):
            nulls = "first" if option == "nullsfirst" else "last"
        else:
            raise UnsupportedRequestError(f"order option {option!r} is not emulated")
    return _Order(_name(column, "order column"), descending, nulls)  # type: ignore[arg-type]


def _filter(column: str, text: str, *, top_level: bool) -> _Filter:
    operator, separator, value = text.partition(".")
    if not separator:
        raise UnsupportedRequestError(f"filter {column}={text} has no operator")
    if operator == "in":
        if not (value.startswith("(") and value.endswith(")")):
            raise UnsupportedRequestError(f"in filter {column}={text} is not a list")
        return _Filter(column, "in", tuple(_unquoted(part) for part in _split(value[1:-1])))
    if operator in ("eq", "gt"):
        # At the top, the value is the rest of the parameter as sent; inside a logic tree,
        # PostgREST reads a double-quoted value with backslash escapes.
        return _Filter(column, operator, value if top_level else _unquoted(value))  # type: ignore[arg-type]
    raise UnsupportedRequestError(f"operator {operator!r} ({column}={text}) is not emulated")


def _logic(operator: str, inner: str) -> _Logic:
    parts: list[_Condition] = []
    for item in _split(inner):
        head, _, rest = item.partition("(")
        if head in ("and", "or") and item.endswith(")"):
            parts.append(_logic(head, rest[:-1]))
            continue
        column, separator, condition = item.partition(".")
        if not separator or column == "not":
            raise UnsupportedRequestError(f"logic tree item {item!r} is not emulated")
        parts.append(_filter(_name(column, "column"), condition, top_level=False))
    return _Logic(operator, tuple(parts))  # type: ignore[arg-type]


def _split(text: str) -> list[str]:
    """`text` split at the commas outside parentheses and double quotes."""
    items: list[str] = []
    depth, quoted, escaped, start = 0, False, False, 0
    for index, character in enumerate(text):
        if escaped:
            escaped = False
        elif quoted:
            escaped = character == "\\"
            quoted = character != '"'
        elif character == '"':
            quoted = True
        elif character == "(":
            depth += 1
        elif character == ")":
            depth -= 1
        elif character == "," and depth == 0:
            items.append(text[start:index])
            start = index + 1
    if depth or quoted:
        raise UnsupportedRequestError(f"unbalanced parentheses or quotes in {text!r}")
    items.append(text[start:])
    return items


def _unquoted(text: str) -> str:
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        out, escaped = [], False
        for character in text[1:-1]:
            if escaped or character != "\\":
                out.append(character)
                escaped = False
            else:
                escaped = True
        return "".join(out)
    return text


# ---------------------------------------------------------------------------
# Building the SQL
# ---------------------------------------------------------------------------


def _column(column: str, alias: str = "_row") -> sql.Composable:
    if column == "*":
        return sql.SQL("{}.*").format(sql.Identifier(alias))
    return sql.Identifier(alias, column)


def _conditions(conditions: Sequence[_Condition], alias: str) -> sql.Composable:
    if not conditions:
        return sql.SQL("true")
    return sql.SQL(" and ").join(_condition(condition, alias) for condition in conditions)


def _condition(condition: _Condition, alias: str) -> sql.Composable:
    if isinstance(condition, _Logic):
        joined = sql.SQL(f" {condition.operator} ").join(
            _condition(part, alias) for part in condition.parts
        )
        return sql.SQL("({})").format(joined)
    column = sql.Identifier(alias, condition.column)
    # Values go as untyped literals, as PostgREST sends them: the column's type reads them.
    if isinstance(condition.value, tuple):
        if not condition.value:
            return sql.SQL("false")
        values = sql.SQL(", ").join(sql.Literal(value) for value in condition.value)
        return sql.SQL("{} in ({})").format(column, values)
    operator = sql.SQL("=" if condition.operator == "eq" else ">")
    return sql.SQL("{} {} {}").format(column, operator, sql.Literal(condition.value))


def _narrowed(
    modifiers: _Modifiers, alias: str, join: sql.Composable | None = None
) -> sql.Composable:
    where = _conditions(modifiers.conditions, alias)
    if join is not None:
        where = sql.SQL("{} and {}").format(join, where)
    parts: list[sql.Composable] = [sql.SQL(" where {}").format(where)]
    if modifiers.order:
        parts.append(
            sql.SQL(" order by {}").format(
                sql.SQL(", ").join(
                    sql.SQL("{} {}{}").format(
                        sql.Identifier(alias, order.column),
                        sql.SQL("desc" if order.descending else "asc"),
                        sql.SQL("" if order.nulls is None else f" nulls {order.nulls}"),
                    )
                    for order in modifiers.order
                )
            )
        )
    if modifiers.limit is not None:
        parts.append(sql.SQL(" limit {}").format(sql.Literal(modifiers.limit)))
    if modifiers.offset is not None:
        parts.append(sql.SQL(" offset {}").format(sql.Literal(modifiers.offset)))
    return sql.Composed(parts)


def _embedded(embed: _Embed, relationship: _Relationship) -> sql.Composable:
    """The embed's column: its rows joined along the foreign key (an object or an array)."""
    join = sql.SQL(" and ").join(
        sql.SQL("{} = {}").format(
            sql.Identifier("_child", child_column), sql.Identifier("_row", parent_column)
        )
        for child_column, parent_column in relationship.pairs
    )
    rows = sql.SQL("select {} from {} as _child{}").format(
        sql.SQL(", ").join(_column(column, "_child") for column in embed.columns),
        sql.Identifier(SCHEMA, embed.table),
        _narrowed(embed.modifiers, "_child", join),
    )
    if relationship.one_to_one:
        value = sql.SQL("(select row_to_json(_one) from ({}) as _one)").format(rows)
    else:
        many = sql.SQL("coalesce((select json_agg(_many) from ({}) as _many), '[]'::json)")
        value = many.format(rows)
    return sql.SQL("{} as {}").format(value, sql.Identifier(embed.table))


def _one(cursor: psycopg.Cursor[Any]) -> tuple[Any, ...]:
    row = cursor.fetchone()
    if row is None:
        raise AssertionError("an aggregate returned no row")
    return tuple(row)


# ---------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------


def _content_range(offset: int, rows: int) -> str:
    return f"{offset}-{offset + rows - 1}/*" if rows > 0 else "*/*"


def _success(
    status: int, body: str, *, singular: bool, rows: int, offset: int = 0
) -> httpx.Response:
    media_type = OBJECT_MEDIA_TYPE if singular else JSON_MEDIA_TYPE
    return httpx.Response(
        status,
        headers=[
            ("Content-Range", _content_range(offset, rows)),
            ("Content-Type", media_type + CHARSET),
            ("Content-Profile", SCHEMA),
        ],
        content=body.encode(),
    )


def _rows_response(
    count: int, array: str, first: str | None, *, singular: bool, offset: int | None
) -> httpx.Response:
    if singular:
        if count != 1:
            return error_response(
                406,
                "PGRST116",
                "Cannot coerce the result to a single JSON object",
                details=f"The result contains {count} rows",
            )
        return _success(200, str(first), singular=True, rows=1, offset=offset or 0)
    return _success(200, array, singular=False, rows=count, offset=offset or 0)


def _no_function(name: str, keys: list[str]) -> httpx.Response:
    listed = ", ".join(keys)
    signature = f"({listed})" if keys else " without parameters"
    searched = (
        f" with parameter{'s' if len(keys) > 1 else ''} {listed}" if keys else " without parameters"
    )
    return error_response(
        404,
        "PGRST202",
        f"Could not find the function {SCHEMA}.{name}{signature} in the schema cache",
        details=f"Searched for the function {SCHEMA}.{name}{searched} or with a single "
        "unnamed json/jsonb parameter, but no matches were found in the schema cache.",
    )


def database_status(sqlstate: str, message: str, *, authenticated: bool) -> int:
    """The HTTP status PostgREST answers for a database error (its `mapSQLtoHTTP`)."""
    exact = {
        "23503": 409,
        "23505": 409,
        "25006": 405,
        "53400": 500,
        "57P01": 503,
        "P0001": 400,
        "42P01": 404,
        "42P17": 500,
        "42501": 403 if authenticated else 401,
    }
    if sqlstate in exact:
        return exact[sqlstate]
    if sqlstate == "21000":
        return 400 if message.endswith("requires a WHERE clause") else 500
    if sqlstate == "22023":
        role_missing = message.startswith("role") and message.endswith("does not exist")
        return 401 if role_missing else 400
    if sqlstate == "42883":
        return 406 if message.startswith("function xmlagg(") else 404
    if sqlstate.startswith("PT"):
        return int(sqlstate[2:]) if sqlstate[2:].isdigit() else 500
    by_class = {
        "08": 503,
        "09": 500,
        "0L": 403,
        "0P": 403,
        "25": 500,
        "28": 403,
        "2D": 500,
        "38": 500,
        "39": 500,
        "3B": 500,
        "40": 500,
        "53": 503,
        "54": 500,
        "55": 500,
        "57": 500,
        "58": 500,
        "F0": 500,
        "HV": 500,
        "P0": 500,
        "XX": 500,
    }
    return by_class.get(sqlstate[:2], 400)


def _database_error(error: psycopg.Error, *, authenticated: bool) -> httpx.Response:
    diagnostic = error.diag
    sqlstate = diagnostic.sqlstate
    if sqlstate is None:
        # No server error: the connection failed or broke (PostgREST's client errors).
        if isinstance(error, psycopg.OperationalError):
            return error_response(
                503,
                "PGRST001",
                "Database client error. Retrying the connection.",
                details=str(error),
            )
        raise error
    message = diagnostic.message_primary or ""
    return error_response(
        database_status(sqlstate, message, authenticated=authenticated),
        sqlstate,
        message,
        details=diagnostic.message_detail,
        hint=diagnostic.message_hint,
    )
