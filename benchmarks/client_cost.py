"""What the library costs the client, against the raw driver sending the same request.

Direct Postgres: each operation through `SessionManager.from_postgres`, and the statement it
sends (the library's own request, compiled by `compile_request` and rendered to text once)
executed on a plain psycopg connection (autocommit, no prepared statements) whose answer is
fetched as psycopg parses it (jsonb into Python objects). Supabase: each operation through
`SessionManager(create_admin_client(...))`, and the same HTTP request sent by hand-written
postgrest-py builder calls on the same client, both answered by respx (no PostgREST server
here), so only client CPU means anything there; a check first makes sure both sides send
the same request.

Every side runs its calls once each, on one thread, in blocks that alternate library and
raw driver (see timing.measure_client_cost); the ratios are library / raw. Run it alone
with `python -m benchmarks.client_cost` (prints the tables, writes no results file).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar
from uuid import uuid4

import psycopg
from postgrest.base_request_builder import BaseFilterRequestBuilder
from supabase import Client

from agent_engine import SessionManager
from agent_engine import _schema as schema
from agent_engine._models import SessionScope
from agent_engine._postgres_sql import compile_request
from agent_engine._transport import JSON, Failure, Request
from benchmarks.context import Bench
from benchmarks.mock_postgrest import MockPostgrest, mock_postgrest
from benchmarks.per_operation import TURNS_BEFORE_GET_TURNS
from benchmarks.report import Report, Row
from benchmarks.session_size import PAGE
from benchmarks.timing import Call, ClientCost, measure_client_cost

FIRST_VERSION = 1
"""A new session's version: the first guarded update expects it."""
MODES = ("qualifying", "greeting")
"""update_session_with_version switches between these, one per call."""
INTENTS_PER_SESSION = 10
"""add_intent_seen moves to a new session after this many calls, so the intents array (which
every call rewrites and returns whole) stays between 0 and 10 entries however long the run."""

RawConnection = psycopg.Connection[Any]
Filtered = TypeVar("Filtered", bound=BaseFilterRequestBuilder[Any])


def _new_scope(bench: Bench) -> SessionScope:
    return SessionScope(session_id=bench.new_session().id, workspace_id=bench.workspace_id)


def _scope_with_turns(bench: Bench) -> SessionScope:
    scope = _new_scope(bench)
    bench.add_turns_in_bulk(scope.session_id, TURNS_BEFORE_GET_TURNS)
    return scope


@dataclass(frozen=True, slots=True)
class Case:
    """One operation, as call number n of a run makes it.

    `library(manager, scope, n)` calls the public method; the raw side sends the request
    that call builds (see RequestCatcher). `rest(client, scope, n)` sends that request with
    postgrest-py's builders (None: not measured on the Supabase path). `prepare` makes a
    session; with `calls_per_session`, a new one every that many calls.
    """

    name: str
    library: Callable[[SessionManager, SessionScope, int], object]
    rest: Callable[[Client, SessionScope, int], object] | None = None
    prepare: Callable[[Bench], SessionScope] = _new_scope
    calls_per_session: int | None = None


def _ids(scope: SessionScope) -> dict[str, str]:
    """The arguments every SQL function takes, as a raw caller writes them."""
    return {"p_session_id": str(scope.session_id), "p_workspace_id": str(scope.workspace_id)}


def _session_filter(builder: Filtered, scope: SessionScope) -> Filtered:
    """The session's filters, as a raw caller writes them."""
    return builder.eq("id", str(scope.session_id)).eq("workspace_id", str(scope.workspace_id))


# get_session


def _get_session(manager: SessionManager, scope: SessionScope, number: int) -> object:
    return manager.get_session(scope.session_id, workspace_id=scope.workspace_id)


def _get_session_rest(client: Client, scope: SessionScope, number: int) -> object:
    builder = client.table(schema.SESSIONS_TABLE).select(f"*,{schema.STATE_TABLE}(*)")
    return _session_filter(builder, scope).single().execute().data


# get_turn_count


def _get_turn_count(manager: SessionManager, scope: SessionScope, number: int) -> object:
    return manager.get_turn_count(scope.session_id, workspace_id=scope.workspace_id)


# add_turn: a new idempotency key each call


def _turn(number: int) -> dict[str, Any]:
    return {
        "role": "user",
        "content": "Do you have these in size 42?",
        "tokens_used": 12,
        "idempotency_key": f"message-{number}",
    }


def _add_turn(manager: SessionManager, scope: SessionScope, number: int) -> object:
    return manager.add_turn(scope.session_id, workspace_id=scope.workspace_id, **_turn(number))


def _add_turn_rest(client: Client, scope: SessionScope, number: int) -> object:
    turn = _turn(number)
    arguments = {
        **_ids(scope),
        "p_role": turn["role"],
        "p_content": turn["content"],
        "p_turn_number": None,
        "p_intent_detected": None,
        "p_confidence": None,
        "p_tools_called": [],
        "p_tokens_used": turn["tokens_used"],
        "p_idempotency_key": turn["idempotency_key"],
    }
    return client.rpc(schema.ADD_TURN_FUNCTION, arguments).execute().data


