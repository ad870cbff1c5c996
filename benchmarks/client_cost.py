"""What the library costs the client, against the raw driver sending the same request.

Direct Postgres: each operation through `from_postgres` (SessionManager, and on an event
loop AsyncSessionManager), with and without prepared statements, against the statement it
sends (the library's own request, compiled by `compile_request` and rendered to text once)
executed by raw psycopg (Connection, or AsyncConnection on the same loop: autocommit,
prepare_threshold=None, and `execute(prepare=True)` on a connection of its own for the
prepared side) whose answer is fetched as psycopg parses it (jsonb into Python objects).
The raw statement is bare: the library's also bounds the call (`set local
statement_timeout`, or the session's timeout when prepared), validates the arguments,
checks a connection out of its pool and parses the answer into models.

Supabase: each operation through `SessionManager(client)` and `AsyncSessionManager(client)`,
and the same HTTP request sent by hand-written postgrest-py builder calls on the same
client, both answered by an httpx.MockTransport (no PostgREST server, no socket), so only
client CPU means anything there; a check first makes sure both sides send the same request.

Every side runs its calls once each, on one thread, the sides taking turns call by call
(see timing.measure_client_cost); a ratio is the median over the blocks of library / raw
CPU in the same block (timing.paired_ratio). Run it alone with
`python -m benchmarks.client_cost` (prints the tables, writes no results file).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple, TypeVar, cast
from uuid import UUID, uuid4

import psycopg
from postgrest.base_request_builder import BaseFilterRequestBuilder
from supabase import AsyncClient, Client

from agent_engine import AsyncSessionManager, SessionManager
from agent_engine import _schema as schema
from agent_engine._postgres_sql import compile_request
from agent_engine._transport import JSON, Failure, Request
from benchmarks.context import AGENT_ID, INITIAL_MODE, Bench
from benchmarks.database import settle
from benchmarks.mock_postgrest import MockPostgrest
from benchmarks.per_operation import TURNS_BEFORE_GET_TURNS
from benchmarks.pinning import cores_apart
from benchmarks.report import Report, Row
from benchmarks.session_size import PAGE
from benchmarks.timing import (
    AsyncCall,
    Call,
    ClientCost,
    measure_async_client_cost,
    measure_client_cost,
    paired_ratio,
)

FIRST_VERSION = 1
"""A new session's version: the first guarded update expects it."""
MODES = ("qualifying", "greeting")
"""update_session_with_version switches between these, one per call."""
INTENTS_PER_SESSION = 10
"""add_intent_seen moves to a new session after this many calls, so the intents array (which
every call rewrites and returns whole) stays between 0 and 10 entries however long the run."""


class Ids(NamedTuple):
    """A session a case works on: the ids as an app holds them (UUIDs), read for free."""

    session_id: UUID
    workspace_id: UUID


Manager = SessionManager | AsyncSessionManager
"""The cases call the public methods the same way on both; the async ones return awaitables."""
SupabaseClient = Client | AsyncClient
RawConnection = psycopg.Connection[Any]
RawAsyncConnection = psycopg.AsyncConnection[Any]
Filtered = TypeVar("Filtered", bound=BaseFilterRequestBuilder[Any])


def _new_scope(bench: Bench) -> Ids:
    return Ids(session_id=bench.new_session().id, workspace_id=bench.workspace_id)


def _scope_with_turns(bench: Bench) -> Ids:
    scope = _new_scope(bench)
    bench.add_turns_in_bulk(scope.session_id, TURNS_BEFORE_GET_TURNS)
    return scope


def _conversations_scope(bench: Bench) -> Ids:
    """No session yet: its session_id only seeds the conversation ids create_session uses."""
    return Ids(session_id=uuid4(), workspace_id=bench.workspace_id)


@dataclass(frozen=True, slots=True)
class Case:
    """One operation, as call number n of a run makes it.

    `library(manager, scope, n)` calls the public method (on an AsyncSessionManager it
    returns the awaitable); the raw side sends the request that call builds (see
    RequestCatcher). `rest(client, scope, n)` sends that request with postgrest-py's
    builders on a sync or async client (None: not measured on the Supabase path). `prepare`
    makes a session; with `calls_per_session`, a new one every that many calls. `async_too`:
    measured on the async managers as well.
    """

    name: str
    library: Callable[[Manager, Ids, int], object]
    rest: Callable[[SupabaseClient, Ids, int], object] | None = None
    prepare: Callable[[Bench], Ids] = _new_scope
    calls_per_session: int | None = None
    async_too: bool = False


