"""Reading the last turns, undoing turns, metadata, and deleting a session or a contact's data,
through both managers on the direct transport."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from agent_engine import (
    AgentSessionWithState,
    IdempotencyConflictError,
    SessionManager,
    SessionNotFoundError,
)
from tests.db.behaviour.conftest import AGENT_ID, WORKERS, run_together
from tests.managers import SpyTransport

pytestmark = pytest.mark.db

METADATA: dict[str, Any] = {
    "message": {"role": "user", "content": [{"type": "text", "text": "Olá"}]},
    "channel": "whatsapp",
    "ids": [1, 2.5, None, True],
}


def new_session(
    manager: SessionManager, workspace_id: uuid.UUID, contact_id: uuid.UUID | None = None
) -> AgentSessionWithState:
    return manager.create_session(
        workspace_id=workspace_id,
        agent_id=AGENT_ID,
        conversation_id=uuid.uuid4(),
        contact_id=contact_id,
    )


def add_turns(manager: SessionManager, session: AgentSessionWithState, count: int) -> None:
    for number in range(1, count + 1):
        manager.add_turn(
            session.id,
            workspace_id=session.workspace_id,
            role="user",
            content=f"message {number}",
            tokens_used=number,
        )


# metadata


def test_add_turn_stores_and_returns_metadata_exactly(
    manager: SessionManager, workspace_id: uuid.UUID
) -> None:
    session = new_session(manager, workspace_id)

    turn = manager.add_turn(
        session.id, workspace_id=workspace_id, role="user", content="Olá", metadata=METADATA
    )

    assert turn.metadata == METADATA
    [stored] = manager.get_turns(session.id, workspace_id=workspace_id)
    assert stored.metadata == METADATA
    assert (
        manager.add_turn(session.id, workspace_id=workspace_id, role="user", content="x").metadata
        == {}
    )


def test_the_same_key_with_other_metadata_is_an_idempotency_conflict(
    manager: SessionManager, workspace_id: uuid.UUID
) -> None:
    session = new_session(manager, workspace_id)
    fields: dict[str, Any] = {"role": "user", "content": "hi", "idempotency_key": "wamid.1"}
    manager.add_turn(session.id, workspace_id=workspace_id, metadata={"a": 1}, **fields)

    replayed = manager.add_turn(session.id, workspace_id=workspace_id, metadata={"a": 1}, **fields)
    with pytest.raises(IdempotencyConflictError) as raised:
        manager.add_turn(session.id, workspace_id=workspace_id, metadata={"a": 2}, **fields)

    assert replayed.turn_number == raised.value.stored_turn_number == 1
    assert manager.get_turn_count(session.id, workspace_id=workspace_id) == 1


@pytest.mark.parametrize("metadata", [[1, 2], "text", {"x": float("nan")}, {1: "a"}])
def test_metadata_that_is_not_a_json_object_is_refused_before_the_wire(
    spy_manager: SessionManager, spy: SpyTransport, workspace_id: uuid.UUID, metadata: Any
) -> None:
    with pytest.raises(ValueError, match="metadata"):
        spy_manager.add_turn(
            uuid.uuid4(), workspace_id=workspace_id, role="user", content="x", metadata=metadata
        )

    assert spy.requests == []


# get_recent_turns


def test_get_recent_turns_returns_the_newest_oldest_first_and_pages_backwards(
    manager: SessionManager, workspace_id: uuid.UUID
) -> None:
    session = new_session(manager, workspace_id)
    add_turns(manager, session, 7)

    last = manager.get_recent_turns(session.id, workspace_id=workspace_id, limit=3)
    before = manager.get_recent_turns(
        session.id, workspace_id=workspace_id, limit=3, before_turn=last[0].turn_number
    )
    first = manager.get_recent_turns(
        session.id, workspace_id=workspace_id, limit=3, before_turn=before[0].turn_number
    )

    assert [turn.turn_number for turn in last] == [5, 6, 7]
    assert [turn.turn_number for turn in before] == [2, 3, 4]
    assert [turn.turn_number for turn in first] == [1]
    assert manager.get_recent_turns(session.id, workspace_id=workspace_id, limit=1000) == (
        manager.get_turns(session.id, workspace_id=workspace_id)
    )


def test_get_recent_turns_is_one_round_trip(
    spy_manager: SessionManager, spy: SpyTransport, workspace_id: uuid.UUID
) -> None:
    session = new_session(spy_manager, workspace_id)
    spy.requests.clear()

    assert spy_manager.get_recent_turns(session.id, workspace_id=workspace_id, limit=10) == []
    assert len(spy.requests) == 1


@pytest.mark.parametrize("limit", [0, 1001, True, 2.0, None])
def test_get_recent_turns_refuses_a_bad_limit_before_the_wire(
    spy_manager: SessionManager, spy: SpyTransport, workspace_id: uuid.UUID, limit: Any
) -> None:
    with pytest.raises(ValueError, match="limit"):
        spy_manager.get_recent_turns(uuid.uuid4(), workspace_id=workspace_id, limit=limit)

    assert spy.requests == []


# pop_turn, clear_turns


def test_pop_turn_removes_the_newest_turn_and_its_tokens_and_the_number_is_reused(
    manager: SessionManager, workspace_id: uuid.UUID
) -> None:
    session = new_session(manager, workspace_id)
    add_turns(manager, session, 3)

    popped = manager.pop_turn(session.id, workspace_id=workspace_id)
    after = manager.get_session(session.id, workspace_id=workspace_id)
    again = manager.add_turn(session.id, workspace_id=workspace_id, role="assistant", content="new")

    assert popped is not None
    assert (popped.turn_number, popped.content) == (3, "message 3")
    assert (after.turn_count, after.tokens_used) == (2, 3)
    assert again.turn_number == 3


def test_pop_turn_on_a_session_without_turns_returns_none(
    manager: SessionManager, workspace_id: uuid.UUID
) -> None:
    session = new_session(manager, workspace_id)

    assert manager.pop_turn(session.id, workspace_id=workspace_id) is None


def test_clear_turns_removes_every_turn_and_zeroes_the_totals(
    manager: SessionManager, workspace_id: uuid.UUID
) -> None:
    session = new_session(manager, workspace_id)
    add_turns(manager, session, 4)

    assert manager.clear_turns(session.id, workspace_id=workspace_id) == 4
    after = manager.get_session(session.id, workspace_id=workspace_id)
    assert (after.turn_count, after.tokens_used) == (0, 0)
    assert manager.get_turns(session.id, workspace_id=workspace_id) == []
    assert manager.clear_turns(session.id, workspace_id=workspace_id) == 0


def test_pop_turn_racing_add_turn_leaves_no_gap_and_no_duplicate_number(
    wide_manager: SessionManager, workspace_id: uuid.UUID
) -> None:
    session = new_session(wide_manager, workspace_id)
    add_turns(wide_manager, session, 20)

    def work(worker: int) -> None:
        for call in range(20):
            if worker % 2:
                wide_manager.pop_turn(session.id, workspace_id=workspace_id)
            else:
                wide_manager.add_turn(
                    session.id, workspace_id=workspace_id, role="user", content=f"{worker}-{call}"
                )

    run_together(work, WORKERS)

    turns = wide_manager.get_turns(session.id, workspace_id=workspace_id)
    after = wide_manager.get_session(session.id, workspace_id=workspace_id)
    assert [turn.turn_number for turn in turns] == list(range(1, len(turns) + 1))
    assert after.turn_count == len(turns)
    assert after.tokens_used == sum(turn.tokens_used for turn in turns)


def test_clear_turns_racing_add_turn_leaves_numbers_from_one_and_matching_totals(
    wide_manager: SessionManager, workspace_id: uuid.UUID
) -> None:
    session = new_session(wide_manager, workspace_id)
    add_turns(wide_manager, session, 5)

    def work(worker: int) -> int:
        cleared = 0
        for call in range(20):
            if worker % 4 == 3:
                cleared += wide_manager.clear_turns(session.id, workspace_id=workspace_id)
            else:
                wide_manager.add_turn(
                    session.id,
                    workspace_id=workspace_id,
                    role="user",
                    content=f"{worker}-{call}",
                    tokens_used=1,
                )
        return cleared

    cleared = sum(run_together(work, WORKERS))

    turns = wide_manager.get_turns(session.id, workspace_id=workspace_id)
    after = wide_manager.get_session(session.id, workspace_id=workspace_id)
    assert [turn.turn_number for turn in turns] == list(range(1, len(turns) + 1))
    assert after.turn_count == len(turns)
    assert after.tokens_used == len(turns)
    # Every turn added is either still there or was counted by exactly one clear.
    assert cleared + len(turns) == 5 + 6 * 20


# delete_session, delete_contact_data


def test_delete_session_removes_it_with_its_state_and_turns(
    manager: SessionManager, workspace_id: uuid.UUID
) -> None:
    session = new_session(manager, workspace_id)
    add_turns(manager, session, 2)

    manager.delete_session(session.id, workspace_id=workspace_id)

    with pytest.raises(SessionNotFoundError):
        manager.get_session(session.id, workspace_id=workspace_id)
    with pytest.raises(SessionNotFoundError):
        manager.get_turns(session.id, workspace_id=workspace_id)


def test_delete_session_of_another_workspace_raises_not_found_and_deletes_nothing(
    manager: SessionManager, workspace_id: uuid.UUID, other_workspace_id: uuid.UUID
) -> None:
    session = new_session(manager, workspace_id)

    with pytest.raises(SessionNotFoundError):
        manager.delete_session(session.id, workspace_id=other_workspace_id)

    assert manager.get_session(session.id, workspace_id=workspace_id) == session


def test_delete_contact_data_removes_every_session_of_the_contact_in_any_status(
    manager: SessionManager, workspace_id: uuid.UUID, other_workspace_id: uuid.UUID
) -> None:
    contact, other_contact = uuid.uuid4(), uuid.uuid4()
    active = new_session(manager, workspace_id, contact)
    closed = new_session(manager, workspace_id, contact)
    manager.close_session(closed.id, closed.version, workspace_id=workspace_id)
    add_turns(manager, active, 2)
    kept = new_session(manager, workspace_id, other_contact)
    elsewhere = new_session(manager, other_workspace_id, contact)

    assert manager.delete_contact_data(contact, workspace_id=workspace_id) == 2
    assert manager.delete_contact_data(contact, workspace_id=workspace_id) == 0

    for gone in (active, closed):
        with pytest.raises(SessionNotFoundError):
            manager.get_session(gone.id, workspace_id=workspace_id)
    assert manager.get_session(kept.id, workspace_id=workspace_id) == kept
    assert manager.get_session(elsewhere.id, workspace_id=other_workspace_id) == elsewhere


def test_get_turns_with_before_turn_pages_backwards_like_get_recent_turns(
    manager: SessionManager, workspace_id: uuid.UUID
) -> None:
    session = new_session(manager, workspace_id)
    add_turns(manager, session, 7)

    page = manager.get_turns(session.id, workspace_id=workspace_id, limit=3, before_turn=5)

    assert [turn.turn_number for turn in page] == [2, 3, 4]
    assert page == manager.get_recent_turns(
        session.id, workspace_id=workspace_id, limit=3, before_turn=5
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"before_turn": 5}, "needs a limit"),
        ({"before_turn": 5, "after_turn": 1, "limit": 3}, "not both"),
        ({"before_turn": 0, "limit": 3}, "before_turn"),
    ],
)
def test_get_turns_refuses_a_backwards_page_it_cannot_read_before_the_wire(
    spy_manager: SessionManager,
    spy: SpyTransport,
    workspace_id: uuid.UUID,
    fields: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        spy_manager.get_turns(uuid.uuid4(), workspace_id=workspace_id, **fields)

    assert spy.requests == []
