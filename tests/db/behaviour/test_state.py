"""Session state through the public API: intents, templates, captured data, whole-field replace."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from agent_engine import AgentSessionWithState, IntentRecord, SessionManager

pytestmark = pytest.mark.db


def test_add_intent_seen_numbers_intents_1_to_n_in_the_order_added(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    names = ["greeting", "pricing", "pricing", "shipping"]

    states = [
        manager.add_intent_seen(active_session.id, name, workspace_id=workspace_id)
        for name in names
    ]

    final = states[-1]
    assert [(intent.intent, intent.order) for intent in final.intents_seen] == [
        ("greeting", 1),
        ("pricing", 2),
        ("pricing", 3),
        ("shipping", 4),
    ]
    assert [len(state.intents_seen) for state in states] == [1, 2, 3, 4]
    seen_at = [intent.seen_at for intent in final.intents_seen]
    assert seen_at == sorted(seen_at)
    assert manager.get_state(active_session.id, workspace_id=workspace_id) == final


def test_add_template_sent_twice_records_the_template_once(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    manager.add_template_sent(active_session.id, "welcome", workspace_id=workspace_id)
    manager.add_template_sent(active_session.id, "catalogue", workspace_id=workspace_id)

    again = manager.add_template_sent(active_session.id, "welcome", workspace_id=workspace_id)

    assert again.templates_sent == ["welcome", "catalogue"]
    assert manager.get_state(active_session.id, workspace_id=workspace_id) == again


def test_update_captured_data_merges_top_level_keys_shallowly(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    manager.update_captured_data(
        active_session.id,
        {"name": "Ana", "address": {"city": "Porto", "zip": "4000"}, "size": 41},
        workspace_id=workspace_id,
    )

    merged = manager.update_captured_data(
        active_session.id, {"address": {"city": "Braga"}, "size": 42}, workspace_id=workspace_id
    )

    assert merged.captured_data == {"name": "Ana", "address": {"city": "Braga"}, "size": 42}
    assert manager.get_state(active_session.id, workspace_id=workspace_id) == merged


def test_update_captured_data_with_the_same_data_changes_nothing_else(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    first = manager.update_captured_data(active_session.id, {"size": 42}, workspace_id=workspace_id)
    second = manager.update_captured_data(
        active_session.id, {"size": 42}, workspace_id=workspace_id
    )

    assert second.captured_data == first.captured_data == {"size": 42}


def test_update_state_replaces_the_given_fields_and_leaves_the_others(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    manager.add_intent_seen(active_session.id, "greeting", workspace_id=workspace_id)
    manager.add_template_sent(active_session.id, "welcome", workspace_id=workspace_id)
    manager.update_captured_data(
        active_session.id, {"name": "Ana", "size": 41}, workspace_id=workspace_id
    )
    before = manager.get_state(active_session.id, workspace_id=workspace_id)

    replaced = manager.update_state(
        active_session.id,
        workspace_id=workspace_id,
        templates_sent=["catalogue"],
        captured_data={"size": 42},
    )

    assert replaced.templates_sent == ["catalogue"]
    assert replaced.captured_data == {"size": 42}
    assert replaced.intents_seen == before.intents_seen
    assert replaced.updated_at > before.updated_at
    assert manager.get_state(active_session.id, workspace_id=workspace_id) == replaced


def test_update_state_replaces_intents_seen_with_the_given_records(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    manager.add_intent_seen(active_session.id, "greeting", workspace_id=workspace_id)
    seen_at = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
    intents = [IntentRecord(intent="pricing", order=1, seen_at=seen_at)]

    replaced = manager.update_state(
        active_session.id, workspace_id=workspace_id, intents_seen=intents
    )

    assert replaced.intents_seen == intents
    appended = manager.add_intent_seen(active_session.id, "shipping", workspace_id=workspace_id)
    assert [(intent.intent, intent.order) for intent in appended.intents_seen] == [
        ("pricing", 1),
        ("shipping", 2),
    ]


def test_update_state_with_empty_values_clears_the_fields(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    manager.add_intent_seen(active_session.id, "greeting", workspace_id=workspace_id)
    manager.add_template_sent(active_session.id, "welcome", workspace_id=workspace_id)
    manager.update_captured_data(active_session.id, {"a": 1}, workspace_id=workspace_id)

    cleared = manager.update_state(
        active_session.id,
        workspace_id=workspace_id,
        intents_seen=[],
        templates_sent=[],
        captured_data={},
    )

    assert (cleared.intents_seen, cleared.templates_sent, cleared.captured_data) == ([], [], {})


def test_get_state_is_the_state_embedded_in_the_session(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    manager.add_intent_seen(active_session.id, "pricing", workspace_id=workspace_id)
    manager.add_template_sent(active_session.id, "welcome", workspace_id=workspace_id)
    manager.update_captured_data(active_session.id, {"size": 42}, workspace_id=workspace_id)

    state = manager.get_state(active_session.id, workspace_id=workspace_id)

    assert state == manager.get_session(active_session.id, workspace_id=workspace_id).state
    assert (state.session_id, state.workspace_id) == (active_session.id, workspace_id)
    assert [intent.intent for intent in state.intents_seen] == ["pricing"]
    assert state.templates_sent == ["welcome"]
    assert state.captured_data == {"size": 42}
