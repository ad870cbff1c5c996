"""Appending intents from many threads: read-modify-write of the array against add_intent_seen.

The naive way (the original TypeScript design) reads session_state.intents_seen, appends in
the application and writes the whole array back: two writers that read the same array each
write it back with only their own intent, and one append is lost. add_intent_seen appends
and numbers the intent inside one UPDATE, so concurrent appends queue on the row lock.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

from agent_engine import IntentRecord
from benchmarks.context import Bench
from benchmarks.counting import ROUND_TRIPS
from benchmarks.report import Report, Row
from benchmarks.timing import Call, measure_throughput

Appender = Callable[[Bench, UUID, int], Call]
"""Builds the call of writer `thread`, which appends one new intent each time."""


def _read_modify_write(bench: Bench, session_id: UUID, thread: int) -> Call:
    numbers = itertools.count(1)

    def call() -> None:
        state = bench.manager.get_state(session_id, workspace_id=bench.workspace_id)
        seen = list(state.intents_seen)
        intent = IntentRecord(
            intent=f"writer-{thread}-{next(numbers)}",
            order=len(seen) + 1,
            seen_at=datetime.now(UTC),
        )
        bench.manager.update_state(
            session_id, workspace_id=bench.workspace_id, intents_seen=[*seen, intent]
        )

    return call


def _add_intent_seen(bench: Bench, session_id: UUID, thread: int) -> Call:
    numbers = itertools.count(1)
    return lambda: bench.manager.add_intent_seen(
        session_id, f"writer-{thread}-{next(numbers)}", workspace_id=bench.workspace_id
    )


APPENDERS: tuple[tuple[str, Appender], ...] = (
    ("naive: get_state, append in Python, update_state(intents_seen=...)", _read_modify_write),
    ("add_intent_seen (one UPDATE)", _add_intent_seen),
)


def run(bench: Bench, report: Report) -> None:
    """Run each way on a fresh session under the same load and print one table."""
    parameters = bench.parameters
    rows = [_append_concurrently(bench, name, appender) for name, appender in APPENDERS]
    report.table(
        "lost_updates",
        f"Appending intents: {parameters.threads} threads x {parameters.intents_per_thread}, "
        "one session",
        rows,
        notes=(
            "lost: appended intents missing from the stored array; duplicate orders: "
            "`order` values stored more than once; orders 1..n: the stored orders are exactly "
            "1, 2, ... n.",
        ),
    )


def _append_concurrently(bench: Bench, name: str, appender: Appender) -> Row:
    parameters = bench.parameters
    session = bench.new_session()
    writers = [appender(bench, session.id, thread) for thread in range(parameters.threads)]
    throughput, round_trips = ROUND_TRIPS.counted(
        lambda: measure_throughput(writers, operations_per_thread=parameters.intents_per_thread)
    )
    stored = bench.manager.get_state(session.id, workspace_id=bench.workspace_id).intents_seen
    orders = Counter(intent.order for intent in stored)
    return {
        "way": name,
        "intents_expected": throughput.operations,
        "intents_stored": len(stored),
        "intents_lost": throughput.operations - len({intent.intent for intent in stored}),
        "duplicate_orders": sum(count - 1 for count in orders.values()),
        "orders_1_to_n": sorted(orders.elements()) == list(range(1, len(stored) + 1)),
        "round_trips_per_append": round_trips.per(throughput.operations)["round_trips_per_op"],
        "appends_per_s": throughput.per_second,
    }
