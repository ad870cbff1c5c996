"""Values at the documented limits are accepted and stored exactly; nothing past them bricks a
session."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from agent_engine import AgentSessionWithState, SessionManager
from agent_engine._models import (
    IDENTIFIER_MAX_LENGTH,
    JSON_MAX_DEPTH,
    JSON_SAFE_INTEGER,
    MAX_EXPLICIT_TURN_NUMBER,
    POSTGRES_INTEGER_MAX,
)
from tests.db.behaviour.conftest import AGENT_ID

pytestmark = pytest.mark.db

WIDE = "\U0001f600" * IDENTIFIER_MAX_LENGTH
"""The longest identifier in its widest UTF-8 form: 1,020 bytes."""


def test_the_highest_explicit_turn_number_leaves_automatic_numbering_working(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    chosen = manager.add_turn(
        active_session.id,
        workspace_id=workspace_id,
        role="user",
        content="imported",
        turn_number=MAX_EXPLICIT_TURN_NUMBER,
    )
    following = manager.add_turn(
        active_session.id, workspace_id=workspace_id, role="assistant", content="next"
    )

    assert (chosen.turn_number, following.turn_number) == (
        MAX_EXPLICIT_TURN_NUMBER,
        MAX_EXPLICIT_TURN_NUMBER + 1,
    )


def test_identifiers_of_the_maximum_length_in_their_widest_form_are_stored_exactly(
    plain_manager: SessionManager, workspace_id: uuid.UUID
) -> None:
    session = plain_manager.create_session(
        workspace_id=workspace_id,
        agent_id=WIDE,
        conversation_id=uuid.uuid4(),
        initial_mode=WIDE,
    )
    turn = plain_manager.add_turn(
        session.id,
        workspace_id=workspace_id,
        role="user",
        content="hi",
        intent_detected=WIDE,
        idempotency_key=WIDE,
        tools_called=[{"name": WIDE}],
    )
    plain_manager.add_intent_seen(session.id, WIDE, workspace_id=workspace_id)
    state = plain_manager.add_template_sent(session.id, WIDE, workspace_id=workspace_id)

    assert (session.agent_id, session.current_mode) == (WIDE, WIDE)
    assert (turn.intent_detected, turn.idempotency_key, turn.tools_called[0].name) == (
        WIDE,
        WIDE,
        WIDE,
    )
    assert (state.intents_seen[0].intent, state.templates_sent) == (WIDE, [WIDE])


def test_json_at_its_limits_is_stored_exactly(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    deep: dict[str, object] = {"leaf": [JSON_SAFE_INTEGER, -JSON_SAFE_INTEGER, 0.1, -0.5, 5e-324]}
    for _ in range(JSON_MAX_DEPTH - 3):  # + the leaf list, its object and `data`: the maximum
        deep = {"a": deep}
    data = {"deep": deep, "text": " spaced\ttext é 😀 ", "empty": {}, "none": None}

    state = manager.update_captured_data(active_session.id, data, workspace_id=workspace_id)

    assert state.captured_data == data
    assert manager.get_state(active_session.id, workspace_id=workspace_id).captured_data == data


def test_tokens_and_version_at_the_top_of_their_columns_are_accepted(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    turn = manager.add_turn(
        active_session.id,
        workspace_id=workspace_id,
        role="user",
        content="costly",
        tokens_used=POSTGRES_INTEGER_MAX,
    )

    assert turn.tokens_used == POSTGRES_INTEGER_MAX
    assert (
        manager.get_total_tokens_used(active_session.id, workspace_id=workspace_id)
        == POSTGRES_INTEGER_MAX
    )


def test_templates_given_whole_are_stored_once_each_in_first_given_order(
    plain_manager: SessionManager, workspace_id: uuid.UUID
) -> None:
    session = plain_manager.create_session(
        workspace_id=workspace_id,
        agent_id=AGENT_ID,
        conversation_id=uuid.uuid4(),
        initial_mode="greeting",
        initial_state={"templates_sent": ["promo", "welcome", "promo"]},
    )
    replaced = plain_manager.update_state(
        session.id, workspace_id=workspace_id, templates_sent=["b", "a", "b", "a"]
    )
    after_append = plain_manager.add_template_sent(session.id, "a", workspace_id=workspace_id)

    assert session.state.templates_sent == ["promo", "welcome"]
    assert replaced.templates_sent == ["b", "a"]
    assert after_append.templates_sent == ["b", "a"]


def test_an_aware_activity_time_in_any_offset_is_stored_as_the_same_instant(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    in_sao_paulo = datetime(2026, 11, 29, 9, 30, tzinfo=timezone(timedelta(hours=-3)))

    updated = manager.update_session_with_version(
        active_session.id, 1, workspace_id=workspace_id, last_activity_at=in_sao_paulo
    )

    assert updated.last_activity_at == in_sao_paulo
    assert updated.last_activity_at.utcoffset() is not None
