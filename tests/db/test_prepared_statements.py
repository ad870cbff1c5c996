"""from_postgres(prepare=True): server-side prepared statements on connections of our own.

Both managers, sync and async: the answers and errors are the ones the default mode gives,
every operation is still one round trip (counted on the wire by libpq's protocol trace),
its statement really is prepared once per connection and then only executed, and the
timeout still bounds every call, a lock wait included, even for a call that waited for its
connection and so has less time left than the connection's session timeout.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import psycopg
import pytest

from agent_engine import (
    AgentRegistry,
    ConfigError,
    SessionAlreadyActiveError,
    SessionError,
    SessionManager,
    SessionNotFoundError,
    VersionConflictError,
)
from agent_engine._async import postgres_transport as async_postgres_transport
from agent_engine._postgres_exchange import exchange
from agent_engine._postgres_sql import Parameter, Statement, first_values
from agent_engine._prepared import PreparedSession
from agent_engine._sync import postgres_transport as sync_postgres_transport
from tests.db.behaviour.conftest import (
    AGENT_ID,
    WAIT_SECONDS,
    hold_at_most,
    sample_registry,
    wait_for_lock_waiters,
)
from tests.db.conftest import TIMEOUT_MARGIN_SECONDS, Database
from tests.db.wire import TracedAsyncConnection, TracedConnection, Wire
from tests.managers import Managers

LOCK_SESSION = "select 1 from public.agent_sessions where id = %s for update"


@pytest.fixture
def registry() -> AgentRegistry:
    return sample_registry()


def traced_manager(
    managers: Managers, database: Database, registry: AgentRegistry
) -> SessionManager:
    """A prepared-mode manager with one connection, traced, never pinged (idle window 60 s)."""
    transport = managers.postgres_transport(
        database.dsn,
        pool_size=1,
        check_idle_after=60,
        prepare=True,
        connection_class=TracedAsyncConnection if managers.is_async else TracedConnection,
    )
    return managers.over(transport, registry=registry)


def rows_on(managers: Managers, connection: psycopg.BaseConnection[Any], query: str) -> list[Any]:
    """`query`'s rows (none for a command), asked on `connection` itself (a manager's)."""
    if isinstance(connection, psycopg.AsyncConnection):

        async def ask() -> list[Any]:
            cursor = await connection.execute(query)
            return await cursor.fetchall() if cursor.description else []

        rows: list[Any] = managers.run(ask)
        return rows
    assert isinstance(connection, psycopg.Connection)
    cursor = connection.execute(query)
    return cursor.fetchall() if cursor.description else []


def prepared_statements(
    managers: Managers, connection: psycopg.BaseConnection[Any]
) -> dict[str, tuple[str, int]]:
    """The statements prepared on `connection` (pg_prepared_statements is per session): the
    text that prepared each (a PREPARE's whole message) and how many times it was executed,
    by name."""
    query = (
        "select name, statement, generic_plans + custom_plans as executions"
        " from pg_catalog.pg_prepared_statements"
    )
    rows = rows_on(managers, connection, query)
    return {name: (statement, executions) for name, statement, executions in rows}


def test_prepared_and_unprepared_managers_give_the_same_answers_and_errors(
    managers: Managers, database: Database, registry: AgentRegistry, workspace_id: uuid.UUID
) -> None:
    conversation_id = uuid.uuid4()
    with (
        managers.from_postgres(database.dsn, registry=registry, prepare=True) as prepared,
        managers.from_postgres(database.dsn, registry=registry) as plain,
    ):
        created = prepared.create_session(
            workspace_id=workspace_id,
            agent_id=AGENT_ID,
            conversation_id=conversation_id,
            contact_id=uuid.uuid4(),
            initial_state={"captured_data": {"size": 42}, "templates_sent": ["welcome"]},
        )
        session_id = created.id
        for manager in (prepared, plain):
            assert manager.get_session(session_id, workspace_id=workspace_id) == created
            assert (
                manager.get_session_by_conversation(
                    conversation_id, AGENT_ID, workspace_id=workspace_id
                )
                == created
            )

        turn_fields: dict[str, Any] = {
            "role": "user",
            "content": "it's 100% 'quoted' \\ and $1",
            "intent_detected": "pricing",
            "confidence": 0.75,
            "tools_called": [{"name": "lookup", "input": {"sku": 42}, "result": ["ok", None]}],
            "tokens_used": 12,
            "idempotency_key": "message-1",
        }
        turn = prepared.add_turn(session_id, workspace_id=workspace_id, **turn_fields)
        again = prepared.add_turn(session_id, workspace_id=workspace_id, **turn_fields)
        assert again == turn
        for manager in (prepared, plain):
            assert manager.get_turns(session_id, workspace_id=workspace_id, limit=5) == [turn]
            assert manager.get_turn_count(session_id, workspace_id=workspace_id) == 1
            assert manager.get_total_tokens_used(session_id, workspace_id=workspace_id) == 12

        updated = prepared.update_session_with_version(
            session_id, created.version, workspace_id=workspace_id, current_mode="qualifying"
        )
        assert (updated.version, updated.current_mode) == (created.version + 1, "qualifying")
        state = prepared.update_captured_data(
            session_id, {"colour": "blue"}, workspace_id=workspace_id
        )
        state = prepared.add_intent_seen(session_id, "pricing", workspace_id=workspace_id)
        assert state.captured_data == {"size": 42, "colour": "blue"}
        for manager in (prepared, plain):
            assert manager.get_state(session_id, workspace_id=workspace_id) == state
            assert manager.get_session(session_id, workspace_id=workspace_id).version == 2

        with pytest.raises(VersionConflictError) as conflict:
            prepared.update_session_with_version(
                session_id, created.version, workspace_id=workspace_id, current_mode="closing"
            )
        assert (conflict.value.expected_version, conflict.value.actual_version) == (1, 2)
        with pytest.raises(SessionAlreadyActiveError) as active:
            prepared.create_session(
                workspace_id=workspace_id, agent_id=AGENT_ID, conversation_id=conversation_id
            )
        assert active.value.code == "23505"
        with pytest.raises(SessionNotFoundError):
            prepared.get_session(uuid.uuid4(), workspace_id=workspace_id)


def test_every_operation_is_one_round_trip_and_its_statement_is_prepared_once(
    managers: Managers,
    database: Database,
    registry: AgentRegistry,
    workspace_id: uuid.UUID,
    wire: Wire,
) -> None:
    with traced_manager(managers, database, registry) as manager:
        trips: list[int] = []

        def counted(call: Any, *args: Any, **kwargs: Any) -> Any:
            before = wire.round_trips()
            try:
                return call(*args, **kwargs)
            finally:
                trips.append(wire.round_trips() - before)

        # The first call opens the connection: it sets the session's timeout, prepares and
        # executes its statement, in one message.
        session = counted(
            manager.create_session,
            workspace_id=workspace_id,
            agent_id=AGENT_ID,
            conversation_id=uuid.uuid4(),
        )
        for number in range(3):
            counted(
                manager.add_turn,
                session.id,
                workspace_id=workspace_id,
                role="user",
                content=f"message {number}",
            )
            counted(manager.get_session, session.id, workspace_id=workspace_id)
        with pytest.raises(SessionNotFoundError):
            counted(manager.get_session, uuid.uuid4(), workspace_id=workspace_id)

        assert trips == [1] * 8
        sent = [(message, rest) for direction, message, rest in wire.messages() if direction == "F"]
        queries = [rest for message, rest in sent if message == "Query"]
        executions_by_name = [rest for message, rest in sent if message == "Bind"]
        # Nothing parsed through the protocol: three statements prepared by name in the
        # messages of their first calls, the other calls (all but those whose time left
        # differed from the session's timeout) executing them by name alone.
        assert [message for message, _ in sent].count("Parse") == 0
        assert sum("prepare agent_engine_" in query for query in queries) == 3
        assert all(query.startswith('"set statement_timeout = ') for query in queries)
        assert len(queries) + len(executions_by_name) == len(trips)
        assert executions_by_name
        assert all(rest.startswith('"" "agent_engine_') for rest in executions_by_name)

        [connection] = wire.connections
        prepared = prepared_statements(managers, connection)
        assert all(name.startswith("agent_engine_") for name in prepared)
        executions = {
            function: count
            for statement, count in prepared.values()
            for function in (
                "agent_engine_add_turn",
                "agent_engine_create_session",
                "agent_sessions",
            )
            if f'as select "public"."{function}"' in statement
            or (function == "agent_sessions" and "as select to_jsonb(t)" in statement)
        }
        assert executions == {
            "agent_engine_create_session": 1,
            "agent_engine_add_turn": 3,
            "agent_sessions": 4,
        }
        wire.stop()


def test_the_default_mode_sends_one_simple_query_and_prepares_nothing(
    managers: Managers, database: Database, registry: AgentRegistry, wire: Wire
) -> None:
    transport = managers.postgres_transport(
        database.dsn,
        pool_size=1,
        check_idle_after=60,
        connection_class=TracedAsyncConnection if managers.is_async else TracedConnection,
    )
    with managers.over(transport, registry=registry) as manager:
        manager.create_session(
            workspace_id=uuid.uuid4(), agent_id=AGENT_ID, conversation_id=uuid.uuid4()
        )
        messages = wire.messages()
        [connection] = wire.connections
        assert prepared_statements(managers, connection) == {}
        wire.stop()
    # One simple-protocol message, the timeout and the statement: Supavisor's transaction
    # mode needs nothing more.
    assert [message for direction, message, _ in messages if direction == "F"] == ["Query"]
    assert [message for _, message, _ in messages].count("ReadyForQuery") == 1


def postgres_transport_module(managers: Managers) -> ModuleType:
    """The module of the direct transport of this flavour."""
    return async_postgres_transport if managers.is_async else sync_postgres_transport


def test_a_timeout_rolled_back_with_a_failing_statement_is_set_again(
    managers: Managers, database: Database, registry: AgentRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first call on a connection sets the session's timeout and prepares its statement
    in one pipeline; when the statement fails, the setting is rolled back with it, so the
    next call must set it again, not run unbounded. Every call is made to have exactly the
    whole timeout left, so only that rollback can tell the setting is missing."""
    timeout = 0.5
    module = postgres_transport_module(managers)
    monkeypatch.setattr(module, "milliseconds_left", lambda deadline: int(timeout * 1000))
    workspace_id = uuid.uuid4()
    with (
        managers.from_postgres(database.dsn, registry=registry) as other,
        managers.from_postgres(
            database.dsn, registry=registry, pool_size=1, timeout=timeout, prepare=True
        ) as manager,
        database.connect_as_owner() as locker,
    ):
        # Made elsewhere: the failing call below is the first on the manager's connection.
        session = other.create_session(
            workspace_id=workspace_id, agent_id=AGENT_ID, conversation_id=uuid.uuid4()
        )
        with pytest.raises(SessionNotFoundError) as missing:
            manager.add_turn(uuid.uuid4(), workspace_id=workspace_id, role="user", content="x")
        assert missing.value.code == "PT404"
        hold_at_most(locker)
        with locker.transaction():
            locker.execute(LOCK_SESSION, (session.id,))
            started = time.monotonic()
            with pytest.raises(SessionError) as raised:
                manager.add_turn(session.id, workspace_id=workspace_id, role="user", content="x")
            elapsed = time.monotonic() - started
        assert raised.value.code == "57014"
        assert timeout <= elapsed < timeout + TIMEOUT_MARGIN_SECONDS


def test_a_call_that_waited_for_its_connection_is_bounded_by_the_time_it_has_left(
    managers: Managers, database: Database, registry: AgentRegistry
) -> None:
    """The connection's session timeout is the whole timeout; a call that waited for the
    connection has less left, and must end at its own deadline, not a timeout later."""
    timeout = 2.0
    workspace_id = uuid.uuid4()
    with (
        managers.from_postgres(
            database.dsn, registry=registry, pool_size=1, timeout=timeout, prepare=True
        ) as manager,
        database.connect_as_owner() as first_locker,
        database.connect_as_owner() as second_locker,
        database.connect_as_owner() as observer,
        ThreadPoolExecutor(max_workers=2) as executor,
    ):
        first, second = (
            manager.create_session(
                workspace_id=workspace_id, agent_id=AGENT_ID, conversation_id=uuid.uuid4()
            )
            for _ in range(2)
        )
        for locker, session in ((first_locker, first), (second_locker, second)):
            hold_at_most(locker)
            locker.execute("begin")
            locker.execute(LOCK_SESSION, (session.id,))
        started = time.monotonic()
        holding = executor.submit(
            manager.add_turn, first.id, workspace_id=workspace_id, role="user", content="x"
        )
        wait_for_lock_waiters(observer, 1, running="agent_engine_add_turn")
        waiting_started = time.monotonic()
        waiting = executor.submit(
            manager.add_turn, second.id, workspace_id=workspace_id, role="user", content="y"
        )
        released = threading.Timer(timeout / 2, first_locker.execute, ("commit",))
        released.start()
        try:
            error = waiting.exception(timeout=WAIT_SECONDS)
            waited = time.monotonic() - waiting_started
        finally:
            released.join()
            second_locker.execute("rollback")

        assert holding.result(timeout=WAIT_SECONDS).turn_number == 1
        assert time.monotonic() - started < WAIT_SECONDS
        assert isinstance(error, SessionError)
        assert (error.code, error.retryable) == ("57014", True)
        # Measured from just before the call started: its own clock starts a little later.
        assert timeout - 0.05 <= waited < timeout + TIMEOUT_MARGIN_SECONDS


@pytest.mark.parametrize("prepare", ["yes", 1, None])
def test_prepare_must_be_a_bool(managers: Managers, database: Database, prepare: object) -> None:
    with pytest.raises(ConfigError) as raised:
        managers.from_postgres(database.dsn, prepare=prepare)
    assert raised.value.variable == "prepare"


HAZARDS: list[Parameter] = [
    "it's 100%s off; %% \\' \\\\ '); drop table agent_turns; --",
    ["a,b", '"quoted"', "back\\slash", "{braces}", "NULL", "", " spaced ", "ü", "x\\"],
    [],
    None,
    "",
]
"""Values the prepared path must bind exactly, in a first call (quoted into its message) and
in later ones (sent as text by name): a array's elements holding the array syntax itself."""


@pytest.mark.parametrize("value", HAZARDS, ids=range(len(HAZARDS)))
def test_a_prepared_statement_binds_each_value_exactly_on_its_first_and_later_calls(
    database: Database, value: Parameter
) -> None:
    cast = b"text[]" if isinstance(value, list) else b"text"
    statement = Statement.of(b"select to_jsonb(%s::" + cast + b")")
    session = PreparedSession()
    with psycopg.connect(database.dsn, autocommit=True) as connection:
        answers, messages = [], []
        for _ in range(2):
            call = session.call(statement, [value], 1000, connection.pgconn)
            results = exchange(connection, call.message)
            session.settle(call, results)
            messages.append(call.message)
            answers.append(first_values(results, connection))

    assert isinstance(messages[0], bytes)
    assert isinstance(messages[1], tuple)
    for [answer] in answers:
        assert (None if answer is None else answer.decoded()) == value


@pytest.mark.parametrize("dropping", ["deallocate all", "discard all"])
def test_a_statement_dropped_from_the_session_is_prepared_again_without_failing_the_call(
    dropping: str,
    managers: Managers,
    database: Database,
    registry: AgentRegistry,
    workspace_id: uuid.UUID,
    wire: Wire,
) -> None:
    with traced_manager(managers, database, registry) as manager:
        session = manager.create_session(
            workspace_id=workspace_id, agent_id=AGENT_ID, conversation_id=uuid.uuid4()
        )
        manager.get_session(session.id, workspace_id=workspace_id)
        [connection] = wire.connections
        rows_on(managers, connection, dropping)
        assert prepared_statements(managers, connection) == {}

        assert manager.get_session(session.id, workspace_id=workspace_id) == session
        assert manager.get_session(session.id, workspace_id=workspace_id) == session

        [(statement, executions)] = prepared_statements(managers, connection).values()
        assert "as select to_jsonb(t)" in statement
        assert executions == 2
        # DISCARD ALL also reset the session's timeout: it was set again with the statement.
        [(timeout,)] = rows_on(managers, connection, "show statement_timeout")
        assert timeout != "0"
        wire.stop()
