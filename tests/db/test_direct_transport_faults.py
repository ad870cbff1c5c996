"""The direct transport under the faults production brings, on the shared test server.

Dropped connections cost at most one call and are reported once; a lock held past the
timeout ends the call in about the timeout with a retryable error; a missing database or an
unknown role fails at once, not retryable, with the condition's SQLSTATE; a closed manager
says so. The server is never restarted here (tests/faults does that on a private one).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from agent_engine import AgentRegistry, SessionError, SessionManager
from tests.db.behaviour.conftest import (
    AGENT_ID,
    WAIT_SECONDS,
    fill_pool,
    hold_at_most,
    sample_registry,
    wait_for_lock_waiters,
)
from tests.db.conftest import TIMEOUT_MARGIN_SECONDS, Database, backends_of
from tests.leaks import observe
from tests.managers import Managers

POOL_SIZE = 8
FIRST_CALL_AFTER_A_DROP_SECONDS = 1.0
"""The first call after a drop completes (or fails, typed) within this."""


@pytest.fixture
def application_name() -> str:
    """Names the manager's connections, so a test can find and kill exactly them."""
    return f"agent_engine_fault_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def registry() -> AgentRegistry:
    return sample_registry()


@pytest.fixture
def manager(
    managers: Managers, database: Database, registry: AgentRegistry, application_name: str
) -> Iterator[SessionManager]:
    dsn = make_conninfo(database.dsn, application_name=application_name)
    with managers.from_postgres(dsn, registry=registry, pool_size=POOL_SIZE) as manager:
        yield manager


@pytest.fixture
def dropped_full_pool(
    manager: SessionManager, database: Database, application_name: str
) -> tuple[uuid.UUID, uuid.UUID]:
    """(session id, workspace id) of a new session, once the manager's pool was filled with
    POOL_SIZE connections and every one of them was terminated while idle."""
    workspace_id = uuid.uuid4()
    session = manager.create_session(
        workspace_id=workspace_id, agent_id=AGENT_ID, conversation_id=uuid.uuid4()
    )
    fill_pool(manager, database, POOL_SIZE)
    assert kill_all(database, application_name) == POOL_SIZE
    return session.id, workspace_id


def kill_all(database: Database, application_name: str) -> int:
    """Terminate every backend of the manager and wait until they are gone; how many."""
    pids = backends_of(database, application_name)
    with database.connect_as_owner() as admin:
        for pid in pids:
            admin.execute("select pg_catalog.pg_terminate_backend(%s)", (pid,))
    deadline = time.monotonic() + WAIT_SECONDS
    while backends_of(database, application_name):
        assert time.monotonic() < deadline, "terminated backends did not go away"
        time.sleep(0.01)
    return len(pids)


def test_killing_every_idle_connection_costs_at_most_one_of_8_calls_and_one_warning(
    manager: SessionManager,
    dropped_full_pool: tuple[uuid.UUID, uuid.UUID],
    caplog: pytest.LogCaptureFixture,
) -> None:
    session_id, workspace_id = dropped_full_pool
    barrier = threading.Barrier(POOL_SIZE)
    started = time.monotonic()
    finished: list[float] = []

    def call(index: int) -> BaseException | None:
        barrier.wait(timeout=WAIT_SECONDS)
        try:
            manager.add_turn(
                session_id, workspace_id=workspace_id, role="user", content=f"after {index}"
            )
        except SessionError as error:
            return error
        finally:
            finished.append(time.monotonic() - started)
        return None

    with (
        caplog.at_level(logging.DEBUG, logger="agent_engine"),
        ThreadPoolExecutor(max_workers=POOL_SIZE) as executor,
    ):
        outcomes = list(executor.map(call, range(POOL_SIZE)))

    failures = [outcome for outcome in outcomes if outcome is not None]
    assert len(failures) <= 1, failures
    assert all(isinstance(f, SessionError) and f.retryable for f in failures)
    assert min(finished) < FIRST_CALL_AFTER_A_DROP_SECONDS
    assert manager.get_turn_count(session_id, workspace_id=workspace_id) == POOL_SIZE - len(
        failures
    )
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1, [record.getMessage() for record in warnings]
    assert "dropped database connection" in warnings[0].getMessage()


