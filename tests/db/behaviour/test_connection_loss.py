"""Connections the server drops: a retryable error at worst, then the pool recovers.

A call killed mid-flight is made to wait on a row lock held by another connection, so it
is certainly running on the server when its backend is terminated. Every pool here has one
connection only, so a later call can only succeed on a replacement.
"""

from __future__ import annotations

import inspect
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from psycopg.rows import DictRow

from agent_engine import AgentRegistry, SessionError, SessionManager
from agent_engine._sync.postgres_transport import PostgresTransport
from tests.db.behaviour.conftest import AGENT_ID, WAIT_SECONDS, wait_for_lock_waiters
from tests.db.conftest import Database
from tests.managers import Managers

pytestmark = pytest.mark.db

Call = Callable[[SessionManager, uuid.UUID, uuid.UUID], object]

IDLE_CHECK_WINDOW: float = (
    inspect.signature(PostgresTransport.connect).parameters["check_idle_after"].default
)
"""Seconds a pooled connection of `from_postgres` must sit idle before checkout pings it."""

# Which row each call waits on, and the call itself.
BLOCKED_CALLS: dict[str, tuple[str, Call]] = {
    "add_turn": (
        "select 1 from public.agent_sessions where id = %s for update",
        lambda m, s, w: m.add_turn(s, workspace_id=w, role="user", content="hi", tokens_used=9),
    ),
    "add_intent_seen": (
        "select 1 from public.session_state where session_id = %s for update",
        lambda m, s, w: m.add_intent_seen(s, "pricing", workspace_id=w),
    ),
}


@pytest.mark.parametrize("method", sorted(BLOCKED_CALLS))
def test_connection_killed_mid_call_raises_retryable_error_and_next_call_succeeds(
    managers: Managers,
    database: Database,
    registry: AgentRegistry,
    workspace_id: uuid.UUID,
    conversation_id: uuid.UUID,
    method: str,
) -> None:
    lock_row, call = BLOCKED_CALLS[method]
    with (
        managers.from_postgres(database.dsn, registry=registry, pool_size=1) as manager,
        database.connect_as_owner() as locker,
        database.connect_as_owner() as observer,
        ThreadPoolExecutor(max_workers=1) as executor,
    ):
        session = manager.create_session(
            workspace_id=workspace_id, agent_id=AGENT_ID, conversation_id=conversation_id
        )
        with locker.transaction():
            locker.execute(lock_row, (session.id,))
            blocked = executor.submit(call, manager, session.id, workspace_id)
            (victim,) = wait_for_lock_waiters(observer, blocked_by=locker.info.backend_pid)
            observer.execute("select pg_catalog.pg_terminate_backend(%s)", (victim,))
            error = blocked.exception(timeout=WAIT_SECONDS)

        assert isinstance(error, SessionError), f"expected a SessionError, got {error!r}"
        assert error.retryable is True
        assert isinstance(error.__cause__, psycopg.Error)
        assert (error.session_id, error.workspace_id) == (session.id, workspace_id)

        # The killed call wrote nothing; the same call now succeeds on a new connection.
        unchanged = manager.get_session(session.id, workspace_id=workspace_id)
        assert unchanged == session
        call(manager, session.id, workspace_id)
        after = manager.get_session(session.id, workspace_id=workspace_id)
        written = (after.turn_count, len(after.state.intents_seen))
        assert written == ((1, 0) if method == "add_turn" else (0, 1))


def test_connection_dropped_while_idle_in_the_pool_is_replaced_before_the_next_call(
    managers: Managers,
    database: Database,
    registry: AgentRegistry,
    workspace_id: uuid.UUID,
    conversation_id: uuid.UUID,
) -> None:
    with database.connect_as_owner() as observer:
        before = own_database_backends(observer)
        with managers.from_postgres(database.dsn, registry=registry, pool_size=1) as manager:
            session = manager.create_session(
                workspace_id=workspace_id, agent_id=AGENT_ID, conversation_id=conversation_id
            )
            returned_at = time.monotonic()
            (pooled,) = own_database_backends(observer) - before
            observer.execute("select pg_catalog.pg_terminate_backend(%s)", (pooled,))
            wait_until_gone(observer, pooled)
            # Connections reused within the window are handed out unpinged (a busy caller
            # pays one round trip per operation); one idle past it is checked on checkout.
            time.sleep(max(0.0, returned_at + IDLE_CHECK_WINDOW + 0.25 - time.monotonic()))

            turn = manager.add_turn(
                session.id, workspace_id=workspace_id, role="user", content="still here"
            )

            assert turn.turn_number == 1
            assert pooled not in own_database_backends(observer)


def test_connection_dropped_within_the_reuse_window_is_found_without_a_round_trip(
    managers: Managers,
    database: Database,
    registry: AgentRegistry,
    workspace_id: uuid.UUID,
    conversation_id: uuid.UUID,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with database.connect_as_owner() as observer:
        before = own_database_backends(observer)
        # A window longer than the test, so the dropped connection is not pinged: its socket
        # holds the server's goodbye, which the checkout reads without a round trip.
        with managers.from_postgres(
            database.dsn, registry=registry, pool_size=1, check_idle_after=60
        ) as manager:
            session = manager.create_session(
                workspace_id=workspace_id, agent_id=AGENT_ID, conversation_id=conversation_id
            )
            (pooled,) = own_database_backends(observer) - before
            observer.execute("select pg_catalog.pg_terminate_backend(%s)", (pooled,))
            wait_until_gone(observer, pooled)

            with caplog.at_level(logging.DEBUG, logger="agent_engine"):
                turn = manager.add_turn(
                    session.id, workspace_id=workspace_id, role="user", content="not lost"
                )

            assert turn.turn_number == 1
            assert manager.get_turn_count(session.id, workspace_id=workspace_id) == 1
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1
            assert "dropped database connection" in warnings[0].getMessage()


def own_database_backends(observer: psycopg.Connection[DictRow]) -> set[int]:
    """Client backends connected to the observer's database, the observer excepted."""
    rows = observer.execute(
        "select pid from pg_catalog.pg_stat_activity"
        " where datname = pg_catalog.current_database()"
        "   and pid <> pg_catalog.pg_backend_pid() and backend_type = 'client backend'"
    ).fetchall()
    return {int(row["pid"]) for row in rows}


def wait_until_gone(observer: psycopg.Connection[DictRow], pid: int) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while pid in own_database_backends(observer):
        if time.monotonic() > deadline:
            pytest.fail(f"backend {pid} still there {WAIT_SECONDS} s after pg_terminate_backend")
        time.sleep(0.01)
