"""The OpenAI Agents SDK adapter (AgentEngineSession) next to the SDK's own SQLAlchemySession,
on the same PostgreSQL: round trips and latency of add_items and get_items, and the order of
one session's items under concurrent writers.

The SDK's store is `SQLAlchemySession.from_url("postgresql+psycopg://", create_tables=True)`
with tables of its own (SDK_SESSIONS_TABLE, SDK_MESSAGES_TABLE: its default sessions table
would be agent_engine's `agent_sessions`), its further sessions on the same engine, as an app
shares one. Both stores get a pool of `parameters.threads` psycopg AsyncConnections opened
the same way (TracedConnection on the bench's DSN) and are driven on one event loop.

Round trips are counted on the wire for both alike (counting.WireTrace: the ReadyForQuery
messages of libpq's protocol trace), so psycopg's implicit BEGIN, a COMMIT, the ROLLBACK of
a read and a pipelined executemany count as what they cost. The SDK's statements are listed
from SQLAlchemy's own events (begin, before_cursor_execute, commit, rollback) as a check.
Latency: the two stores take turns call by call (timing.measure_async_client_cost). Run it
alone with `python -m benchmarks.openai_agents_sessions`.
"""

from __future__ import annotations

import asyncio
import bisect
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, cast

import psycopg
from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession
from agents.items import TResponseInputItem
from psycopg import sql
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from agent_engine import AsyncSessionManager
from agent_engine._async.postgres_transport import AsyncPostgresTransport
from agent_engine.integrations._openai_items import ITEM_KEY
from agent_engine.integrations.openai_agents import (
    DEFAULT_AGENT_ID,
    AgentEngineSession,
    conversation_id_of,
)
from benchmarks.context import Bench
from benchmarks.counting import WIRE_TRACE_SUPPORTED, TracedConnection, WireTrace
from benchmarks.report import Report, Row
from benchmarks.timing import measure_async_client_cost

SDK_SESSIONS_TABLE = "bench_sdk_sessions"
SDK_MESSAGES_TABLE = "bench_sdk_messages"
STORED_ITEMS = 200
"""Items in the session the reads are timed on (50 turns of 4 items)."""
RECENT = 20
"""get_items(limit=RECENT): the window a runner with session_settings.limit reads."""
COUNTED_CALLS = 10
"""Calls per operation and store whose round trips are counted, after as many untimed."""
OURS = "agent_engine"
THEIRS = "sqlalchemy"

Items = list[TResponseInputItem]
Operation = Callable[[], Coroutine[Any, Any, object]]
"""One measured call on a store, ready to run again and again."""


class ItemSession(Protocol):
    """What both stores offer for a conversation: the two calls a run makes."""

    async def get_items(self, limit: int | None = None) -> Items: ...

    async def add_items(self, items: Items) -> None: ...


@dataclass(frozen=True)
class Store:
    """One of the two stores: a session object for an SDK session id, and where the
    database keeps the order it stored a session's items in."""

    name: str
    session: Callable[[str], ItemSession]
    insertion_order: Callable[[str], dict[str, int]]
    """Tag (see tag_of) -> what the store numbered the item with when it inserted it."""


