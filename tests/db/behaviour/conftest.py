"""Managers on the strict-regime database, a spying transport, and helpers for threads.

Every manager talks to Postgres the way a Supabase app's backend does with its direct
connection string (as the database superuser `postgres`): `SessionManager.from_postgres`,
each suite once with the default statements (one simple-protocol message per call, as
Supavisor's transaction mode needs) and once with `prepare=True` (statements prepared per
connection and executed by name: a wire path of its own).
The server and its databases come from tests/db/conftest.py. Tests isolate themselves with
fresh random workspace and conversation ids.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import psycopg
import pytest
from psycopg.rows import DictRow

from agent_engine import AgentRegistry, AgentSessionWithState, SessionManager
from tests.db.conftest import Database
from tests.managers import Managers, SpyTransport

AGENT_ID = "whatsapp-sales"
"""The registered agent: greeting -> qualifying -> closing (and back to greeting)."""
OTHER_AGENT_ID = "support"

WORKERS = 8
CALLS_PER_WORKER = 50
WAIT_SECONDS = 10.0

Result = TypeVar("Result")


def sample_registry() -> AgentRegistry:
    """Two agents whose valid_transitions forbid skipping a step."""
    registry = AgentRegistry()
    prompts = {"model": "gpt-4o-mini", "system_prompt": "Classify the message."}
    registry.register(
        {
            "id": AGENT_ID,
            "name": "WhatsApp sales",
            "intent_detector": prompts,
            "orchestrator": {**prompts, "system_prompt": "You sell shoes."},
            "states": ["greeting", "qualifying", "closing"],
            "initial_state": "greeting",
            "valid_transitions": {
                "greeting": ["qualifying"],
                "qualifying": ["closing", "greeting"],
            },
        }
    )
    registry.register(
        {
            "id": OTHER_AGENT_ID,
            "name": "Support",
            "intent_detector": prompts,
            "orchestrator": {**prompts, "system_prompt": "You help customers."},
            "states": ["triage", "solving"],
            "initial_state": "triage",
            "valid_transitions": {"triage": ["solving"]},
        }
    )
    return registry


@pytest.fixture
def dsn(database: Database) -> str:
    """The strict-regime database's superuser DSN (a Supabase app's direct connection)."""
    return database.dsn


@pytest.fixture
def registry() -> AgentRegistry:
    return sample_registry()


@pytest.fixture(params=[False, True], ids=["unprepared", "prepared"])
def prepare(request: pytest.FixtureRequest) -> bool:
    """from_postgres' `prepare` for the managers and the spy of a test."""
    prepared: bool = request.param
    return prepared


@pytest.fixture
def manager(
    managers: Managers, dsn: str, registry: AgentRegistry, prepare: bool
) -> Iterator[SessionManager]:
    """A manager with a registry, so modes follow the agents' valid_transitions."""
    with managers.from_postgres(
        dsn, registry=registry, pool_size=4, prepare=prepare
    ) as session_manager:
        yield session_manager


@pytest.fixture
def wide_manager(
    managers: Managers, dsn: str, registry: AgentRegistry, prepare: bool
) -> Iterator[SessionManager]:
    """A manager with one connection per worker (thread, or task of the async manager)."""
    with managers.from_postgres(
        dsn, registry=registry, pool_size=WORKERS, prepare=prepare
    ) as session_manager:
        yield session_manager


@pytest.fixture
def plain_manager(managers: Managers, dsn: str, prepare: bool) -> Iterator[SessionManager]:
    """A manager without a registry: any agent, any mode (a mode is then free text)."""
    with managers.from_postgres(dsn, pool_size=WORKERS, prepare=prepare) as session_manager:
        yield session_manager


@pytest.fixture
def other_instance(dsn: str) -> Iterator[SessionManager]:
    """Another app instance on the same database (a sync manager with its own pool): a
    writer that can get in between a manager's read and its write, whichever the flavour."""
    with SessionManager.from_postgres(dsn, pool_size=1) as session_manager:
        yield session_manager


@pytest.fixture
def spy(managers: Managers, dsn: str, prepare: bool) -> Iterator[SpyTransport]:
    transport = managers.spy(dsn, pool_size=2, prepare=prepare)
    try:
        yield transport
    finally:
        managers.close_transport(transport)


@pytest.fixture
def spy_manager(managers: Managers, spy: SpyTransport, registry: AgentRegistry) -> SessionManager:
    """A manager (with the registry) whose every request lands in `spy.requests`."""
    return managers.over(spy, registry=registry)


@pytest.fixture
def plain_spy_manager(managers: Managers, spy: SpyTransport) -> SessionManager:
    """A manager without a registry whose every request lands in `spy.requests`."""
    return managers.over(spy)


