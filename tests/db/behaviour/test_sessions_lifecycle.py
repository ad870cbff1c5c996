"""Batches of turns, listing a workspace's sessions page by page, and retention, through
both managers on the direct transport."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent_engine import (
    AgentSessionWithState,
    IdempotencyConflictError,
    SessionManager,
    SessionNotFoundError,
)
from tests.db.behaviour.conftest import AGENT_ID, WORKERS, run_together
from tests.db.conftest import Database
from tests.managers import SpyTransport

pytestmark = pytest.mark.db


def new_session(
    manager: SessionManager, workspace_id: uuid.UUID, **fields: Any
) -> AgentSessionWithState:
    return manager.create_session(
        workspace_id=workspace_id, agent_id=AGENT_ID, conversation_id=uuid.uuid4(), **fields
    )


def turn(content: str, **fields: Any) -> dict[str, Any]:
    return {"role": "user", "content": content, **fields}


# add_turns


def test_add_turns_stores_the_batch_numbered_consecutively_and_counts_it_once(
    manager: SessionManager, workspace_id: uuid.UUID
) -> None:
    session = new_session(manager, workspace_id)
    manager.add_turn(session.id, workspace_id=workspace_id, role="user", content="first")

    stored = manager.add_turns(
        session.id,
        [turn("a", tokens_used=2), turn("b", tokens_used=3, metadata={"k": [1]})],
        workspace_id=workspace_id,
    )

    assert [(t.turn_number, t.content) for t in stored] == [(2, "a"), (3, "b")]
    assert stored[1].metadata == {"k": [1]}
    after = manager.get_session(session.id, workspace_id=workspace_id)
    assert (after.turn_count, after.tokens_used) == (3, 5)


def test_add_turns_replays_stored_keys_and_refuses_a_changed_one_storing_nothing(
    manager: SessionManager, workspace_id: uuid.UUID
) -> None:
    session = new_session(manager, workspace_id)
    batch = [turn("a", idempotency_key="m1"), turn("b", idempotency_key="m2")]
    first = manager.add_turns(session.id, batch, workspace_id=workspace_id)

    replayed = manager.add_turns(session.id, batch, workspace_id=workspace_id)
    with pytest.raises(IdempotencyConflictError):
        manager.add_turns(
            session.id,
            [turn("c", idempotency_key="m3"), turn("changed", idempotency_key="m2")],
            workspace_id=workspace_id,
        )

    assert replayed == first
    assert manager.get_turn_count(session.id, workspace_id=workspace_id) == 2


@pytest.mark.parametrize(
    "turns",
    [
        [{"role": "user", "content": "x", "turn_number": 3}],
        [{"role": "user", "content": ""}],
        [{"role": "user", "content": "x", "metadata": [1]}],
        [{"role": "user", "content": "x"}] * 1001,
        {"role": "user", "content": "x"},
    ],
    ids=["explicit number", "empty content", "metadata not an object", "1001 turns", "not a list"],
)
def test_add_turns_refuses_a_bad_batch_before_the_wire(
    spy_manager: SessionManager, spy: SpyTransport, workspace_id: uuid.UUID, turns: Any
) -> None:
    with pytest.raises(ValueError, match="turn"):
        spy_manager.add_turns(uuid.uuid4(), turns, workspace_id=workspace_id)

    assert spy.requests == []


def test_add_turns_on_a_session_of_another_workspace_is_not_found(
    manager: SessionManager, workspace_id: uuid.UUID, other_workspace_id: uuid.UUID
) -> None:
    session = new_session(manager, workspace_id)

    with pytest.raises(SessionNotFoundError):
        manager.add_turns(session.id, [turn("x")], workspace_id=other_workspace_id)

    assert manager.get_turn_count(session.id, workspace_id=workspace_id) == 0


# list_sessions


def test_list_sessions_pages_cover_every_session_once_newest_activity_first(
    plain_manager: SessionManager, workspace_id: uuid.UUID, other_workspace_id: uuid.UUID
) -> None:
    created = [new_session(plain_manager, workspace_id, initial_mode="greeting") for _ in range(5)]
    new_session(plain_manager, other_workspace_id, initial_mode="greeting")

    pages = [plain_manager.list_sessions(workspace_id=workspace_id, limit=2)]
    while pages[-1].next_cursor is not None:
        pages.append(
            plain_manager.list_sessions(
                workspace_id=workspace_id, limit=2, cursor=pages[-1].next_cursor
            )
        )

    listed = [session for page in pages for session in page.sessions]
    assert [len(page.sessions) for page in pages] == [2, 2, 1]
    assert sorted(s.id for s in listed) == sorted(s.id for s in created)
    order = [(s.last_activity_at, s.id) for s in listed]
    assert order == sorted(order, reverse=True)


def test_list_sessions_filters_by_status_and_contact(
    plain_manager: SessionManager, workspace_id: uuid.UUID
) -> None:
    contact = uuid.uuid4()
    mine = new_session(plain_manager, workspace_id, contact_id=contact, initial_mode="greeting")
    closed = new_session(plain_manager, workspace_id, contact_id=contact, initial_mode="greeting")
    plain_manager.close_session(closed.id, closed.version, workspace_id=workspace_id)
    new_session(plain_manager, workspace_id, initial_mode="greeting")

    active = plain_manager.list_sessions(
        workspace_id=workspace_id, contact_id=contact, status="active"
    )

    assert [session.id for session in active.sessions] == [mine.id]
    assert active.next_cursor is None


@pytest.mark.parametrize(
    "fields",
    [{"limit": 0}, {"limit": 1001}, {"cursor": "not-a-cursor"}, {"status": "sleeping"}],
)
def test_list_sessions_refuses_bad_arguments_before_the_wire(
    spy_manager: SessionManager, spy: SpyTransport, workspace_id: uuid.UUID, fields: Any
) -> None:
    with pytest.raises(ValueError, match=next(iter(fields))):
        spy_manager.list_sessions(workspace_id=workspace_id, **fields)

    assert spy.requests == []


# purge_sessions


def test_purge_removes_old_closed_sessions_in_batches_and_keeps_the_rest(
    plain_spy_manager: SessionManager, spy: SpyTransport, workspace_id: uuid.UUID
) -> None:
    manager = plain_spy_manager
    old = [new_session(manager, workspace_id, initial_mode="x") for _ in range(5)]
    for session in old:
        manager.close_session(session.id, session.version, workspace_id=workspace_id)
    active = new_session(manager, workspace_id, initial_mode="x")
    spy.requests.clear()

    removed = manager.purge_sessions(
        older_than=datetime.now(UTC) + timedelta(minutes=1),
        workspace_id=workspace_id,
        batch_size=2,
    )

    assert removed == 5
    assert len(spy.requests) == 3  # 2 + 2 + 1: the short batch ends it
    for session in old:
        with pytest.raises(SessionNotFoundError):
            manager.get_session(session.id, workspace_id=workspace_id)
    assert manager.get_session(active.id, workspace_id=workspace_id) == active


def test_purge_by_age_keeps_recent_sessions(
    plain_manager: SessionManager, workspace_id: uuid.UUID
) -> None:
    session = new_session(plain_manager, workspace_id, initial_mode="x")
    plain_manager.close_session(session.id, session.version, workspace_id=workspace_id)

    removed = plain_manager.purge_sessions(older_than=timedelta(days=90), workspace_id=workspace_id)

    assert removed == 0
    assert plain_manager.get_session(session.id, workspace_id=workspace_id).id == session.id


def test_purge_racing_add_turn_leaves_no_orphan_rows_and_only_not_found_errors(
    plain_manager: SessionManager, database: Database, workspace_id: uuid.UUID
) -> None:
    manager = plain_manager
    sessions = [new_session(manager, workspace_id, initial_mode="x") for _ in range(40)]
    for session in sessions:
        manager.close_session(session.id, session.version, workspace_id=workspace_id)
    cutoff = datetime.now(UTC) + timedelta(minutes=1)  # every session, even one written now

    def work(worker: int) -> int:
        if worker == 0:
            return manager.purge_sessions(
                older_than=cutoff, workspace_id=workspace_id, batch_size=3
            )
        for session in sessions[worker :: WORKERS - 1] * 3:
            # Purged first is the one error a writer may see; any other fails the test.
            with contextlib.suppress(SessionNotFoundError):
                manager.add_turn(session.id, workspace_id=workspace_id, role="user", content="late")
        return 0

    purged = sum(run_together(work, WORKERS))
    # Sessions an add_turn held were skipped by that batch; a second purge takes them.
    purged += manager.purge_sessions(older_than=cutoff, workspace_id=workspace_id)

    assert purged == len(sessions)
    ids = [session.id for session in sessions]
    left = {
        "agent_sessions": "select count(*) from public.agent_sessions where id = any(%s)",
        "session_state": "select count(*) from public.session_state where session_id = any(%s)",
        "agent_turns": "select count(*) from public.agent_turns where session_id = any(%s)",
    }
    with database.connect_as_owner() as owner:
        counts = {table: owner.execute(query, (ids,)).fetchall() for table, query in left.items()}
    assert counts == {table: [{"count": 0}] for table in left}


@pytest.mark.parametrize(
    "fields",
    [
        {"older_than": timedelta(0)},
        {"older_than": datetime(2026, 1, 1)},
        {"older_than": timedelta(days=1), "statuses": ()},
        {"older_than": timedelta(days=1), "batch_size": 0},
    ],
    ids=["no duration", "naive datetime", "no status", "empty batch"],
)
def test_purge_refuses_bad_arguments_before_the_wire(
    plain_spy_manager: SessionManager, spy: SpyTransport, fields: Any
) -> None:
    with pytest.raises(ValueError, match=list(fields)[-1]):
        plain_spy_manager.purge_sessions(**fields)

    assert spy.requests == []
