"""The direct transport's connection handling: round trips, idle checks, dropped connections."""

from __future__ import annotations

import time
import uuid
from typing import Any, ClassVar

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from agent_engine import SessionManager
from agent_engine._sync.postgres_transport import PostgresTransport
from tests.db.conftest import Database


class CountingConnection(psycopg.Connection[Any]):
    """Counts what reaches the server: statements, and the pool's empty-query pings."""

    statements: ClassVar[int] = 0
    pings: ClassVar[int] = 0

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        if query == "":
            CountingConnection.pings += 1
        else:
            CountingConnection.statements += 1
        return super().execute(query, params, **kwargs)

    @classmethod
    def reset_counts(cls) -> None:
        cls.statements = cls.pings = 0


POOL_APPLICATION_NAME = "agent_engine_transport_test"


def manager_on(database: Database, *, check_idle_after: float) -> SessionManager:
    transport = PostgresTransport.connect(
        make_conninfo(database.dsn, application_name=POOL_APPLICATION_NAME),
        pool_size=1,
        check_idle_after=check_idle_after,
        connection_class=CountingConnection,
    )
    return SessionManager(transport)


def new_session(manager: SessionManager) -> tuple[uuid.UUID, uuid.UUID]:
    workspace = uuid.uuid4()
    session = manager.create_session(
        workspace_id=workspace,
        agent_id="sales",
        conversation_id=uuid.uuid4(),
        initial_mode="greeting",
    )
    return session.id, workspace


def test_a_busy_caller_pays_one_round_trip_per_operation(database: Database) -> None:
    with manager_on(database, check_idle_after=60) as manager:
        session_id, workspace = new_session(manager)
        CountingConnection.reset_counts()

        manager.get_session(session_id, workspace_id=workspace)
        manager.add_turn(session_id, workspace_id=workspace, role="user", content="hi")
        manager.add_intent_seen(session_id, "greeting", workspace_id=workspace)
        manager.get_total_tokens_used(session_id, workspace_id=workspace)

        assert (CountingConnection.statements, CountingConnection.pings) == (4, 0)


def test_a_connection_idle_past_the_window_is_pinged_before_use(database: Database) -> None:
    with manager_on(database, check_idle_after=0.05) as manager:
        session_id, workspace = new_session(manager)
        time.sleep(0.1)
        CountingConnection.reset_counts()

        manager.get_turn_count(session_id, workspace_id=workspace)

        assert (CountingConnection.statements, CountingConnection.pings) == (1, 1)


def test_a_connection_dropped_while_idle_is_replaced_not_handed_out(database: Database) -> None:
    with manager_on(database, check_idle_after=0.05) as manager:
        session_id, workspace = new_session(manager)
        with psycopg.connect(database.dsn, autocommit=True) as admin:
            terminated = admin.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity"
                " where datname = current_database() and application_name = %s",
                (POOL_APPLICATION_NAME,),
            ).fetchall()
        time.sleep(0.1)
        CountingConnection.reset_counts()

        # No error reaches the caller: the checkout read the server's goodbye from the
        # socket, with no ping, and the pool opened a new connection.
        assert manager.get_turn_count(session_id, workspace_id=workspace) == 0
        assert terminated == [(True,)]
        assert (CountingConnection.statements, CountingConnection.pings) == (1, 0)


def test_from_postgres_with_no_idle_window_pings_every_checkout(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect = PostgresTransport.connect.__func__  # type: ignore[attr-defined]

    def counting_connect(cls: type[PostgresTransport], /, dsn: str, **options: Any) -> Any:
        return connect(cls, dsn, connection_class=CountingConnection, **options)

    monkeypatch.setattr(PostgresTransport, "connect", classmethod(counting_connect))
    with SessionManager.from_postgres(database.dsn, pool_size=1, check_idle_after=0) as manager:
        session_id, workspace = new_session(manager)
        CountingConnection.reset_counts()

        manager.get_turn_count(session_id, workspace_id=workspace)
        manager.get_turn_count(session_id, workspace_id=workspace)

        assert (CountingConnection.statements, CountingConnection.pings) == (2, 2)