@pytest.fixture
def conversation_id() -> uuid.UUID:
    return uuid.uuid4()


@pytest.fixture
def other_workspace_id() -> uuid.UUID:
    """A second fresh workspace, for isolation checks."""
    return uuid.uuid4()


@pytest.fixture
def active_session(
    manager: SessionManager, workspace_id: uuid.UUID, conversation_id: uuid.UUID
) -> AgentSessionWithState:
    """A new active session of AGENT_ID in the test's workspace (mode `greeting`, version 1)."""
    return manager.create_session(
        workspace_id=workspace_id, agent_id=AGENT_ID, conversation_id=conversation_id
    )


def start_together(
    executor: ThreadPoolExecutor, work: Callable[[int], Result], workers: int = WORKERS
) -> list[Future[Result]]:
    """Starts work(worker_index) in `workers` threads of `executor`, released by one barrier."""
    barrier = threading.Barrier(workers)

    def worker(index: int) -> Result:
        barrier.wait(timeout=WAIT_SECONDS)
        return work(index)

    return [executor.submit(worker, index) for index in range(workers)]


def run_together(work: Callable[[int], Result], workers: int = WORKERS) -> list[Result]:
    """Runs work(worker_index) in `workers` threads released together; their results in order."""
    with ThreadPoolExecutor(max_workers=workers) as executor:
        return [future.result() for future in start_together(executor, work, workers)]


def fill_pool(manager: SessionManager, database: Database, connections: int) -> None:
    """Makes the manager's pool open `connections` connections before a test races threads.

    The pool starts with one connection and opens more one at a time while callers wait, so
    threads released together would mostly run one after another. Here `connections` calls
    wait on a row lock held elsewhere, each holding a connection, until all are open.
    """
    workspace_id = uuid.uuid4()
    session = manager.create_session(
        workspace_id=workspace_id,
        agent_id=AGENT_ID,
        conversation_id=uuid.uuid4(),
        initial_mode="greeting",
    )
    with (
        database.connect_as_owner() as locker,
        database.connect_as_owner() as observer,
        ThreadPoolExecutor(max_workers=connections) as executor,
    ):
        with locker.transaction():
            locker.execute(
                "select 1 from public.agent_sessions where id = %s for update", (session.id,)
            )
            waiting = [
                executor.submit(
                    manager.add_turn,
                    session.id,
                    workspace_id=workspace_id,
                    role="system",
                    content="warm-up",
                )
                for _ in range(connections)
            ]
            # Only the first waiter is blocked by the locker itself; the others queue behind it
            # on the row's tuple lock.
            wait_for_lock_waiters(observer, connections, running="agent_engine_add_turn")
        for future in waiting:
            future.result(timeout=WAIT_SECONDS)


def hold_at_most(locker: psycopg.Connection[DictRow]) -> None:
    """Make the server end the locker's transaction after WAIT_SECONDS idle in it: if a call
    were not bounded, the test would then fail instead of waiting for it forever."""
    locker.execute(f"set idle_in_transaction_session_timeout = {int(WAIT_SECONDS * 1000)}")


def wait_for_lock_waiters(
    observer: psycopg.Connection[DictRow],
    count: int = 1,
    *,
    blocked_by: int | None = None,
    running: str | None = None,
    timeout: float = WAIT_SECONDS,
) -> list[int]:
    """The pids of `count` backends waiting on a lock, polled until `timeout`.

    Only backends of this database waiting on a lock held by `blocked_by` (if given) while
    running a statement containing `running` (if given). Polls pg_stat_activity with a short
    sleep between polls rather than sleeping blindly. `observer` must be in autocommit:
    pg_stat_activity is snapshotted once per transaction.
    """
    deadline = time.monotonic() + timeout
    pids: list[int] = []
    while time.monotonic() < deadline:
        rows = observer.execute(
            "select pid from pg_catalog.pg_stat_activity"
            " where datname = pg_catalog.current_database()"
            "   and pid <> pg_catalog.pg_backend_pid()"
            "   and wait_event_type = 'Lock'"
            "   and (%(blocker)s::integer is null"
            "        or %(blocker)s::integer = any(pg_catalog.pg_blocking_pids(pid)))"
            "   and (%(running)s::text is null or strpos(query, %(running)s::text) > 0)",
            {"blocker": blocked_by, "running": running},
        ).fetchall()
        pids = [int(row["pid"]) for row in rows]
        if len(pids) >= count:
            return pids
        time.sleep(0.01)
    pytest.fail(f"only {len(pids)} of {count} backends waited on a lock within {timeout} s")