def test_a_connection_found_dead_at_checkout_is_retried_transparently_with_a_debug_line(
    manager: SessionManager,
    database: Database,
    application_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    workspace_id = uuid.uuid4()
    session = manager.create_session(
        workspace_id=workspace_id, agent_id=AGENT_ID, conversation_id=uuid.uuid4()
    )
    kill_all(database, application_name)

    with caplog.at_level(logging.DEBUG, logger="agent_engine"):
        started = time.monotonic()
        turn = manager.add_turn(session.id, workspace_id=workspace_id, role="user", content="hi")
        elapsed = time.monotonic() - started

    assert turn.turn_number == 1
    assert elapsed < FIRST_CALL_AFTER_A_DROP_SECONDS
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("never ran" in message for message in debug), debug


def test_finding_one_dropped_connection_discards_the_dropped_idle_siblings_at_once(
    manager: SessionManager,
    dropped_full_pool: tuple[uuid.UUID, uuid.UUID],
    caplog: pytest.LogCaptureFixture,
) -> None:
    session_id, workspace_id = dropped_full_pool

    with caplog.at_level(logging.DEBUG, logger="agent_engine"):
        for index in range(POOL_SIZE):
            manager.add_turn(
                session_id, workspace_id=workspace_id, role="user", content=f"after {index}"
            )

    # Only the first checkout met a dead connection: its sweep discarded the other seven.
    retries = [r for r in caplog.records if "never ran" in r.getMessage()]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(retries) == 1
    assert warnings == [
        f"found {POOL_SIZE} dropped database connection(s) in the pool (server restart, "
        "terminated backend or pooler timeout); discarded them"
    ]


@pytest.mark.parametrize("prepare", [False, True], ids=["unprepared", "prepared"])
@pytest.mark.parametrize("timeout", [0.5, 1.5])
def test_a_call_on_a_row_locked_beyond_the_timeout_fails_retryably_in_about_the_timeout(
    managers: Managers,
    database: Database,
    registry: AgentRegistry,
    timeout: float,
    prepare: bool,
) -> None:
    workspace_id = uuid.uuid4()
    with (
        managers.from_postgres(
            database.dsn, registry=registry, timeout=timeout, prepare=prepare
        ) as manager,
        database.connect_as_owner() as locker,
    ):
        session = manager.create_session(
            workspace_id=workspace_id, agent_id=AGENT_ID, conversation_id=uuid.uuid4()
        )
        hold_at_most(locker)
        with locker.transaction():
            locker.execute(
                "select 1 from public.agent_sessions where id = %s for update", (session.id,)
            )
            started = time.monotonic()
            with pytest.raises(SessionError) as raised:
                manager.add_turn(session.id, workspace_id=workspace_id, role="user", content="x")
            elapsed = time.monotonic() - started

        assert timeout <= elapsed < timeout + TIMEOUT_MARGIN_SECONDS
        assert (raised.value.code, raised.value.retryable) == ("57014", True)
        assert isinstance(raised.value.__cause__, psycopg.Error)
        # The lock is gone: the same call now succeeds, and the timed-out one wrote nothing.
        turn = manager.add_turn(session.id, workspace_id=workspace_id, role="user", content="x")
        assert turn.turn_number == 1


def test_calls_blocked_on_a_lock_release_their_connections_so_other_calls_are_served(
    managers: Managers, database: Database, registry: AgentRegistry
) -> None:
    workspace_id = uuid.uuid4()
    timeout = 1.0
    with (
        managers.from_postgres(
            database.dsn, registry=registry, pool_size=2, timeout=timeout
        ) as manager,
        database.connect_as_owner() as locker,
        database.connect_as_owner() as observer,
        ThreadPoolExecutor(max_workers=2) as executor,
    ):
        locked, free = (
            manager.create_session(
                workspace_id=workspace_id, agent_id=AGENT_ID, conversation_id=uuid.uuid4()
            )
            for _ in range(2)
        )
        hold_at_most(locker)
        with locker.transaction():
            locker.execute(
                "select 1 from public.agent_sessions where id = %s for update", (locked.id,)
            )
            blocked = [
                executor.submit(
                    manager.add_turn, locked.id, workspace_id=workspace_id, role="user", content="x"
                )
                for _ in range(2)
            ]
            wait_for_lock_waiters(observer, 2, running="agent_engine_add_turn")
            time.sleep(timeout / 3)
            started = time.monotonic()
            # Both connections are held by calls waiting on the lock; this one waits for a
            # connection, which the blocked calls give back when their timeout ends them,
            # well before its own timeout ends.
            count = manager.get_turn_count(free.id, workspace_id=workspace_id)
            waited = time.monotonic() - started
            errors = [future.exception(timeout=WAIT_SECONDS) for future in blocked]

        assert count == 0
        assert waited < timeout
        assert all(isinstance(e, SessionError) and e.code == "57014" for e in errors)


@pytest.mark.parametrize(
    ("override", "code"),
    [({"dbname": "agent_engine_no_such_database"}, "3D000"), ({"user": "no_such_role"}, "28000")],
    ids=["missing database", "unknown role"],
)
def test_a_definitive_connection_refusal_fails_at_once_not_retryable_with_its_code(
    managers: Managers, database: Database, override: dict[str, str], code: str
) -> None:
    dsn = make_conninfo(database.dsn, **override)
    with managers.from_postgres(dsn, timeout=5) as manager:
        started = time.monotonic()
        with pytest.raises(SessionError) as raised:
            manager.get_turn_count(uuid.uuid4(), workspace_id=uuid.uuid4())
        elapsed = time.monotonic() - started

    assert elapsed < 1.0
    assert (raised.value.code, raised.value.retryable) == (code, False)
    assert "could not connect" in str(raised.value)
    assert isinstance(raised.value.__cause__, psycopg.Error)


def test_a_server_that_refuses_connections_is_a_fast_retryable_error(managers: Managers) -> None:
    # Nothing listens on port 1: the connection is refused, as during a restart.
    with managers.from_postgres("postgresql://postgres@127.0.0.1:1/postgres") as manager:
        started = time.monotonic()
        with pytest.raises(SessionError) as raised:
            manager.get_turn_count(uuid.uuid4(), workspace_id=uuid.uuid4())
        elapsed = time.monotonic() - started

    assert elapsed < 1.0
    assert raised.value.retryable is True
    assert raised.value.code is None


def test_an_unknown_host_fails_at_once_not_retryable(managers: Managers) -> None:
    dsn = "postgresql://postgres@no-such-host.invalid/postgres"
    with managers.from_postgres(dsn) as manager:
        started = time.monotonic()
        with pytest.raises(SessionError) as raised:
            manager.get_turn_count(uuid.uuid4(), workspace_id=uuid.uuid4())
        elapsed = time.monotonic() - started

    assert elapsed < 1.0
    assert raised.value.retryable is False
    assert "resolve" in str(raised.value)


def test_a_call_on_a_closed_manager_says_so_and_is_not_retryable(
    manager: SessionManager, database: Database, application_name: str
) -> None:
    workspace_id = uuid.uuid4()
    session = manager.create_session(
        workspace_id=workspace_id, agent_id=AGENT_ID, conversation_id=uuid.uuid4()
    )
    manager.close()

    with pytest.raises(SessionError) as raised:
        manager.get_session(session.id, workspace_id=workspace_id)

    assert raised.value.retryable is False
    assert "closed" in str(raised.value)
    # A closed connection's backend exits a moment after the client said goodbye.
    deadline = time.monotonic() + WAIT_SECONDS
    while backends_of(database, application_name) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert backends_of(database, application_name) == []


def test_no_connection_failure_shows_the_database_password(
    managers: Managers, database: Database
) -> None:
    password = "Zq8-s3cret-Pa55word"
    dsn = make_conninfo(database.dsn, password=password, dbname="agent_engine_no_such_database")

    def call() -> object:
        with managers.from_postgres(dsn, timeout=2) as manager:
            return manager.get_turn_count(uuid.uuid4(), workspace_id=uuid.uuid4())

    observed = observe(call)

    assert isinstance(observed.error, SessionError)
    observed.assert_never_shows(password)
