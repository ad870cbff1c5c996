"""Round trips, latency and throughput of each SessionManager operation, one at a time.

Each case prepares its own session (and whatever the operation needs) and returns a call
that can run any number of times; the throughput runs give every thread its own case.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from agent_engine import TurnRole
from benchmarks.context import AGENT_ID, INITIAL_MODE, Bench
from benchmarks.counting import ROUND_TRIPS
from benchmarks.report import Report, Row
from benchmarks.timing import Call, measure_latency, measure_throughput

TURNS_BEFORE_GET_TURNS = 50
"""Turns in the session get_turns(limit=20) reads: more than one page."""


@dataclass(frozen=True, slots=True)
class Case:
    """An operation to measure: `prepare` sets up a session and returns the call."""

    name: str
    prepare: Callable[[Bench], Call]


def run(bench: Bench, report: Report) -> None:
    """Measure every case and print one table."""
    rows = [_measure(bench, case) for case in CASES]
    rows.append(_checkout_check_cost(bench))
    report.table(
        "operations",
        "Operations on the direct Postgres backend (one caller; throughput with 1 and "
        f"{bench.parameters.threads} threads, each on its own session)",
        rows,
        notes=(
            "statements: executes of the operation's SQL; checkout checks: the pool's empty "
            "query, sent only for a connection idle in the pool past check_idle_after (1 s), "
            "a round trip of its own; the last row times that check alone.",
        ),
    )


def _measure(bench: Bench, case: Case) -> Row:
    parameters = bench.parameters
    call = case.prepare(bench)
    for _ in range(parameters.warmup):
        call()
    latency, round_trips = ROUND_TRIPS.counted(
        lambda: measure_latency(call, iterations=parameters.iterations, warmup=0)
    )
    if round_trips.statements < parameters.iterations:
        # Every operation sends at least one statement: fewer means the counter missed the
        # way the transport talks to the server, and the table would show a false 0.
        raise RuntimeError(f"{case.name}: round trips were not counted ({round_trips})")
    single, many = (
        measure_throughput(
            [case.prepare(bench) for _ in range(threads)],
            operations_per_thread=parameters.operations_per_thread,
            warmup_per_thread=parameters.warmup,
        )
        for threads in (1, parameters.threads)
    )
    return {
        "operation": case.name,
        **round_trips.per(parameters.iterations),
        "median_ms": latency.median_ms,
        "p95_ms": latency.p95_ms,
        "ops_per_s_1_thread": single.per_second,
        f"ops_per_s_{parameters.threads}_threads": many.per_second,
        "speedup": many.per_second / single.per_second,
    }


def _checkout_check_cost(bench: Bench) -> Row:
    parameters = bench.parameters
    with psycopg.connect(bench.database.dsn, autocommit=True) as connection:
        latency = measure_latency(
            lambda: connection.execute(""),
            iterations=parameters.iterations,
            warmup=parameters.warmup,
        )
    return {
        "operation": "(pool checkout check alone: execute(''))",
        "statements_per_op": 0.0,
        "checkout_checks_per_op": 1.0,
        "round_trips_per_op": 1.0,
        "median_ms": latency.median_ms,
        "p95_ms": latency.p95_ms,
    }


# The cases. Each keeps its own counter where successive calls must differ.


def _create_session(bench: Bench) -> Call:
    return bench.new_session


def _get_or_create_existing(bench: Bench) -> Call:
    session = bench.new_session()
    return lambda: bench.manager.get_or_create_session(
        workspace_id=bench.workspace_id,
        agent_id=AGENT_ID,
        conversation_id=session.conversation_id,
        initial_mode=INITIAL_MODE,
    )


def _get_session(bench: Bench) -> Call:
    session = bench.new_session()
    return lambda: bench.manager.get_session(session.id, workspace_id=bench.workspace_id)


def _get_session_by_conversation(bench: Bench) -> Call:
    session = bench.new_session()
    return lambda: bench.manager.get_session_by_conversation(
        session.conversation_id, AGENT_ID, workspace_id=bench.workspace_id
    )


def _update_session_with_version(bench: Bench) -> Call:
    session = bench.new_session()
    # One caller per session: each update succeeds, so the next expects version + 1.
    versions = itertools.count(session.version)
    return lambda: bench.manager.update_session_with_version(
        session.id, next(versions), workspace_id=bench.workspace_id, current_mode="qualifying"
    )


def _get_state(bench: Bench) -> Call:
    session = bench.new_session()
    return lambda: bench.manager.get_state(session.id, workspace_id=bench.workspace_id)


def _add_intent_seen(bench: Bench) -> Call:
    session = bench.new_session()
    return lambda: bench.manager.add_intent_seen(
        session.id, "pricing", workspace_id=bench.workspace_id
    )


def _add_template_sent(bench: Bench) -> Call:
    session = bench.new_session()
    numbers = itertools.count(1)
    return lambda: bench.manager.add_template_sent(
        session.id, f"template-{next(numbers)}", workspace_id=bench.workspace_id
    )


def _update_captured_data(bench: Bench) -> Call:
    session = bench.new_session()
    numbers = itertools.count(1)

    def call() -> object:
        number = next(numbers)
        return bench.manager.update_captured_data(
            session.id, {f"field_{number % 10}": number}, workspace_id=bench.workspace_id
        )

    return call


def _update_state(bench: Bench) -> Call:
    session = bench.new_session()
    numbers = itertools.count(1)
    return lambda: bench.manager.update_state(
        session.id, workspace_id=bench.workspace_id, captured_data={"size": next(numbers)}
    )


def _turn_adder(bench: Bench, keys: Callable[[], str | None]) -> Call:
    session = bench.new_session()
    return lambda: bench.manager.add_turn(
        session.id,
        workspace_id=bench.workspace_id,
        role=TurnRole.USER,
        content="Do you have these in size 42?",
        tokens_used=12,
        idempotency_key=keys(),
    )


def _add_turn_without_key(bench: Bench) -> Call:
    return _turn_adder(bench, lambda: None)


def _add_turn_with_new_key(bench: Bench) -> Call:
    numbers = itertools.count(1)
    return _turn_adder(bench, lambda: f"message-{next(numbers)}")


def _add_turn_replayed_key(bench: Bench) -> Call:
    call = _turn_adder(bench, lambda: "message-1")
    call()  # stores the turn; every measured call is a replay of it
    return call


def _get_turns(bench: Bench) -> Call:
    session = bench.new_session()
    bench.add_turns_in_bulk(session.id, TURNS_BEFORE_GET_TURNS)
    return lambda: bench.manager.get_turns(session.id, workspace_id=bench.workspace_id, limit=20)


def _get_total_tokens_used(bench: Bench) -> Call:
    session = bench.new_session()
    return lambda: bench.manager.get_total_tokens_used(session.id, workspace_id=bench.workspace_id)


def _get_turn_count(bench: Bench) -> Call:
    session = bench.new_session()
    return lambda: bench.manager.get_turn_count(session.id, workspace_id=bench.workspace_id)


CASES: tuple[Case, ...] = (
    Case("create_session", _create_session),
    Case("get_or_create_session (existing)", _get_or_create_existing),
    Case("get_session", _get_session),
    Case("get_session_by_conversation", _get_session_by_conversation),
    Case("update_session_with_version", _update_session_with_version),
    Case("get_state", _get_state),
    Case("add_intent_seen (array grows 1 per call)", _add_intent_seen),
    Case("add_template_sent (new name each call)", _add_template_sent),
    Case("update_captured_data", _update_captured_data),
    Case("update_state (captured_data)", _update_state),
    Case("add_turn (no key)", _add_turn_without_key),
    Case("add_turn (new idempotency key)", _add_turn_with_new_key),
    Case("add_turn (replayed key)", _add_turn_replayed_key),
    Case(f"get_turns(limit=20) of {TURNS_BEFORE_GET_TURNS}", _get_turns),
    Case("get_total_tokens_used", _get_total_tokens_used),
    Case("get_turn_count", _get_turn_count),
)