def run(bench: Bench, report: Report) -> None:
    """Count, time and check both stores; print three tables."""
    workers = bench.parameters.threads
    with asyncio.Runner() as runner, _stores(bench, runner, workers) as (ours, theirs, engine):
        round_trips = _round_trip_rows(bench, runner, ours, theirs, engine)
        latency = _latency_rows(bench, runner, ours, theirs)
        order = [_order_row(bench, runner, store) for store in (ours, theirs)]
    if round_trips:
        report.table(
            "openai_agents_round_trips",
            "OpenAI Agents SDK sessions: round trips per call, AgentEngineSession vs the SDK's "
            "SQLAlchemySession",
            round_trips,
            notes=(
                f"Counted on the wire for both (ReadyForQuery messages in libpq's trace), "
                f"{COUNTED_CALLS} calls each after {COUNTED_CALLS} uncounted. Items: a user "
                "message; a turn with a tool call (user message, function_call, "
                "function_call_output, assistant message with output_text: what the SDK "
                "stores for one turn, in up to 3 calls), here in one call. Reads on a session "
                f"of {STORED_ITEMS} items. "
                "sqlalchemy statements: one call as SQLAlchemy's events saw it (BEGIN and "
                "COMMIT are psycopg's own messages, ROLLBACK the read's end). agent_engine "
                "sends one message per call (its SQL function in a transaction of its own); "
                "the first call for a conversation adds its get-or-create.",
            ),
        )
    report.table(
        "openai_agents_latency",
        f"OpenAI Agents SDK sessions: latency, AgentEngineSession vs SQLAlchemySession "
        f"({STORED_ITEMS} items stored)",
        latency,
        notes=(
            f"Wall time of {bench.parameters.iterations} calls per store and operation in ms, "
            f"after {bench.parameters.warmup} untimed, the stores taking turns call by call "
            f"(A B, B A...), in {bench.parameters.client_cost_blocks} blocks; ratio: "
            "agent_engine median / sqlalchemy median. cpu: the calling thread's CPU per call "
            "in µs (median over the blocks). add_items stores 4 items (a turn with a tool "
            "call) on a session of its own; the reads run on the same session each time.",
        ),
    )
    writes = bench.parameters.order_check_writes_per_task
    report.table(
        "openai_agents_order",
        f"OpenAI Agents SDK sessions: {workers} concurrent writers on one session id, "
        f"{writes} add_items each",
        order,
        notes=(
            f"{workers} asyncio tasks, each with its own session object for the same id, add "
            f"{writes} tagged items one call at a time; then get_items() reads them. "
            "misordered: items that must move to restore each task's own write order (per "
            "task, its items minus the longest run already in order). out of insertion "
            "order: the same count against the order the database inserted them in "
            "(agent_engine: turn_number, given under the session's lock, which get_items "
            "follows; sqlalchemy: the message row's serial id, taken under its FOR UPDATE "
            "of the session row, while get_items sorts by created_at, the inserting "
            "transaction's start): an item read before one stored ahead of it was inserted "
            "into history another reader had already seen.",
        ),
    )


@contextmanager
def _stores(
    bench: Bench, runner: asyncio.Runner, pool_size: int
) -> Iterator[tuple[Store, Store, AsyncEngine]]:
    """Both stores on the bench's database, their tables ready; dropped again at the end."""
    dsn, workspace_id = bench.database.dsn, bench.workspace_id
    manager = AsyncSessionManager(
        AsyncPostgresTransport.connect(dsn, pool_size=pool_size, connection_class=TracedConnection)
    )
    first = SQLAlchemySession.from_url(
        f"bench-{uuid.uuid4()}",
        url="postgresql+psycopg://",
        engine_kwargs={
            "async_creator": partial(TracedConnection.connect, dsn),
            "pool_size": pool_size,
            "max_overflow": 0,
        },
        create_tables=True,
        sessions_table=SDK_SESSIONS_TABLE,
        messages_table=SDK_MESSAGES_TABLE,
    )
    engine = first.engine
    try:
        runner.run(first.get_items())  # creates the tables

        def ours(session_id: str) -> ItemSession:
            return AgentEngineSession(session_id, manager, workspace_id=workspace_id)

        def theirs(session_id: str) -> ItemSession:
            return SQLAlchemySession(
                session_id,
                engine=engine,
                sessions_table=SDK_SESSIONS_TABLE,
                messages_table=SDK_MESSAGES_TABLE,
            )

        def turn_numbers(session_id: str) -> dict[str, int]:
            stored = bench.manager.get_session_by_conversation(
                conversation_id_of(session_id), DEFAULT_AGENT_ID, workspace_id=workspace_id
            )
            assert stored is not None
            turns = bench.manager.get_turns(stored.id, workspace_id=workspace_id)
            return {
                tag_of(cast(Mapping[str, Any], turn.metadata[ITEM_KEY])): turn.turn_number
                for turn in turns
            }

        def row_ids(session_id: str) -> dict[str, int]:
            query = sql.SQL("select id, message_data::jsonb from {} where session_id = %s")
            with psycopg.connect(dsn) as connection:
                rows = connection.execute(
                    query.format(sql.Identifier(SDK_MESSAGES_TABLE)), (session_id,)
                ).fetchall()
            return {tag_of(item): row_id for row_id, item in rows}

        yield Store(OURS, ours, turn_numbers), Store(THEIRS, theirs, row_ids), engine
    finally:
        runner.run(engine.dispose())
        runner.run(manager.aclose())
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                sql.SQL("drop table if exists {}, {}").format(
                    sql.Identifier(SDK_MESSAGES_TABLE), sql.Identifier(SDK_SESSIONS_TABLE)
                )
            )


