"""Turns through the public API: numbering, explicit numbers, idempotency, totals, pages."""

from __future__ import annotations

import uuid

import pytest

from agent_engine import (
    AgentSessionWithState,
    AgentTurn,
    IdempotencyConflictError,
    SessionError,
    SessionManager,
    ToolCallRecord,
    TurnRole,
)

pytestmark = pytest.mark.db

TOKENS = [12, 340, 0, 57, 8, 1000, 3]


def add_turns(
    manager: SessionManager, session_id: uuid.UUID, workspace_id: uuid.UUID, count: int
) -> list[AgentTurn]:
    return [
        manager.add_turn(
            session_id,
            workspace_id=workspace_id,
            role="user" if index % 2 == 0 else "assistant",
            content=f"message {index}",
            tokens_used=TOKENS[index % len(TOKENS)],
        )
        for index in range(count)
    ]


def test_add_turn_without_number_gets_1_2_3_and_updates_the_totals(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    turns = add_turns(manager, active_session.id, workspace_id, 3)

    assert [turn.turn_number for turn in turns] == [1, 2, 3]
    assert manager.get_turn_count(active_session.id, workspace_id=workspace_id) == 3
    assert manager.get_total_tokens_used(active_session.id, workspace_id=workspace_id) == sum(
        TOKENS[:3]
    )
    session = manager.get_session(active_session.id, workspace_id=workspace_id)
    assert (session.turn_count, session.tokens_used) == (3, sum(TOKENS[:3]))
    assert session.last_activity_at > active_session.last_activity_at


def test_add_turn_stores_every_field_as_given(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    tool = ToolCallRecord(name="lookup_stock", input={"sku": "A1"}, result={"in_stock": 3})

    turn = manager.add_turn(
        active_session.id,
        workspace_id=workspace_id,
        role=TurnRole.ASSISTANT,
        content="  We have size 42.\n",
        intent_detected="pricing",
        confidence=87.5,
        tools_called=[tool, {"name": "log"}],
        tokens_used=321,
        idempotency_key="wamid.1",
    )

    assert (turn.session_id, turn.workspace_id) == (active_session.id, workspace_id)
    assert (turn.turn_number, turn.role, turn.content) == (
        1,
        TurnRole.ASSISTANT,
        "  We have size 42.\n",
    )
    assert (turn.intent_detected, turn.confidence, turn.tokens_used) == ("pricing", 87.5, 321)
    assert turn.tools_called == [tool, ToolCallRecord(name="log")]
    assert turn.idempotency_key == "wamid.1"
    assert manager.get_turns(active_session.id, workspace_id=workspace_id) == [turn]


def test_add_turn_with_explicit_numbers_stores_them_and_numbering_continues_after_the_highest(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    fifth = manager.add_turn(
        active_session.id, workspace_id=workspace_id, role="user", content="a", turn_number=5
    )
    second = manager.add_turn(
        active_session.id, workspace_id=workspace_id, role="user", content="b", turn_number=2
    )
    next_turn = manager.add_turn(
        active_session.id, workspace_id=workspace_id, role="assistant", content="c"
    )

    assert (fifth.turn_number, second.turn_number, next_turn.turn_number) == (5, 2, 6)
    stored = manager.get_turns(active_session.id, workspace_id=workspace_id)
    assert [turn.turn_number for turn in stored] == [2, 5, 6]
    assert manager.get_turn_count(active_session.id, workspace_id=workspace_id) == 3


def test_add_turn_with_a_taken_number_raises_23505_and_leaves_the_totals_unchanged(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    first = manager.add_turn(
        active_session.id, workspace_id=workspace_id, role="user", content="hi", tokens_used=5
    )

    with pytest.raises(SessionError) as raised:
        manager.add_turn(
            active_session.id,
            workspace_id=workspace_id,
            role="assistant",
            content="hello",
            turn_number=1,
            tokens_used=100,
        )

    assert raised.value.code == "23505"
    assert raised.value.retryable is False
    assert (raised.value.session_id, raised.value.workspace_id) == (
        active_session.id,
        workspace_id,
    )
    assert manager.get_turn_count(active_session.id, workspace_id=workspace_id) == 1
    assert manager.get_total_tokens_used(active_session.id, workspace_id=workspace_id) == 5
    assert manager.get_turns(active_session.id, workspace_id=workspace_id) == [first]


def test_add_turn_twice_with_the_same_idempotency_key_stores_and_counts_it_once(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    first = manager.add_turn(
        active_session.id,
        workspace_id=workspace_id,
        role="user",
        content="I want shoes",
        tokens_used=12,
        idempotency_key="wamid.HBgM",
    )

    redelivered = manager.add_turn(
        active_session.id,
        workspace_id=workspace_id,
        role="user",
        content="I want shoes",
        tokens_used=12,
        idempotency_key="wamid.HBgM",
    )

    assert redelivered == first
    assert manager.get_turns(active_session.id, workspace_id=workspace_id) == [first]
    assert manager.get_turn_count(active_session.id, workspace_id=workspace_id) == 1
    assert manager.get_total_tokens_used(active_session.id, workspace_id=workspace_id) == 12


def test_add_turn_reusing_a_key_for_a_different_turn_raises_idempotency_conflict(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    first = manager.add_turn(
        active_session.id,
        workspace_id=workspace_id,
        role="user",
        content="first",
        tokens_used=3,
        idempotency_key="key-1",
    )

    with pytest.raises(IdempotencyConflictError) as raised:
        manager.add_turn(
            active_session.id,
            workspace_id=workspace_id,
            role="user",
            content="a second message that reused the key",
            tokens_used=3,
            idempotency_key="key-1",
        )

    error = raised.value
    assert (error.code, error.retryable, error.stored_turn_number) == ("PT409", False, 1)
    assert (error.session_id, error.workspace_id, error.idempotency_key) == (
        active_session.id,
        workspace_id,
        "key-1",
    )
    assert manager.get_turns(active_session.id, workspace_id=workspace_id) == [first]
    assert manager.get_total_tokens_used(active_session.id, workspace_id=workspace_id) == 3


def test_add_turn_keys_differing_only_by_surrounding_space_are_two_keys(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    one = manager.add_turn(
        active_session.id, workspace_id=workspace_id, role="user", content="a", idempotency_key="k"
    )
    two = manager.add_turn(
        active_session.id, workspace_id=workspace_id, role="user", content="b", idempotency_key=" k"
    )

    assert (one.idempotency_key, two.idempotency_key) == ("k", " k")
    assert (one.turn_number, two.turn_number) == (1, 2)


def test_different_idempotency_keys_store_different_turns(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    one = manager.add_turn(
        active_session.id, workspace_id=workspace_id, role="user", content="a", idempotency_key="1"
    )
    two = manager.add_turn(
        active_session.id, workspace_id=workspace_id, role="user", content="a", idempotency_key="2"
    )

    assert one.id != two.id
    assert (one.turn_number, two.turn_number) == (1, 2)


def test_totals_equal_the_sums_of_the_stored_turns(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    add_turns(manager, active_session.id, workspace_id, 7)

    turns = manager.get_turns(active_session.id, workspace_id=workspace_id)

    assert manager.get_turn_count(active_session.id, workspace_id=workspace_id) == len(turns) == 7
    assert manager.get_total_tokens_used(active_session.id, workspace_id=workspace_id) == sum(
        turn.tokens_used for turn in turns
    )
    assert sum(turn.tokens_used for turn in turns) == sum(TOKENS)


def test_a_new_session_has_no_turns_and_zero_totals(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    assert manager.get_turns(active_session.id, workspace_id=workspace_id) == []
    assert manager.get_turn_count(active_session.id, workspace_id=workspace_id) == 0
    assert manager.get_total_tokens_used(active_session.id, workspace_id=workspace_id) == 0


def test_get_turns_returns_the_turns_ordered_by_number(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    for number in (3, 1, 2):
        manager.add_turn(
            active_session.id,
            workspace_id=workspace_id,
            role="user",
            content=f"n{number}",
            turn_number=number,
        )

    turns = manager.get_turns(active_session.id, workspace_id=workspace_id)

    assert [(turn.turn_number, turn.content) for turn in turns] == [
        (1, "n1"),
        (2, "n2"),
        (3, "n3"),
    ]


def test_get_turns_with_limit_returns_the_first_turns(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    added = add_turns(manager, active_session.id, workspace_id, 7)

    assert manager.get_turns(active_session.id, workspace_id=workspace_id, limit=3) == added[:3]
    assert manager.get_turns(active_session.id, workspace_id=workspace_id, limit=50) == added


def test_get_turns_after_turn_returns_only_the_later_turns(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    added = add_turns(manager, active_session.id, workspace_id, 7)

    assert (
        manager.get_turns(active_session.id, workspace_id=workspace_id, after_turn=4) == (added[4:])
    )
    assert (
        manager.get_turns(active_session.id, workspace_id=workspace_id, after_turn=2, limit=2)
        == added[2:4]
    )
    assert manager.get_turns(active_session.id, workspace_id=workspace_id, after_turn=7) == []


def test_walking_all_pages_of_get_turns_returns_every_turn_once_in_order(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    added = add_turns(manager, active_session.id, workspace_id, 11)
    walked: list[AgentTurn] = []
    pages: list[int] = []
    after: int | None = None

    while True:
        page = manager.get_turns(
            active_session.id, workspace_id=workspace_id, limit=4, after_turn=after
        )
        if not page:
            break
        pages.append(len(page))
        walked.extend(page)
        after = page[-1].turn_number

    assert walked == added
    assert pages == [4, 4, 3]