def _ids(scope: Ids) -> dict[str, str]:
    """The arguments every SQL function takes, as a raw caller writes them."""
    return {"p_session_id": str(scope.session_id), "p_workspace_id": str(scope.workspace_id)}


def _session_filter(builder: Filtered, scope: Ids) -> Filtered:
    """The session's filters, as a raw caller writes them."""
    return builder.eq("id", str(scope.session_id)).eq("workspace_id", str(scope.workspace_id))


# get_session


def _get_session(manager: Manager, scope: Ids, number: int) -> object:
    return manager.get_session(scope.session_id, workspace_id=scope.workspace_id)


def _get_session_rest(client: SupabaseClient, scope: Ids, number: int) -> object:
    builder = client.table(schema.SESSIONS_TABLE).select(f"*,{schema.STATE_TABLE}(*)")
    return _session_filter(builder, scope).single().execute()


# create_session: a new conversation each call


def _conversation(scope: Ids, number: int) -> UUID:
    return UUID(int=scope.session_id.int ^ number)


def _create_session(manager: Manager, scope: Ids, number: int) -> object:
    return manager.create_session(
        workspace_id=scope.workspace_id,
        agent_id=AGENT_ID,
        conversation_id=_conversation(scope, number),
        initial_mode=INITIAL_MODE,
    )


def _create_session_rest(client: SupabaseClient, scope: Ids, number: int) -> object:
    arguments: dict[str, Any] = {
        "p_workspace_id": str(scope.workspace_id),
        "p_agent_id": AGENT_ID,
        "p_conversation_id": str(_conversation(scope, number)),
        "p_current_mode": INITIAL_MODE,
        "p_contact_id": None,
        "p_intents_seen": [],
        "p_templates_sent": [],
        "p_captured_data": {},
    }
    return client.rpc(schema.CREATE_SESSION_FUNCTION, arguments).execute()


# get_turn_count


def _get_turn_count(manager: Manager, scope: Ids, number: int) -> object:
    return manager.get_turn_count(scope.session_id, workspace_id=scope.workspace_id)


# add_turn: a new idempotency key each call


def _turn(number: int) -> dict[str, Any]:
    return {
        "role": "user",
        "content": "Do you have these in size 42?",
        "tokens_used": 12,
        "idempotency_key": f"message-{number}",
    }


def _add_turn(manager: Manager, scope: Ids, number: int) -> object:
    return manager.add_turn(scope.session_id, workspace_id=scope.workspace_id, **_turn(number))


def _add_turn_rest(client: SupabaseClient, scope: Ids, number: int) -> object:
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
        "p_metadata": {},
    }
    return client.rpc(schema.ADD_TURN_FUNCTION, arguments).execute()


# add_intent_seen


def _add_intent_seen(manager: Manager, scope: Ids, number: int) -> object:
    return manager.add_intent_seen(scope.session_id, "pricing", workspace_id=scope.workspace_id)


def _add_intent_seen_rest(client: SupabaseClient, scope: Ids, number: int) -> object:
    arguments = {**_ids(scope), "p_intent": "pricing"}
    return client.rpc(schema.APPEND_INTENT_FUNCTION, arguments).execute()


# update_captured_data: ten keys, replaced in turn


def _captured(number: int) -> dict[str, Any]:
    return {f"field_{number % 10}": number}


def _update_captured_data(manager: Manager, scope: Ids, number: int) -> object:
    return manager.update_captured_data(
        scope.session_id, _captured(number), workspace_id=scope.workspace_id
    )


# update_session_with_version: one caller per session, so call n expects version 1 + n


def _update_session_with_version(manager: Manager, scope: Ids, number: int) -> object:
    return manager.update_session_with_version(
        scope.session_id,
        FIRST_VERSION + number,
        workspace_id=scope.workspace_id,
        current_mode=MODES[number % 2],
    )


def _update_session_with_version_rest(client: SupabaseClient, scope: Ids, number: int) -> object:
    version = FIRST_VERSION + number
    builder = client.table(schema.SESSIONS_TABLE).update(
        {"current_mode": MODES[number % 2], "version": version + 1}
    )
    return _session_filter(builder, scope).eq("version", version).single().execute()


# get_turns


def _get_turns(manager: Manager, scope: Ids, number: int) -> object:
    return manager.get_turns(scope.session_id, workspace_id=scope.workspace_id, limit=PAGE)


