"""The direct transport's connection handling: round trips, idle checks, dropped connections."""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from agent_engine import SessionManager
from tests.db.conftest import Database
from tests.db.wire import TracedAsyncConnection, TracedConnection, Wire, queries
from tests.managers import Managers

POOL_APPLICATION_NAME = "agent_engine_transport_test"


def traced_class(managers: Managers) -> type[Any]:
    return TracedAsyncConnection if managers.is_async else TracedConnection


class Sent:
    """The simple queries the client sent on the wire since `reset()`: (statements, pings),
    a ping being the pool's empty query."""

    def __init__(self, wire: Wire) -> None:
        self._wire = wire
        self._before = (0, 0)

    def _total(self) -> tuple[int, int]:
        sent = queries(self._wire.messages())
        pings = sent.count("")
        return len(sent) - pings, pings

    def reset(self) -> None:
        self._before = self._total()

    def seen(self) -> tuple[int, int]:
        statements, pings = self._total()
        return statements - self._before[0], pings - self._before[1]


@pytest.fixture
def sent(wire: Wire) -> Sent:
    return Sent(wire)


def manager_on(
    managers: Managers, database: Database, *, check_idle_after: float
) -> SessionManager:
    transport = managers.postgres_transport(
        make_conninfo(database.dsn, application_name=POOL_APPLICATION_NAME),
        pool_size=1,
        check_idle_after=check_idle_after,
        connection_class=traced_class(managers),
    )
    return managers.over(transport)


def new_session(manager: SessionManager) -> tuple[uuid.UUID, uuid.UUID]:
    workspace = uuid.uuid4()
    session = manager.create_session(
        workspace_id=workspace,
        agent_id="sales",
        conversation_id=uuid.uuid4(),
        initial_mode="greeting",
    )
    return session.id, workspace


def test_a_busy_caller_pays_one_round_trip_per_operation(
    managers: Managers, database: Database, sent: Sent
) -> None:
    with manager_on(managers, database, check_idle_after=60) as manager:
        session_id, workspace = new_session(manager)
        sent.reset()

        manager.get_session(session_id, workspace_id=workspace)
        manager.add_turn(session_id, workspace_id=workspace, role="user", content="hi")
        manager.add_intent_seen(session_id, "greeting", workspace_id=workspace)
        manager.get_total_tokens_used(session_id, workspace_id=workspace)

        assert sent.seen() == (4, 0)


def test_a_connection_idle_past_the_window_is_pinged_before_use(
    managers: Managers, database: Database, sent: Sent
) -> None:
    with manager_on(managers, database, check_idle_after=0.05) as manager:
        session_id, workspace = new_session(manager)
        time.sleep(0.1)
        sent.reset()

        manager.get_turn_count(session_id, workspace_id=workspace)

        assert sent.seen() == (1, 1)


def test_a_connection_dropped_while_idle_is_replaced_not_handed_out(
    managers: Managers, database: Database, sent: Sent
) -> None:
    with manager_on(managers, database, check_idle_after=0.05) as manager:
        session_id, workspace = new_session(manager)
        with psycopg.connect(database.dsn, autocommit=True) as admin:
            terminated = admin.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity"
                " where datname = current_database() and application_name = %s",
                (POOL_APPLICATION_NAME,),
            ).fetchall()
        time.sleep(0.1)
        sent.reset()

        # No error reaches the caller: the checkout read the server's goodbye from the
        # socket, with no ping, and the pool opened a new connection.
        assert manager.get_turn_count(session_id, workspace_id=workspace) == 0
        assert terminated == [(True,)]
        assert sent.seen() == (1, 0)


def test_from_postgres_with_no_idle_window_pings_every_checkout(
    managers: Managers, database: Database, sent: Sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport_class = type(managers.postgres_transport(database.dsn, pool_size=1))
    connect: Any = getattr(transport_class.connect, "__func__")  # noqa: B009 (mypy)

    def traced_connect(cls: type[Any], /, dsn: str, **options: Any) -> Any:
        return connect(cls, dsn, connection_class=traced_class(managers), **options)

    monkeypatch.setattr(transport_class, "connect", classmethod(traced_connect))
    with managers.from_postgres(database.dsn, pool_size=1, check_idle_after=0) as manager:
        session_id, workspace = new_session(manager)
        sent.reset()

        manager.get_turn_count(session_id, workspace_id=workspace)
        manager.get_turn_count(session_id, workspace_id=workspace)

        assert sent.seen() == (2, 2)
