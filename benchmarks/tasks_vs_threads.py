"""N tasks on AsyncSessionManager against N threads on SessionManager, same calls.

Both managers come from `from_postgres` with a pool of N connections (N = the parameters'
threads). Each worker, thread or task, calls on a session of its own, so no worker waits on
another's row lock: the table shows what each client side sustains against the same server.
add_turn runs without and then with prepared statements; prepared get_session, which costs
the server least, shows the rate where the client's core is the limit. Run it alone with
`python -m benchmarks.tasks_vs_threads`.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import sys
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, cast

import psycopg

from agent_engine import AsyncSessionManager, Call, SessionManager
from agent_engine import _operations as operations
from agent_engine._postgres_sql import STATEMENTS
from benchmarks.client_cost import Manager
from benchmarks.context import Bench
from benchmarks.pinning import cores_apart, pinnable
from benchmarks.report import Report, Row
from benchmarks.timing import (
    AsyncCall,
    Throughput,
    measure_async_throughput,
    measure_throughput,
    paired_ratio,
)
from benchmarks.timing import Call as SyncCall


def run(bench: Bench, report: Report) -> None:
    """Measure both managers and the raw driver, each way; print one table."""
    parameters = bench.parameters
    workers = parameters.threads
    report.table(
        "tasks_vs_threads",
        f"AsyncSessionManager with {workers} tasks vs SessionManager with {workers} threads "
        f"(pool of {workers} each)",
        [*_rows(bench, "shared"), *_rows(bench, "apart")],
        notes=(
            f"ops/s: calls completed per second by all workers, each on its own "
            f"session: the median of {parameters.throughput_rounds} rounds that alternate "
            f"threads and tasks, {parameters.operations_per_thread} timed calls per worker "
            f"each, after {parameters.warmup} untimed (which open the pool's connections); "
            "ratio: the median over the rounds of tasks / threads in the same round (so not "
            "exactly the quotient of the two medians shown). cpu: the client process's CPU "
            "time (every thread's) per call, in µs, in the same rounds. preempted: how often "
            "per call the kernel took a core from a runnable client thread (involuntary "
            "context switches, getrusage), in the same rounds: with the cores shared, a query "
            "wakes its backend, which the kernel may run on the sender's core at once; for the "
            "tasks the sender is the event loop's only thread, and every task waits. cores "
            "busy: the share of each core's time it ran anything (client, server, kernel), "
            "core 0 first, the median over the same rounds (/proc/stat): apart, the client has "
            "the first core and the server the others, and a server core near 100% under both "
            "sides means the server, not the client, set the rate of both; a client core near "
            "100% means the client did. raw psycopg: the statement the library sends (without "
            "its timeout), on one plain Connection per thread vs one AsyncConnection per task "
            "(autocommit; prepared: execute(prepare=True)): the driver's own async/sync ratio "
            "here. "
            "cores shared: client and server on every core, as the scheduler places them; "
            "apart: the client on one core, the server on the other (see "
            "benchmarks/pinning.py), as when the database runs on another machine.",
        ),
    )


def _rows(bench: Bench, cores: str) -> list[Row]:
    """The rows of add_turn (raw, unprepared, prepared) and of prepared get_session (raw,
    library), the cores shared or kept apart."""
    apart = cores == "apart"
    if apart and not pinnable(bench.database):
        return []  # the cores stay shared: the first rows already show that
    with cores_apart(bench.database) if apart else nullcontext():
        rows = [
            _raw_row(bench, "add_turn", prepare=False),
            *(_row(bench, "add_turn", prepare) for prepare in (False, True)),
            _raw_row(bench, "get_session", prepare=True),
            _row(bench, "get_session", prepare=True),
        ]
    return [{"cores": cores, **row} for row in rows]


def _row(bench: Bench, operation: str, prepare: bool) -> Row:
    dsn, workers = bench.database.dsn, bench.parameters.threads
    worker = _OPERATIONS[operation].worker
    with (
        SessionManager.from_postgres(dsn, pool_size=workers, prepare=prepare) as manager,
        asyncio.Runner() as runner,
    ):
        async_manager = AsyncSessionManager.from_postgres(dsn, pool_size=workers, prepare=prepare)
        try:
            thread_calls = [worker(bench, manager) for _ in range(workers)]
            task_calls = [cast(AsyncCall, worker(bench, async_manager)) for _ in range(workers)]
            statements = "prepared" if prepare else "unprepared"
            return _compared(operation, statements, bench, runner, thread_calls, task_calls)
        finally:
            runner.run(async_manager.aclose())


def _raw_row(bench: Bench, operation: str, *, prepare: bool) -> Row:
    """Raw psycopg, the operation's statement as the library sends it: threads on
    Connections, tasks on AsyncConnections."""
    dsn, workers = bench.database.dsn, bench.parameters.threads
    # prepare_threshold=None would keep execute(prepare=True) from preparing too.
    options: dict[str, Any] = {"autocommit": True}
    if not prepare:
        options["prepare_threshold"] = None
    connections = [psycopg.connect(dsn, **options) for _ in range(workers)]
    with asyncio.Runner() as runner:
        async_connections = [
            runner.run(psycopg.AsyncConnection.connect(dsn, **options)) for _ in range(workers)
        ]
        try:
            statements = [_OPERATIONS[operation].raw(bench) for _ in range(workers)]
            thread_calls = [
                _raw_caller(connection, statement, prepare)
                for connection, statement in zip(connections, statements, strict=True)
            ]
            task_calls = [
                _raw_async_caller(connection, statement, prepare)
                for connection, statement in zip(async_connections, statements, strict=True)
            ]
            name = "raw psycopg, prepared" if prepare else "raw psycopg"
            return _compared(operation, name, bench, runner, thread_calls, task_calls)
        finally:
            for async_connection in async_connections:
                runner.run(async_connection.close())
            for connection in connections:
                connection.close()


def _compared(
    operation: str,
    statements: str,
    bench: Bench,
    runner: asyncio.Runner,
    thread_calls: list[SyncCall],
    task_calls: list[AsyncCall],
) -> Row:
    """Rounds that alternate the threads and the tasks; the row of their medians."""
    parameters = bench.parameters
    threads: list[Throughput] = []
    tasks: list[Throughput] = []
    for round_number in range(parameters.throughput_rounds):
        warmup = parameters.warmup if round_number == 0 else 0
        threads.append(
            measure_throughput(
                thread_calls,
                operations_per_thread=parameters.operations_per_thread,
                warmup_per_thread=warmup,
            )
        )
        tasks.append(
            measure_async_throughput(
                runner,
                task_calls,
                operations_per_task=parameters.operations_per_thread,
                warmup_per_task=warmup,
            )
        )
    return {
        "operation": operation,
        "statements": statements,
        **_columns("threads", threads),
        **_columns("tasks", tasks),
        "ratio": paired_ratio(
            [round_.per_second for round_ in tasks], [round_.per_second for round_ in threads]
        ),
    }


RawStatement = tuple[bytes, Callable[[], list[Any]]]
"""A statement's text, and a maker of the parameters of each call."""

