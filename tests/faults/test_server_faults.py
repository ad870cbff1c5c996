"""Restarts, stops and refused passwords on a private server: nothing lost, typed errors.

- Restart under load: 8 threads add 300 turns each, every one with its idempotency key and
  retried while the error says retryable; the server restarts in the middle. Afterwards
  every key is stored exactly once, the numbers run 1..2400 without a gap, and the totals are
  exact.
- A stopped server is a fast retryable error, and the next call after it starts succeeds.
- A wrong password is a fast, non-retryable error with SQLSTATE 28P01.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from agent_engine import SessionError
from agent_engine.testing import LocalPostgres
from tests.db.conftest import Database
from tests.managers import Managers

T = TypeVar("T")

THREADS = 8
TURNS_PER_THREAD = 300
RETRY_PAUSE_SECONDS = 0.05
GIVE_UP_AFTER_SECONDS = 60.0


def retried(call: Callable[[], T], failures: list[SessionError]) -> T:
    """`call`, repeated while it raises a retryable SessionError (each one is recorded)."""
    deadline = time.monotonic() + GIVE_UP_AFTER_SECONDS
    while True:
        try:
            return call()
        except SessionError as error:
            failures.append(error)
            if not error.retryable or time.monotonic() > deadline:
                raise
            time.sleep(RETRY_PAUSE_SECONDS)


def tokens_of(thread: int, index: int) -> int:
    return (thread * 7 + index) % 50


def test_a_restart_under_load_loses_and_duplicates_no_turn_when_retryable_errors_are_retried(
    managers: Managers, private_server: LocalPostgres, private_database: Database
) -> None:
    workspace_id = uuid.uuid4()
    failures: list[SessionError] = []
    added = 0
    added_lock = threading.Lock()
    restarted = threading.Event()
    with managers.from_postgres(private_database.dsn, pool_size=THREADS, timeout=5) as manager:
        session = manager.create_session(
            workspace_id=workspace_id,
            agent_id="sales-bot",
            conversation_id=uuid.uuid4(),
            initial_mode="greeting",
        )

        def add(thread: int, index: int) -> object:
            return manager.add_turn(
                session.id,
                workspace_id=workspace_id,
                role="user",
                content=f"message {thread}-{index}",
                tokens_used=tokens_of(thread, index),
                idempotency_key=f"wamid.{thread}.{index}",
            )

        def writer(thread: int) -> None:
            nonlocal added
            for index in range(TURNS_PER_THREAD):
                retried(partial(add, thread, index), failures)
                with added_lock:
                    added += 1

        def restarter() -> None:
            while added < THREADS * TURNS_PER_THREAD // 4:
                time.sleep(0.01)
            private_server.restart()
            restarted.set()

        with ThreadPoolExecutor(max_workers=THREADS + 1) as executor:
            restart = executor.submit(restarter)
            writers = [executor.submit(writer, thread) for thread in range(THREADS)]
            for future in [restart, *writers]:
                future.result(timeout=GIVE_UP_AFTER_SECONDS * 2)

        turns = retried(lambda: manager.get_turns(session.id, workspace_id=workspace_id), [])
        total_tokens = manager.get_total_tokens_used(session.id, workspace_id=workspace_id)
        turn_count = manager.get_turn_count(session.id, workspace_id=workspace_id)

    assert restarted.is_set()
    assert failures, "the restart was expected to fail some calls retryably"
    assert all(failure.retryable for failure in failures)
    expected_keys = {
        f"wamid.{thread}.{index}" for thread in range(THREADS) for index in range(TURNS_PER_THREAD)
    }
    keys = [turn.idempotency_key for turn in turns]
    assert len(keys) == len(set(keys)) == THREADS * TURNS_PER_THREAD
    assert set(keys) == expected_keys
    assert [turn.turn_number for turn in turns] == list(range(1, THREADS * TURNS_PER_THREAD + 1))
    assert turn_count == THREADS * TURNS_PER_THREAD
    assert total_tokens == sum(
        tokens_of(thread, index) for thread in range(THREADS) for index in range(TURNS_PER_THREAD)
    )


def test_a_stopped_server_is_a_fast_retryable_error_and_the_first_call_after_its_start_works(
    managers: Managers, private_server: LocalPostgres, private_database: Database
) -> None:
    workspace_id = uuid.uuid4()
    with managers.from_postgres(private_database.dsn, timeout=5) as manager:
        session = manager.create_session(
            workspace_id=workspace_id,
            agent_id="sales-bot",
            conversation_id=uuid.uuid4(),
            initial_mode="greeting",
        )
        private_server.shut_down()
        try:
            started = time.monotonic()
            with pytest.raises(SessionError) as raised:
                manager.get_turn_count(session.id, workspace_id=workspace_id)
            elapsed = time.monotonic() - started
        finally:
            private_server.start_again()

        assert raised.value.retryable is True
        assert elapsed < 1.0
        started = time.monotonic()
        assert manager.get_turn_count(session.id, workspace_id=workspace_id) == 0
        assert time.monotonic() - started < 1.0


@pytest.fixture
def password_role(private_server: LocalPostgres, private_database: Database) -> str:
    """A role that must log in with a password (scram), whatever the server's trust rules."""
    role = f"pw_{uuid.uuid4().hex[:8]}"
    hba = private_server.data_directory / "pg_hba.conf"
    hba.write_text(f"local all {role} scram-sha-256\n" + hba.read_text())
    with psycopg.connect(private_server.dsn, autocommit=True) as admin:
        admin.execute(f"create role {role} login password 'right-password'")
        admin.execute("select pg_catalog.pg_reload_conf()")
    return role


def test_a_wrong_password_fails_at_once_not_retryable_with_28p01(
    managers: Managers, private_database: Database, password_role: str
) -> None:
    dsn = make_conninfo(private_database.dsn, user=password_role, password="wrong-password")
    with managers.from_postgres(dsn, timeout=5) as manager:
        started = time.monotonic()
        with pytest.raises(SessionError) as raised:
            manager.get_turn_count(uuid.uuid4(), workspace_id=uuid.uuid4())
        elapsed = time.monotonic() - started

    assert (raised.value.code, raised.value.retryable) == ("28P01", False)
    assert elapsed < 1.0
    assert "wrong-password" not in str(raised.value)
    assert "wrong-password" not in repr(vars(raised.value.__cause__))