def user_message(text: str) -> TResponseInputItem:
    """What the SDK stores for the user's input."""
    return cast(TResponseInputItem, {"role": "user", "content": text})


def turn_with_tool_call(tag: str) -> Items:
    """One SDK turn that called a tool: the input, the call, its output, the reply."""
    call_id = f"call_{tag}"
    items: list[dict[str, Any]] = [
        {"role": "user", "content": f"Do you have the trail runner in size 42? ({tag})"},
        {
            "type": "function_call",
            "id": f"fc_{tag}",
            "call_id": call_id,
            "name": "stock",
            "arguments": '{"size": 42}',
            "status": "completed",
        },
        {"type": "function_call_output", "call_id": call_id, "output": "3 pairs in size 42"},
        {
            "type": "message",
            "id": f"msg_{tag}",
            "role": "assistant",
            "status": "completed",
            "content": [
                {
                    "type": "output_text",
                    "text": "Yes, we have 3 pairs of the trail runner in size 42.",
                    "annotations": [],
                }
            ],
        },
    ]
    return cast(Items, items)


def tag_of(item: Mapping[str, Any]) -> str:
    """The tag of an order-check item: its content, `task <t> write <s>`."""
    return str(item.get("content"))


def _filled_session(runner: asyncio.Runner, store: Store) -> ItemSession:
    """A new session holding STORED_ITEMS items (turns with a tool call)."""
    session_id = f"bench-{uuid.uuid4()}"
    session = store.session(session_id)
    for turn in range(STORED_ITEMS // 4):
        runner.run(session.add_items(turn_with_tool_call(f"{turn}")))
    return session


def _operations(runner: asyncio.Runner, store: Store) -> dict[str, Operation]:
    """Each measured call on `store`, ready to run again and again."""
    reads = _filled_session(runner, store)
    writes = store.session(f"bench-{uuid.uuid4()}")
    runner.run(writes.add_items([user_message("hello")]))
    turn = turn_with_tool_call("write")

    def first_call() -> Coroutine[Any, Any, None]:
        return store.session(f"bench-{uuid.uuid4()}").add_items([user_message("hello")])

    return {
        "add_items, 1 item": lambda: writes.add_items([user_message("Size 42?")]),
        "add_items, 4 items (a turn with a tool call)": lambda: writes.add_items(turn),
        f"get_items(limit={RECENT})": lambda: reads.get_items(RECENT),
        "get_items() (all)": lambda: reads.get_items(),
        "add_items, 1 item, first call for a new session id": first_call,
    }


def _round_trip_rows(
    bench: Bench, runner: asyncio.Runner, ours: Store, theirs: Store, engine: AsyncEngine
) -> list[Row]:
    if not WIRE_TRACE_SUPPORTED:
        print("\n(round trips: not counted, psycopg traces connections on Linux only)")
        return []
    calls = {store.name: _operations(runner, store) for store in (ours, theirs)}
    rows: list[Row] = []
    with _statements_of(engine) as statements:
        for operation in calls[OURS]:
            row: Row = {"call": operation}
            for name in (OURS, THEIRS):
                call = calls[name][operation]
                for _ in range(COUNTED_CALLS):
                    runner.run(call())
                with WireTrace() as trace:
                    for _ in range(COUNTED_CALLS):
                        statements.clear()
                        runner.run(call())
                row[name] = trace.round_trips / COUNTED_CALLS
            row[f"{THEIRS}_statements"] = ", ".join(statements)
            rows.append(row)
    return rows


@contextmanager
def _statements_of(engine: AsyncEngine) -> Iterator[list[str]]:
    """What SQLAlchemy sends on `engine` while inside, as it reports it in its events."""
    sent: list[str] = []

    def before_cursor_execute(
        connection: Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        words = statement.split()
        kind = words[0].upper() if words else "?"
        if "FOR UPDATE" in statement.upper():
            kind += " FOR UPDATE"
        if executemany:
            kind += f" ({len(parameters)} rows)"
        sent.append(kind)

    listeners: dict[str, Callable[..., None]] = {
        "begin": lambda connection: sent.append("BEGIN"),
        "before_cursor_execute": before_cursor_execute,
        "commit": lambda connection: sent.append("COMMIT"),
        "rollback": lambda connection: sent.append("ROLLBACK"),
    }
    for name, listener in listeners.items():
        event.listen(engine.sync_engine, name, listener)
    try:
        yield sent
    finally:
        for name, listener in listeners.items():
            event.remove(engine.sync_engine, name, listener)


def _latency_rows(bench: Bench, runner: asyncio.Runner, ours: Store, theirs: Store) -> list[Row]:
    parameters = bench.parameters
    calls = {store.name: _operations(runner, store) for store in (ours, theirs)}
    rows: list[Row] = []
    for operation in (
        "add_items, 4 items (a turn with a tool call)",
        f"get_items(limit={RECENT})",
        "get_items() (all)",
    ):
        count = parameters.warmup + parameters.iterations
        ours_cost, theirs_cost = measure_async_client_cost(
            runner,
            [[calls[OURS][operation]] * count, [calls[THEIRS][operation]] * count],
            warmup=parameters.warmup,
            blocks=parameters.client_cost_blocks,
        )
        rows.append(
            {
                "call": operation,
                f"{OURS}_median_ms": ours_cost.latency.median_ms,
                f"{OURS}_p95_ms": ours_cost.latency.p95_ms,
                f"{THEIRS}_median_ms": theirs_cost.latency.median_ms,
                f"{THEIRS}_p95_ms": theirs_cost.latency.p95_ms,
                "ratio": ours_cost.latency.median_ms / theirs_cost.latency.median_ms,
                f"{OURS}_cpu_us": ours_cost.cpu_us_per_call,
                f"{THEIRS}_cpu_us": theirs_cost.cpu_us_per_call,
            }
        )
    return rows


def _order_row(bench: Bench, runner: asyncio.Runner, store: Store) -> Row:
    """Concurrent writers on one session id of `store`, then what get_items gives back."""
    tasks, writes = bench.parameters.threads, bench.parameters.order_check_writes_per_task
    session_id = f"bench-order-{uuid.uuid4()}"

    async def writer(task: int) -> None:
        session = store.session(session_id)
        for write in range(writes):
            await session.add_items([user_message(f"task {task} write {write}")])

    async def write_all() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(writer(task) for task in range(tasks)))
        return time.perf_counter() - started

    seconds = runner.run(write_all())
    items = runner.run(store.session(session_id).get_items())
    tags = [tag_of(cast(Mapping[str, Any], item)) for item in items]
    expected = {f"task {task} write {write}" for task in range(tasks) for write in range(writes)}
    counts = Counter(tags)
    stored = list(dict.fromkeys(tag for tag in tags if tag in expected))
    inserted = store.insertion_order(session_id)
    by_task: dict[str, list[int]] = {}
    for tag in stored:
        _, task, _, write = tag.split()
        by_task.setdefault(task, []).append(int(write))
    return {
        "store": store.name,
        "items_stored": len(items),
        "duplicates": sum(count - 1 for count in counts.values()),
        "missing": len(expected - counts.keys()),
        "misordered": sum(_out_of_order(writes) for writes in by_task.values()),
        "out_of_insertion_order": _out_of_order([inserted[tag] for tag in stored]),
        "writes_per_s": tasks * writes / seconds,
    }


def _out_of_order(numbers: list[int]) -> int:
    """How many of `numbers` must move to sort them: all but a longest increasing run."""
    tails: list[int] = []
    for number in numbers:
        place = bisect.bisect_left(tails, number)
        tails[place : place + 1] = [number]
    return len(numbers) - len(tails)


def main() -> int:
    """Run this section alone on a fresh database: prints its tables, writes no file."""
    from benchmarks import run as bench_run  # run imports this module: import it late

    return bench_run.main((run,), write_results=False)


if __name__ == "__main__":
    sys.exit(main())
