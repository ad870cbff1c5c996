"""What faults cost on the direct backend, on a private server this section may restart.

- Dropped idle pool: every idle connection of a warm pool of 8 is terminated, then 8 calls run
  at once: how many fail, and how soon the first and the last complete.
- Lock held past the timeout: how long a call on a locked row takes to fail, per timeout.
- Restart under load: 8 threads x 300 add_turn with idempotency keys, each retried while the
  error says retryable, and the server restarted (fast) at a quarter of the way: how many
  attempts failed, the longest a turn waited, and whether every key landed once with gapless
  numbers and exact totals.

Run alone: `python -m benchmarks.faults` (BENCH_QUICK=1: fewer turns).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from agent_engine import SessionError, SessionManager
from agent_engine._migrate import apply_migrations
from agent_engine.testing import LocalPostgres
from benchmarks.context import Bench
from benchmarks.parameters import Parameters
from benchmarks.report import Report, Row

POOL_SIZE = 8
AGENT_ID = "bench-faults"


@contextmanager
def _private_server() -> Iterator[LocalPostgres]:
    directory = Path(tempfile.mkdtemp(prefix="agent_engine_bench_faults_"))
    server = LocalPostgres(directory / "pgdata", cleanup="delete")
    try:
        apply_migrations(server.dsn, local_supabase_roles=True)
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def run(bench: Bench, report: Report) -> None:
    """Measure the three faults on a private server and print one table."""
    parameters = bench.parameters
    with _private_server() as server:
        rows = [_dropped_idle_pool(server.dsn)]
        rows += [_locked_row(server.dsn, timeout) for timeout in (1.0, 5.0)]
        rows.append(_restart_under_load(server, parameters))
    report.table(
        "faults",
        "Faults on the direct backend (private embedded server, restarted by the bench)",
        rows,
        notes=(
            "calls: calls made after the fault (restart: every attempt, retries included); "
            "failed: calls that raised (all retryable); seconds from the fault: first ok (for "
            "the restart, the first success after the last failure), all done, last failure "
            "(for the lock, when the call ended); intact: every key stored once, turn numbers "
            "1..N without a gap, totals equal to the sums. Before this pool (psycopg_pool): "
            "one failed call per dead connection, 7 s (4 connections) to 10 s (8) before a "
            "call succeeded, and a call on a locked row waited as long as the lock was held.",
        ),
    )


def _manager(dsn: str, application_name: str, **options: float) -> SessionManager:
    return SessionManager.from_postgres(
        make_conninfo(dsn, application_name=application_name),
        pool_size=POOL_SIZE,
        timeout=options.get("timeout", 10.0),
    )


def _new_session(manager: SessionManager) -> tuple[uuid.UUID, uuid.UUID]:
    workspace = uuid.uuid4()
    session = manager.create_session(
        workspace_id=workspace,
        agent_id=AGENT_ID,
        conversation_id=uuid.uuid4(),
        initial_mode="greeting",
    )
    return session.id, workspace


def _dropped_idle_pool(dsn: str) -> Row:
    name = f"bench_faults_{uuid.uuid4().hex[:8]}"
    with _manager(dsn, name) as manager, psycopg.connect(dsn, autocommit=True) as admin:
        _warm(dsn, manager, name)
        session_id, workspace = _new_session(manager)
        killed = _count(admin, name, waiting=False)
        admin.execute(
            "select pg_catalog.pg_terminate_backend(pid) from pg_catalog.pg_stat_activity"
            " where application_name = %s",
            (name,),
        )
        while _count(admin, name, waiting=False):
            time.sleep(0.005)
        started = time.monotonic()
        outcomes = _at_once(
            lambda: manager.add_turn(
                session_id, workspace_id=workspace, role="user", content="after the drop"
            )
        )
    done = sorted(seconds - started for seconds, error in outcomes if error is None)
    failures = [seconds - started for seconds, error in outcomes if error is not None]
    return _row(
        f"all {killed} idle connections terminated, then {POOL_SIZE} calls at once",
        calls=len(outcomes),
        failed=len(failures),
        first_ok_s=done[0] if done else None,
        all_done_s=max([*done, *failures]),
        last_failure_s=max(failures) if failures else None,
    )


def _row(fault: str, **values: float | int | bool | None) -> Row:
    row: Row = {
        "fault": fault,
        "calls": None,
        "failed": None,
        "first_ok_s": None,
        "all_done_s": None,
        "last_failure_s": None,
        "intact": None,
    }
    row.update(values)
    return row


def _warm(dsn: str, manager: SessionManager, name: str) -> None:
    """Make the pool open all its connections: calls queue on a row lock held meanwhile."""
    session_id, workspace = _new_session(manager)
    with (
        psycopg.connect(dsn, autocommit=True) as locker,
        psycopg.connect(dsn, autocommit=True) as observer,
        ThreadPoolExecutor(max_workers=POOL_SIZE) as executor,
    ):
        with locker.transaction():
            locker.execute(
                "select 1 from public.agent_sessions where id = %s for update", (session_id,)
            )
            futures = [
                executor.submit(
                    manager.add_turn,
                    session_id,
                    workspace_id=workspace,
                    role="system",
                    content="warm-up",
                )
                for _ in range(POOL_SIZE)
            ]
            while _count(observer, name, waiting=True) < POOL_SIZE:
                time.sleep(0.005)
        for future in futures:
            future.result()


def _count(observer: psycopg.Connection[tuple[object, ...]], name: str, *, waiting: bool) -> int:
    row = observer.execute(
        "select count(*) from pg_catalog.pg_stat_activity"
        " where application_name = %s and (not %s or wait_event_type = 'Lock')",
        (name, waiting),
    ).fetchone()
    return int(str(row[0])) if row else 0


def _at_once(call: Callable[[], object]) -> list[tuple[float, BaseException | None]]:
    barrier = threading.Barrier(POOL_SIZE)

    def one() -> tuple[float, BaseException | None]:
        barrier.wait()
        try:
            call()
        except SessionError as error:
            return time.monotonic(), error
        return time.monotonic(), None

    with ThreadPoolExecutor(max_workers=POOL_SIZE) as executor:
        futures = [executor.submit(one) for _ in range(POOL_SIZE)]
        return [future.result() for future in futures]


def _locked_row(dsn: str, timeout: float) -> Row:
    name = f"bench_faults_{uuid.uuid4().hex[:8]}"
    with (
        _manager(dsn, name, timeout=timeout) as manager,
        psycopg.connect(dsn, autocommit=True) as locker,
    ):
        session_id, workspace = _new_session(manager)
        with locker.transaction():
            locker.execute(
                "select 1 from public.agent_sessions where id = %s for update", (session_id,)
            )
            started = time.monotonic()
            try:
                manager.add_turn(session_id, workspace_id=workspace, role="user", content="x")
                failed = 0
            except SessionError:
                failed = 1
            elapsed = time.monotonic() - started
    return _row(
        f"row locked past the timeout ({timeout:g} s): the call ends",
        calls=1,
        failed=failed,
        last_failure_s=elapsed,
    )


def _restart_under_load(server: LocalPostgres, parameters: Parameters) -> Row:
    threads, per_thread = POOL_SIZE, 40 if parameters.quick else 300
    attempts: list[tuple[float, bool]] = []
    lock = threading.Lock()
    restarted_at: list[float] = []
    with _manager(server.dsn, "bench_faults_restart", timeout=5.0) as manager:
        session_id, workspace = _new_session(manager)

        def add(thread: int, index: int) -> None:
            while True:
                try:
                    manager.add_turn(
                        session_id,
                        workspace_id=workspace,
                        role="user",
                        content=f"{thread}-{index}",
                        tokens_used=index % 50,
                        idempotency_key=f"{thread}.{index}",
                    )
                except SessionError as error:
                    with lock:
                        attempts.append((time.monotonic(), False))
                    if not error.retryable:
                        raise
                    time.sleep(0.05)
                    continue
                with lock:
                    attempts.append((time.monotonic(), True))
                return

        def writer(thread: int) -> None:
            for index in range(per_thread):
                add(thread, index)

        def restarter() -> None:
            while len(attempts) < threads * per_thread // 4:
                time.sleep(0.005)
            restarted_at.append(time.monotonic())
            server.restart()

        with ThreadPoolExecutor(max_workers=threads + 1) as executor:
            futures = [executor.submit(restarter)]
            futures += [executor.submit(writer, thread) for thread in range(threads)]
            for future in futures:
                future.result()
        turns = manager.get_turns(session_id, workspace_id=workspace)
        count = manager.get_turn_count(session_id, workspace_id=workspace)
        tokens = manager.get_total_tokens_used(session_id, workspace_id=workspace)
    expected = threads * per_thread
    keys = {turn.idempotency_key for turn in turns}
    intact = (
        len(turns) == len(keys) == count == expected
        and [turn.turn_number for turn in turns] == list(range(1, expected + 1))
        and tokens == threads * sum(index % 50 for index in range(per_thread))
    )
    fault_at = restarted_at[0]
    successes = sorted(at - fault_at for at, ok in attempts if ok)
    failures = [at - fault_at for at, ok in attempts if not ok]
    return _row(
        f"restart (fast) under {threads} x {per_thread} keyed add_turn, retried while retryable",
        calls=len(attempts),
        failed=len(failures),
        first_ok_s=next((at for at in successes if at > max(failures, default=0.0)), None),
        all_done_s=successes[-1],
        last_failure_s=max(failures, default=None),
        intact=intact,
    )


def main() -> int:
    """Run this section alone (it needs no database of the bench's)."""
    from benchmarks.run import main as run_main

    return run_main((run,), write_results=False)


if __name__ == "__main__":
    sys.exit(main())