_TURN: dict[str, Any] = {
    "role": "user",
    "content": "Do you have these in size 42?",
    "tokens_used": 12,
}
"""The turn every add_turn call stores (a new idempotency key each time)."""


def _adder(bench: Bench, manager: Manager) -> SyncCall:
    """A worker's call: add_turn on its own new session, a new idempotency key each time."""
    session_id = bench.new_session().id
    numbers = itertools.count()

    def call() -> object:
        return manager.add_turn(
            session_id,
            workspace_id=bench.workspace_id,
            idempotency_key=f"message-{next(numbers)}",
            **_TURN,
        )

    return call


def _raw_adder(bench: Bench) -> RawStatement:
    """_adder's statement as the library sends it (every add_turn argument, as the manager
    passes them), its idempotency key new at each call."""
    fields = {
        "turn_number": None,
        "intent_detected": None,
        "confidence": None,
        "tools_called": (),
        "idempotency_key": "message-0",
        "metadata": None,
        **_TURN,
    }
    request = operations.add_turn(bench.new_session().id, bench.workspace_id, fields).request
    statement, parameters = STATEMENTS.statement(request)
    assert isinstance(request, Call)
    key = list(request.arguments).index("p_idempotency_key")
    numbers = itertools.count()

    def bound() -> list[Any]:
        values: list[Any] = list(parameters)
        values[key] = f"message-{next(numbers)}"
        return values

    return statement.text, bound


def _reader(bench: Bench, manager: Manager) -> SyncCall:
    """A worker's call: get_session of its own session."""
    session_id = bench.new_session().id
    return lambda: manager.get_session(session_id, workspace_id=bench.workspace_id)


def _raw_reader(bench: Bench) -> RawStatement:
    """_reader's statement as the library sends it, on a session of its own."""
    request = operations.get_session(bench.new_session().id, bench.workspace_id).request
    statement, parameters = STATEMENTS.statement(request)
    return statement.text, lambda: list(parameters)


@dataclass(frozen=True, slots=True)
class _Operation:
    worker: Callable[[Bench, Manager], SyncCall]
    """Makes a worker's call on a manager (on an async one, the call returns an awaitable)."""
    raw: Callable[[Bench], RawStatement]
    """Makes a raw worker's statement."""


_OPERATIONS = {
    "add_turn": _Operation(_adder, _raw_adder),
    "get_session": _Operation(_reader, _raw_reader),
}


def _raw_caller(
    connection: psycopg.Connection[Any], statement: RawStatement, prepare: bool
) -> SyncCall:
    text, bound = statement
    return lambda: connection.execute(text, bound(), prepare=prepare).fetchall()


def _raw_async_caller(
    connection: psycopg.AsyncConnection[Any], statement: RawStatement, prepare: bool
) -> AsyncCall:
    text, bound = statement

    async def call() -> object:
        cursor = await connection.execute(text, bound(), prepare=prepare)
        return await cursor.fetchall()

    return call


def _columns(workers: str, rounds: list[Throughput]) -> Row:
    return {
        f"{workers}_ops_per_s": _median_rate(rounds),
        f"{workers}_cpu_us_per_op": statistics.median(
            throughput.cpu_us_per_operation for throughput in rounds
        ),
        f"{workers}_preempted_per_op": statistics.median(
            throughput.preemptions_per_operation for throughput in rounds
        ),
        f"{workers}_cores_busy": _cores_busy(rounds),
    }


def _cores_busy(rounds: list[Throughput]) -> str | None:
    """Each core's busy share, the median over the rounds, in percent: "35% 98%"."""
    if not rounds[0].cores_busy:
        return None  # no /proc/stat here
    cores = zip(*(throughput.cores_busy for throughput in rounds), strict=True)
    return " ".join(f"{statistics.median(shares):.0%}" for shares in cores)


def _median_rate(rounds: list[Throughput]) -> float:
    return statistics.median(throughput.per_second for throughput in rounds)


def main() -> int:
    """Run this section alone on a fresh database: prints its table, writes no file."""
    from benchmarks import run as bench_run  # run imports this module: import it late

    return bench_run.main((run,), write_results=False)


if __name__ == "__main__":
    sys.exit(main())