# add_intent_seen


def _add_intent_seen(manager: SessionManager, scope: SessionScope, number: int) -> object:
    return manager.add_intent_seen(scope.session_id, "pricing", workspace_id=scope.workspace_id)


def _add_intent_seen_rest(client: Client, scope: SessionScope, number: int) -> object:
    arguments = {**_ids(scope), "p_intent": "pricing"}
    return client.rpc(schema.APPEND_INTENT_FUNCTION, arguments).execute().data


# update_captured_data: ten keys, replaced in turn


def _captured(number: int) -> dict[str, Any]:
    return {f"field_{number % 10}": number}


def _update_captured_data(manager: SessionManager, scope: SessionScope, number: int) -> object:
    return manager.update_captured_data(
        scope.session_id, _captured(number), workspace_id=scope.workspace_id
    )


# update_session_with_version: one caller per session, so call n expects version 1 + n


def _update_session_with_version(
    manager: SessionManager, scope: SessionScope, number: int
) -> object:
    return manager.update_session_with_version(
        scope.session_id,
        FIRST_VERSION + number,
        workspace_id=scope.workspace_id,
        current_mode=MODES[number % 2],
    )


def _update_session_with_version_rest(client: Client, scope: SessionScope, number: int) -> object:
    version = FIRST_VERSION + number
    builder = client.table(schema.SESSIONS_TABLE).update(
        {"current_mode": MODES[number % 2], "version": version + 1}
    )
    return _session_filter(builder, scope).eq("version", version).single().execute().data


# get_turns


def _get_turns(manager: SessionManager, scope: SessionScope, number: int) -> object:
    return manager.get_turns(scope.session_id, workspace_id=scope.workspace_id, limit=PAGE)


CASES: tuple[Case, ...] = (
    Case("get_session", _get_session, _get_session_rest),
    Case("get_turn_count", _get_turn_count),
    Case("add_turn (new idempotency key)", _add_turn, _add_turn_rest),
    Case(
        f"add_intent_seen (0-{INTENTS_PER_SESSION - 1} intents before)",
        _add_intent_seen,
        _add_intent_seen_rest,
        calls_per_session=INTENTS_PER_SESSION,
    ),
    Case("update_captured_data", _update_captured_data),
    Case(
        "update_session_with_version (mode back and forth)",
        _update_session_with_version,
        _update_session_with_version_rest,
    ),
    Case(
        f"get_turns(limit={PAGE}) of {TURNS_BEFORE_GET_TURNS}",
        _get_turns,
        prepare=_scope_with_turns,
    ),
)


class _RequestCaught(Exception):  # noqa: N818 (stops a call on purpose: not an error)
    def __init__(self, request: Request) -> None:
        super().__init__(request)
        self.request = request


class RequestCatcher:
    """A Transport that sends nothing: it stops each call at the request the library built.

    So the raw side sends exactly what the public method sends, built by the library's own
    operations (validation and defaults included), without a line of SQL or request
    building repeated here.
    """

    def __init__(self) -> None:
        self._manager = SessionManager(self)

    def request_of(self, case: Case, scope: SessionScope, number: int) -> Request:
        """The request call `number` of `case` sends."""
        try:
            case.library(self._manager, scope, number)
        except _RequestCaught as caught:
            return caught.request
        raise RuntimeError(f"{case.name} returned without sending a request")

    def execute(self, request: Request) -> JSON | Failure:
        """Stop the call here (Transport protocol)."""
        raise _RequestCaught(request)

    def close(self) -> None:
        """Nothing to release (Transport protocol)."""


def run(bench: Bench, report: Report) -> None:
    """Measure every case on both paths and print one table per path."""
    parameters = bench.parameters
    how = (
        f"{parameters.client_cost_calls:,} timed calls per operation and side after "
        f"{parameters.warmup} untimed, on one thread, in {parameters.client_cost_blocks} "
        "blocks alternating library and raw"
    )
    cpu = (
        "cpu: CPU time of the calling thread per call (time.thread_time, which leaves out the "
        "time blocked on the socket and any other thread's work), in µs, the median over the "
        "blocks"
    )
    report.table(
        "client_cost_postgres",
        "Client cost on the direct Postgres path: library vs raw psycopg, same statement",
        _postgres_rows(bench),
        notes=(
            f"{cpu}; median: wall latency per call; ratio: library / raw. library: "
            "SessionManager.from_postgres (pool of 1). raw: the statement the library sends, "
            "rendered to text once, with its parameters, on a plain psycopg connection "
            f"(autocommit, prepare_threshold=None): execute + fetchall. {how}.",
        ),
    )
    report.table(
        "client_cost_supabase",
        "Client cost on the Supabase path: library vs raw postgrest-py, same request "
        "(PostgREST mocked with respx)",
        _supabase_rows(bench),
        notes=(
            f"{cpu}, respx's matching and response building included on both sides; ratio: "
            "library / raw. library: SessionManager(create_admin_client(...)). raw: "
            "postgrest-py builder calls on the same client, checked to send the same method, "
            "path, query, Accept and Prefer headers and body; both get the JSON Postgres "
            f"answered to that request. {how}.",
        ),
    )