CASES: tuple[Case, ...] = (
    Case("get_session", _get_session, _get_session_rest, async_too=True),
    Case("get_turn_count", _get_turn_count),
    Case(
        "add_turn (new idempotency key)",
        _add_turn,
        _add_turn_rest,
        async_too=True,
    ),
    Case(
        "create_session (new conversation)",
        _create_session,
        _create_session_rest,
        prepare=_conversations_scope,
        async_too=True,
    ),
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

    def request_of(self, case: Case, scope: Ids, number: int) -> Request:
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


class FourSides(NamedTuple):
    """The costs of one operation: the library and raw psycopg, without and with prepare."""

    library: ClientCost
    raw: ClientCost
    prepared_library: ClientCost
    prepared_raw: ClientCost


def run(bench: Bench, report: Report) -> None:
    """Measure every case on both paths and print the tables."""
    parameters = bench.parameters
    how = (
        f"{parameters.client_cost_calls:,} timed calls per operation and side after "
        f"{parameters.warmup} untimed, on one thread, the two sides compared taking turns "
        f"call by call (A B, B A...; the prepared pair in a run of its own), in "
        f"{parameters.client_cost_blocks} blocks"
    )
    ratio = (
        "ratio: the median over the blocks of library / raw CPU per call in the same block "
        "(timing.paired_ratio: both sides' calls of a block met the same state of the "
        "machine), so not exactly the quotient of the two medians shown"
    )
    cpu = (
        "cpu: CPU time of the calling thread per call (time.thread_time, which leaves out the "
        "time blocked on the socket and any other thread's work, read around each call), in "
        "µs, the median over the blocks"
    )
    sides = (
        "library: from_postgres(pool_size=1), prepared: from_postgres(prepare=True). raw: the "
        "statement the library sends (without its timeout), rendered to text once, with its "
        "parameters, on a plain psycopg connection (autocommit, prepare_threshold=None): "
        "execute + fetchall; prepared raw: execute(prepare=True) on a connection of its own"
    )
    settled = settle(bench.database)
    with cores_apart(bench.database) as placement:
        sync_costs = _postgres_costs(bench)
        async_costs = _async_postgres_costs(bench)
    where = f"Direct Postgres sides: {placement} (see benchmarks/pinning.py); {settled}"
    report.table(
        "client_cost_postgres",
        "Client CPU per operation, direct Postgres, SessionManager vs raw psycopg, same statement",
        [_cpu_row(name, costs) for name, costs in sync_costs],
        notes=(f"{cpu}; {ratio}. {sides}. {how}. {where}.",),
    )
    report.table(
        "client_cost_postgres_async",
        "Client CPU per operation, direct Postgres, AsyncSessionManager vs raw psycopg "
        "AsyncConnection, same statement",
        [_cpu_row(name, costs) for name, costs in async_costs],
        notes=(
            f"{cpu}, the event loop's own work included (each block is one task awaiting its "
            f"calls in turn); {ratio}. {sides} (AsyncSessionManager, "
            f"AsyncConnection). {how}. {where}.",
        ),
    )
    report.table(
        "wall_time_postgres",
        "Wall time per operation, direct Postgres, with and without prepared statements",
        [_wall_row(name, costs) for name, costs in sync_costs]
        + [_wall_row(f"async {name}", costs) for name, costs in async_costs],
        notes=(
            "Median wall latency per call in ms, one caller, from the same runs as the two CPU "
            "tables above; ratio: library / raw; prepared gain: "
            "library without / with prepare. The server runs on this machine, so the time it "
            "spends (parse and plan, which prepared statements save) is in the wall time. "
            f"{where}.",
        ),
    )
    report.table(
        "client_cost_supabase",
        "Client CPU per operation, Supabase path: library vs raw postgrest-py, same request "
        "(PostgREST mocked with httpx.MockTransport)",
        _supabase_rows(bench),
        notes=(
            f"{cpu}, the mock's response building included on both sides; {ratio}. "
            "library: SessionManager(client) / AsyncSessionManager(async_client). raw: "
            "postgrest-py builder calls + execute() on the same client, checked to send the "
            "same method, path, query, Accept and Prefer headers and body; both get the JSON "
            f"Postgres answered to that request. {how}.",
        ),
    )


def _cpu_row(name: str, costs: FourSides) -> Row:
    return {
        "operation": name,
        **_cpu_columns("", costs.library, costs.raw),
        **_cpu_columns("prepared_", costs.prepared_library, costs.prepared_raw),
    }


def _cpu_columns(prefix: str, library: ClientCost, raw: ClientCost) -> Row:
    return {
        f"{prefix}library_cpu_us": library.cpu_us_per_call,
        f"{prefix}raw_cpu_us": raw.cpu_us_per_call,
        f"{prefix}cpu_ratio": paired_ratio(library.cpu_seconds_per_call, raw.cpu_seconds_per_call),
    }


def _wall_row(name: str, costs: FourSides) -> Row:
    library, raw = costs.library.latency.median_ms, costs.raw.latency.median_ms
    prepared_library = costs.prepared_library.latency.median_ms
    prepared_raw = costs.prepared_raw.latency.median_ms
    return {
        "operation": name,
        "library_ms": library,
        "raw_ms": raw,
        "ratio": library / raw,
        "prepared_library_ms": prepared_library,
        "prepared_raw_ms": prepared_raw,
        "prepared_ratio": prepared_library / prepared_raw,
        "prepared_gain": library / prepared_library,
    }


# The direct Postgres path


def _postgres_costs(bench: Bench) -> list[tuple[str, FourSides]]:
    dsn = bench.database.dsn
    with (
        SessionManager.from_postgres(dsn, pool_size=1) as manager,
        SessionManager.from_postgres(dsn, pool_size=1, prepare=True) as prepared_manager,
        psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as connection,
        psycopg.connect(dsn, autocommit=True) as prepared_connection,
    ):
        results = []
        for case in CASES:
            library, prepared_library = (
                [partial(case.library, side, scope, n) for n, scope in _numbered(bench, case)]
                for side in (manager, prepared_manager)
            )
            raw = _raw_calls(bench, case, partial(_raw_statement, connection, prepare=False))
            prepared_raw = _raw_calls(
                bench, case, partial(_raw_statement, prepared_connection, prepare=True)
            )
            sides = _four_sides(
                bench, measure_client_cost, library, raw, prepared_library, prepared_raw
            )
            results.append((case.name, sides))
        return results


def _async_postgres_costs(bench: Bench) -> list[tuple[str, FourSides]]:
    dsn = bench.database.dsn
    with asyncio.Runner() as runner, ExitStack() as stack:
        managers = [
            AsyncSessionManager.from_postgres(dsn, pool_size=1, prepare=prepare)
            for prepare in (False, True)
        ]
        for manager in managers:
            stack.callback(runner.run, manager.aclose())
        connections = [
            runner.run(psycopg.AsyncConnection.connect(dsn, autocommit=True, **options))
            for options in ({"prepare_threshold": None}, {})
        ]
        for connection in connections:
            stack.callback(runner.run, connection.close())
        results = []
        for case in CASES:
            if not case.async_too:
                continue
            library, prepared_library = (
                [
                    cast(AsyncCall, partial(case.library, manager, scope, n))
                    for n, scope in _numbered(bench, case)
                ]
                for manager in managers
            )
            raw, prepared_raw = (
                _raw_calls(bench, case, partial(_raw_async_statement, connection, prepare=prepare))
                for connection, prepare in zip(connections, (False, True), strict=True)
            )
            measure = partial(measure_async_client_cost, runner)
            sides = _four_sides(bench, measure, library, raw, prepared_library, prepared_raw)
            results.append((case.name, sides))
        return results


C = TypeVar("C")


def _four_sides(
    bench: Bench,
    measure: Callable[..., list[ClientCost]],
    library: Sequence[Callable[[], object]],
    raw: Sequence[Callable[[], object]],
    prepared_library: Sequence[Callable[[], object]],
    prepared_raw: Sequence[Callable[[], object]],
) -> FourSides:
    """Each pair compared (library and raw, without and with prepare) measured by
    `measure_client_cost` or its async twin, in a run of its own: the two sides take turns
    call by call, and neither runs beside the other pair's code."""
    unprepared, prepared = (
        measure(pair, warmup=bench.parameters.warmup, blocks=bench.parameters.client_cost_blocks)
        for pair in ((library, raw), (prepared_library, prepared_raw))
    )
    return FourSides(*unprepared, *prepared)


def _numbered(bench: Bench, case: Case) -> list[tuple[int, Ids]]:
    """(call number, session) of each call of one side: a side gets sessions of its own,
    since writes (turn keys, versions, conversations) must not collide."""
    count = bench.parameters.warmup + bench.parameters.client_cost_calls
    per_session = case.calls_per_session or count
    sessions = [case.prepare(bench) for _ in range(-(-count // per_session))]
    return [(number, sessions[number // per_session]) for number in range(count)]


def _raw_calls(bench: Bench, case: Case, raw: Callable[[Request], C]) -> list[C]:
    """The raw side's calls: each sends the request the library's call of that number sends."""
    catcher = RequestCatcher()
    return [raw(catcher.request_of(case, scope, n)) for n, scope in _numbered(bench, case)]


def _raw_statement(connection: RawConnection, request: Request, *, prepare: bool) -> Call:
    """`request` as a raw caller sends it: fixed statement text, parameters, fetchall."""
    statement, parameters = compile_request(request)
    text = statement.as_string(connection)
    return lambda: connection.execute(text, parameters, prepare=prepare).fetchall()


def _raw_async_statement(
    connection: RawAsyncConnection, request: Request, *, prepare: bool
) -> AsyncCall:
    """_raw_statement on an AsyncConnection."""
    statement, parameters = compile_request(request)
    text = statement.as_string(connection)

    async def call() -> object:
        cursor = await connection.execute(text, parameters, prepare=prepare)
        return await cursor.fetchall()

    return call


# The Supabase path (client CPU only)


def _supabase_rows(bench: Bench) -> list[Row]:
    cases = [case for case in CASES if case.rest is not None]
    catcher = RequestCatcher()
    with psycopg.connect(bench.database.dsn, autocommit=True) as connection:
        answers = [
            _answer(connection, catcher.request_of(case, case.prepare(bench), 0)) for case in cases
        ]
    postgrest = MockPostgrest()
    with asyncio.Runner() as runner:
        try:
            return [
                _supabase_row(bench, runner, case, answer, postgrest)
                for case, answer in zip(cases, answers, strict=True)
            ]
        finally:
            postgrest.close()
            runner.run(postgrest.aclose())


def _answer(connection: RawConnection, request: Request) -> JSON:
    """What Postgres answers to `request`: the JSON value of its one row."""
    statement, parameters = compile_request(request)
    row = connection.execute(statement, parameters).fetchone()
    assert row is not None, "every compiled request answers one row"
    return row[0]


def _supabase_row(
    bench: Bench, runner: asyncio.Runner, case: Case, answer: JSON, postgrest: MockPostgrest
) -> Row:
    rest = case.rest
    assert rest is not None
    scope = Ids(session_id=uuid4(), workspace_id=uuid4())
    postgrest.answer(RequestCatcher().request_of(case, scope, 0), answer)
    parameters = bench.parameters
    # Both sides make the same calls (no database behind): call n sends the same request.
    count = 1 + parameters.warmup + parameters.client_cost_calls
    manager = SessionManager(postgrest.client)
    library: list[Call] = [partial(case.library, manager, scope, n) for n in range(count)]
    raw: list[Call] = [partial(rest, postgrest.client, scope, n) for n in range(count)]
    postgrest.check_same_request(library[0], raw[0])
    library_cost, raw_cost = measure_client_cost(
        (library[1:], raw[1:]), warmup=parameters.warmup, blocks=parameters.client_cost_blocks
    )
    async_manager = AsyncSessionManager(postgrest.async_client)
    async_library = [
        cast(AsyncCall, partial(case.library, async_manager, scope, n)) for n in range(count)
    ]
    async_raw = [
        cast(AsyncCall, partial(rest, postgrest.async_client, scope, n)) for n in range(count)
    ]
    postgrest.check_same_request(
        lambda: runner.run(_awaited(async_library[0])), lambda: runner.run(_awaited(async_raw[0]))
    )
    async_library_cost, async_raw_cost = measure_async_client_cost(
        runner,
        (async_library[1:], async_raw[1:]),
        warmup=parameters.warmup,
        blocks=parameters.client_cost_blocks,
    )
    return {
        "operation": case.name,
        **_cpu_columns("", library_cost, raw_cost),
        **_cpu_columns("async_", async_library_cost, async_raw_cost),
    }


async def _awaited(call: Callable[[], Awaitable[object]]) -> object:
    return await call()


def main() -> int:
    """Run this section alone on a fresh database: prints its tables, writes no file."""
    from benchmarks import run as bench_run  # run imports this module: import it late

    return bench_run.main((run,), write_results=False)


if __name__ == "__main__":
    sys.exit(main())
