"""AsyncSessionManager in its own event loop: concurrent tasks, a loop that never blocks,
and cancellation that leaves the pool whole.

The shared behaviour suite already runs every scenario against the async manager (driven
from test threads); these tests are native asyncio code, as an app writes it.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator

import pytest
from anyio.from_thread import BlockingPortal
from psycopg.conninfo import make_conninfo

from agent_engine import AgentTurn, AsyncSessionManager, SessionError
from tests.db.behaviour.conftest import (
    CALLS_PER_WORKER,
    WAIT_SECONDS,
    WORKERS,
    wait_for_lock_waiters,
)
from tests.db.conftest import Database, backends_of
from tests.managers import LoopTicks

pytestmark = [pytest.mark.db, pytest.mark.anyio]

LOCK_SESSION = "select 1 from public.agent_sessions where id = %s for update"


@pytest.fixture
async def manager(database: Database) -> AsyncIterator[AsyncSessionManager]:
    async with AsyncSessionManager.from_postgres(database.dsn, pool_size=WORKERS) as manager:
        yield manager


async def _new_session(manager: AsyncSessionManager, workspace_id: uuid.UUID) -> uuid.UUID:
    session = await manager.create_session(
        workspace_id=workspace_id,
        agent_id="sales",
        conversation_id=uuid.uuid4(),
        initial_mode="greeting",
    )
    return session.id


async def test_8_tasks_x_50_add_turn_on_one_session_store_every_turn_once_numbered_1_to_400(
    manager: AsyncSessionManager, workspace_id: uuid.UUID
) -> None:
    session_id = await _new_session(manager, workspace_id)

    async def worker(index: int) -> list[AgentTurn]:
        return [
            await manager.add_turn(
                session_id,
                workspace_id=workspace_id,
                role="user",
                content=f"{index}-{call}",
                tokens_used=1,
                idempotency_key=f"message-{index}-{call}",
            )
            for call in range(CALLS_PER_WORKER)
        ]

    returned = await asyncio.gather(*(worker(index) for index in range(WORKERS)))

    total = WORKERS * CALLS_PER_WORKER
    stored = await manager.get_turns(session_id, workspace_id=workspace_id)
    assert [turn.turn_number for turn in stored] == list(range(1, total + 1))
    assert sorted(turn.content for turn in stored) == sorted(
        f"{index}-{call}" for index in range(WORKERS) for call in range(CALLS_PER_WORKER)
    )
    for index, turns in enumerate(returned):
        numbers = [turn.turn_number for turn in turns]
        assert numbers == sorted(numbers), f"task {index}'s turns out of call order"
    session = await manager.get_session(session_id, workspace_id=workspace_id)
    assert (session.turn_count, session.tokens_used) == (total, total)


async def test_a_call_waiting_on_a_locked_row_leaves_the_event_loop_free(
    manager: AsyncSessionManager, database: Database, workspace_id: uuid.UUID
) -> None:
    session_id = await _new_session(manager, workspace_id)

    with database.connect_as_owner() as locker:
        with locker.transaction():
            locker.execute(LOCK_SESSION, (session_id,))
            blocked = asyncio.create_task(
                manager.add_turn(session_id, workspace_id=workspace_id, role="user", content="x")
            )
            async with LoopTicks(0.01) as ticks:
                await asyncio.sleep(0.3)
            assert not blocked.done()
        turn = await asyncio.wait_for(blocked, WAIT_SECONDS)

    assert turn.turn_number == 1
    assert ticks.count >= 10  # about 30 in 0.3 s: the loop ran while the call waited


async def test_cancelling_a_call_blocked_on_a_lock_gives_its_connection_back_and_writes_nothing(
    database: Database, workspace_id: uuid.UUID
) -> None:
    async with AsyncSessionManager.from_postgres(database.dsn, pool_size=1) as manager:
        session_id = await _new_session(manager, workspace_id)
        with database.connect_as_owner() as locker, locker.transaction():
            locker.execute(LOCK_SESSION, (session_id,))
            blocked = asyncio.create_task(
                manager.add_turn(
                    session_id, workspace_id=workspace_id, role="user", content="cancelled"
                )
            )
            await asyncio.sleep(0.2)
            blocked.cancel()
            with pytest.raises(asyncio.CancelledError):
                await blocked

        # The only connection came back (or was replaced): the next call is served at once.
        turn = await asyncio.wait_for(
            manager.add_turn(session_id, workspace_id=workspace_id, role="user", content="next"),
            WAIT_SECONDS,
        )
        turns = await manager.get_turns(session_id, workspace_id=workspace_id)

    assert turn.turn_number == 1
    assert [stored.content for stored in turns] == ["next"]


async def test_cancelling_a_call_blocked_on_a_lock_cancels_its_statement_and_reuses_the_connection(
    database: Database, workspace_id: uuid.UUID
) -> None:
    application_name = f"agent_engine_cancel_{uuid.uuid4().hex[:12]}"
    dsn = make_conninfo(database.dsn, application_name=application_name)
    async with AsyncSessionManager.from_postgres(dsn, pool_size=1) as manager:
        session_id = await _new_session(manager, workspace_id)
        with (
            database.connect_as_owner() as observer,
            database.connect_as_owner() as locker,
            locker.transaction(),
        ):
            locker.execute(LOCK_SESSION, (session_id,))
            blocked = asyncio.create_task(
                manager.add_turn(
                    session_id, workspace_id=workspace_id, role="user", content="cancelled"
                )
            )
            [backend] = await asyncio.to_thread(wait_for_lock_waiters, observer)
            blocked.cancel()
            with pytest.raises(asyncio.CancelledError):
                await blocked

            # The lock is still held: only a cancellation on the server ended the wait,
            # before the cancelled call returned, and its answer was read to the end.
            state = observer.execute(
                "select state from pg_catalog.pg_stat_activity where pid = %s", (backend,)
            ).fetchone()
            assert state == {"state": "idle"}

        turn = await asyncio.wait_for(
            manager.add_turn(session_id, workspace_id=workspace_id, role="user", content="next"),
            WAIT_SECONDS,
        )
        served_by = backends_of(database, application_name)

    assert turn.turn_number == 1
    assert served_by == [backend]  # given back to the pool and reused, not replaced


async def test_cancelling_a_task_queued_for_a_connection_leaves_the_queue(
    database: Database, workspace_id: uuid.UUID
) -> None:
    async with AsyncSessionManager.from_postgres(database.dsn, pool_size=1) as manager:
        session_id = await _new_session(manager, workspace_id)
        with database.connect_as_owner() as locker:
            with locker.transaction():
                locker.execute(LOCK_SESSION, (session_id,))
                holder = asyncio.create_task(
                    manager.add_turn(
                        session_id, workspace_id=workspace_id, role="user", content="a"
                    )
                )
                await asyncio.sleep(0.2)
                queued = asyncio.create_task(
                    manager.get_turn_count(session_id, workspace_id=workspace_id)
                )
                await asyncio.sleep(0.05)
                queued.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await queued
            await asyncio.wait_for(holder, WAIT_SECONDS)

        # Had the cancelled waiter stayed queued, the connection would go to it and be lost.
        count = await asyncio.wait_for(
            manager.get_turn_count(session_id, workspace_id=workspace_id), WAIT_SECONDS
        )

    assert count == 1


async def test_a_turn_larger_than_the_socket_buffers_is_sent_and_read_back_whole(
    manager: AsyncSessionManager, workspace_id: uuid.UUID
) -> None:
    # Megabytes each way: the message leaves in several writes (the wait for a writable
    # socket) and the answer arrives in several reads.
    content = "".join(f"{index:07d} " for index in range(400_000))
    session_id = await _new_session(manager, workspace_id)

    turn = await asyncio.wait_for(
        manager.add_turn(session_id, workspace_id=workspace_id, role="user", content=content),
        WAIT_SECONDS,
    )
    [stored] = await manager.get_turns(session_id, workspace_id=workspace_id)

    assert turn.content == stored.content == content


async def test_a_manager_called_from_another_running_loop_refuses_without_sending(
    database: Database, portal: BlockingPortal, workspace_id: uuid.UUID
) -> None:
    manager = AsyncSessionManager.from_postgres(database.dsn, pool_size=1)
    session_id = portal.call(_new_session, manager, workspace_id)  # its loop, still running

    with pytest.raises(SessionError) as raised:
        await manager.get_turn_count(session_id, workspace_id=workspace_id)

    assert raised.value.retryable is False
    assert "another event loop" in str(raised.value)
    assert raised.value.session_id == session_id
    at_home = functools.partial(manager.get_turn_count, session_id, workspace_id=workspace_id)
    assert portal.call(at_home) == 0
    portal.call(manager.aclose)


def test_a_manager_moves_to_a_new_loop_once_its_first_loop_is_closed(
    database: Database, workspace_id: uuid.UUID
) -> None:
    manager = AsyncSessionManager.from_postgres(database.dsn, pool_size=1)

    async def first() -> uuid.UUID:
        return await _new_session(manager, workspace_id)

    async def second(session_id: uuid.UUID) -> int:
        async with manager:
            await manager.add_turn(session_id, workspace_id=workspace_id, role="user", content="x")
            return await manager.get_turn_count(session_id, workspace_id=workspace_id)

    session_id = asyncio.run(first())  # as a script or a test with its own loop does

    assert asyncio.run(second(session_id)) == 1