def _compare(
    bench: Bench,
    library: Sequence[Call],
    raw: Sequence[Call],
    between_blocks: Call | None = None,
) -> list[ClientCost]:
    parameters = bench.parameters
    return measure_client_cost(
        (library, raw),
        warmup=parameters.warmup,
        blocks=parameters.client_cost_blocks,
        between_blocks=between_blocks,
    )


def _cpu_columns(library: ClientCost, raw: ClientCost) -> Row:
    return {
        "library_cpu_us": library.cpu_us_per_call,
        "raw_cpu_us": raw.cpu_us_per_call,
        "cpu_ratio": library.cpu_us_per_call / raw.cpu_us_per_call,
    }


# The direct Postgres path


def _postgres_rows(bench: Bench) -> list[Row]:
    dsn = bench.database.dsn
    with (
        SessionManager.from_postgres(dsn, pool_size=1) as manager,
        psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as connection,
    ):
        return [_postgres_row(bench, case, manager, connection) for case in CASES]


def _postgres_row(
    bench: Bench, case: Case, manager: SessionManager, connection: RawConnection
) -> Row:
    # Each side gets sessions of its own: writes (turn keys, versions) must not collide.
    count = bench.parameters.warmup + bench.parameters.client_cost_calls
    library = [
        partial(case.library, manager, scope, number)
        for number, scope in enumerate(_scopes(bench, case, count))
    ]
    catcher = RequestCatcher()
    raw = [
        _raw_statement(connection, catcher.request_of(case, scope, number))
        for number, scope in enumerate(_scopes(bench, case, count))
    ]
    library_cost, raw_cost = _compare(bench, library, raw)
    return {
        "operation": case.name,
        **_cpu_columns(library_cost, raw_cost),
        "library_median_ms": library_cost.latency.median_ms,
        "raw_median_ms": raw_cost.latency.median_ms,
        "median_ratio": library_cost.latency.median_ms / raw_cost.latency.median_ms,
    }


def _scopes(bench: Bench, case: Case, count: int) -> list[SessionScope]:
    """The session of each call number: one for all, or a new one every calls_per_session."""
    per_session = case.calls_per_session or count
    sessions = [case.prepare(bench) for _ in range(-(-count // per_session))]
    return [sessions[number // per_session] for number in range(count)]


def _raw_statement(connection: RawConnection, request: Request) -> Call:
    """`request` as a raw caller sends it: fixed statement text, parameters, fetchall."""
    statement, parameters = compile_request(request)
    text = statement.as_string(connection)
    return lambda: connection.execute(text, parameters).fetchall()


# The Supabase path (client CPU only)


def _supabase_rows(bench: Bench) -> list[Row]:
    cases = [case for case in CASES if case.rest is not None]
    catcher = RequestCatcher()
    with psycopg.connect(bench.database.dsn, autocommit=True) as connection:
        answers = [
            _answer(connection, catcher.request_of(case, case.prepare(bench), 0)) for case in cases
        ]
    with mock_postgrest() as postgrest:
        return [
            _supabase_row(bench, case, answer, postgrest)
            for case, answer in zip(cases, answers, strict=True)
        ]


def _answer(connection: RawConnection, request: Request) -> JSON:
    """What Postgres answers to `request`: the JSON value of its one row."""
    statement, parameters = compile_request(request)
    row = connection.execute(statement, parameters).fetchone()
    assert row is not None, "every compiled request answers one row"
    return row[0]


def _supabase_row(bench: Bench, case: Case, answer: JSON, postgrest: MockPostgrest) -> Row:
    rest = case.rest
    assert rest is not None
    scope = SessionScope(session_id=uuid4(), workspace_id=uuid4())
    postgrest.answer(RequestCatcher().request_of(case, scope, 0), answer)
    manager = SessionManager(postgrest.client)
    # Both sides make the same calls (no database behind): call n sends the same request.
    count = 1 + bench.parameters.warmup + bench.parameters.client_cost_calls
    library = [partial(case.library, manager, scope, number) for number in range(count)]
    raw = [partial(rest, postgrest.client, scope, number) for number in range(count)]
    postgrest.check_same_request(library[0], raw[0])
    library_cost, raw_cost = _compare(bench, library[1:], raw[1:], postgrest.forget_calls)
    return {"operation": case.name, **_cpu_columns(library_cost, raw_cost)}


def main() -> int:
    """Run this section alone on a fresh database: prints its tables, writes no file."""
    from benchmarks import run as bench_run  # run imports this module: import it late

    return bench_run.main((run,), write_results=False)


if __name__ == "__main__":
    sys.exit(main())
