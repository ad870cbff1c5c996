"""Every table constraint accepts a good row and rejects its bad one with the right SQLSTATE."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.db.conftest import PostgrestConnection

pytestmark = pytest.mark.db

CHECK_VIOLATION = "23514"
UNIQUE_VIOLATION = "23505"
FOREIGN_KEY_VIOLATION = "23503"

SEEN_AT = "2026-11-24T10:00:00+00:00"
GOOD_INTENT = {"intent": "pricing", "order": 1, "seen_at": SEEN_AT}


def session_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "workspace_id": uuid.uuid4(),
        "agent_id": "sales",
        "conversation_id": uuid.uuid4(),
        "current_mode": "greeting",
    }
    return row | overrides


def state_row(session: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"session_id": session["id"], "workspace_id": session["workspace_id"]}
    return row | overrides


def turn_row(session: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "session_id": session["id"],
        "workspace_id": session["workspace_id"],
        "turn_number": 1,
        "role": "user",
        "content": "How much is it?",
    }
    return row | overrides


def assert_rejected(
    service: PostgrestConnection,
    table: str,
    row: dict[str, Any],
    sqlstate: str,
    constraint: str,
) -> None:
    with pytest.raises(psycopg.Error) as caught:
        service.post(table, row)
    assert caught.value.sqlstate == sqlstate
    assert caught.value.diag.constraint_name == constraint


@pytest.fixture
def bare_session(service: PostgrestConnection) -> dict[str, Any]:
    """A session inserted directly, without its state row."""
    return service.post("agent_sessions", session_row())


# ---------------------------------------------------------------------------
# agent_sessions
# ---------------------------------------------------------------------------


def test_session_row_with_every_column_set_is_accepted(service: PostgrestConnection) -> None:
    row = session_row(
        contact_id=uuid.uuid4(), version=3, status="paused", turn_count=2, tokens_used=10
    )
    stored = service.post("agent_sessions", row)
    assert {column: stored[column] for column in row} == row


def test_session_defaults_are_version_1_active_and_zero_totals(
    service: PostgrestConnection,
) -> None:
    stored = service.post("agent_sessions", session_row())
    assert (stored["version"], stored["status"], stored["turn_count"], stored["tokens_used"]) == (
        1,
        "active",
        0,
        0,
    )
    assert stored["created_at"] == stored["updated_at"] == stored["last_activity_at"]


@pytest.mark.parametrize(
    ("overrides", "constraint"),
    [
        pytest.param({"status": "archived"}, "agent_sessions_status_check", id="unknown-status"),
        pytest.param({"agent_id": ""}, "agent_sessions_agent_id_check", id="empty-agent-id"),
        pytest.param({"agent_id": "  "}, "agent_sessions_agent_id_check", id="blank-agent-id"),
        pytest.param({"current_mode": ""}, "agent_sessions_current_mode_check", id="empty-mode"),
        pytest.param({"version": 0}, "agent_sessions_version_check", id="version-0"),
        pytest.param({"turn_count": -1}, "agent_sessions_turn_count_check", id="negative-turns"),
        pytest.param({"tokens_used": -1}, "agent_sessions_tokens_used_check", id="negative-tokens"),
    ],
)
def test_session_check_constraint_rejects_bad_value(
    service: PostgrestConnection, overrides: dict[str, Any], constraint: str
) -> None:
    assert_rejected(
        service, "agent_sessions", session_row(**overrides), CHECK_VIOLATION, constraint
    )


def test_second_active_session_for_same_conversation_and_agent_is_rejected(
    service: PostgrestConnection,
) -> None:
    first = service.post("agent_sessions", session_row())
    duplicate = session_row(
        workspace_id=first["workspace_id"], conversation_id=first["conversation_id"]
    )
    assert_rejected(
        service, "agent_sessions", duplicate, UNIQUE_VIOLATION, "agent_sessions_one_active_idx"
    )


def test_closed_session_allows_a_new_active_one_for_same_conversation_and_agent(
    service: PostgrestConnection,
) -> None:
    closed = service.post("agent_sessions", session_row(status="closed"))
    again = session_row(
        workspace_id=closed["workspace_id"], conversation_id=closed["conversation_id"]
    )
    service.post("agent_sessions", again)
    # ...and another agent may have its own active session in the same conversation.
    service.post("agent_sessions", again | {"agent_id": "support"})
    rows = service.get("agent_sessions", conversation_id=closed["conversation_id"])
    assert sorted((row["agent_id"], row["status"]) for row in rows) == [
        ("sales", "active"),
        ("sales", "closed"),
        ("support", "active"),
    ]


# ---------------------------------------------------------------------------
# session_state
# ---------------------------------------------------------------------------


def test_state_row_with_well_formed_json_is_accepted(
    service: PostgrestConnection, bare_session: dict[str, Any]
) -> None:
    row = state_row(
        bare_session,
        intents_seen=[GOOD_INTENT, {"intent": "demo", "order": 2, "seen_at": SEEN_AT}],
        templates_sent=["welcome", "pricing_v2"],
        captured_data={"email": "a@example.com", "budget": {"amount": 10}},
    )
    stored = service.post("session_state", row)
    assert {column: stored[column] for column in row} == row


def test_state_defaults_are_empty_array_array_and_object(
    service: PostgrestConnection, bare_session: dict[str, Any]
) -> None:
    stored = service.post("session_state", state_row(bare_session))
    assert (stored["intents_seen"], stored["templates_sent"], stored["captured_data"]) == (
        [],
        [],
        {},
    )


@pytest.mark.parametrize(
    ("overrides", "constraint"),
    [
        pytest.param(
            {"intents_seen": {"intent": "x"}},
            "session_state_intents_seen_check",
            id="intents-object",
        ),
        pytest.param(
            {"intents_seen": ["pricing"]}, "session_state_intents_seen_check", id="intent-text"
        ),
        pytest.param(
            {"intents_seen": [[GOOD_INTENT]]},
            "session_state_intents_seen_check",
            id="intent-nested-array",
        ),
        pytest.param(
            {"intents_seen": [{"intent": 7, "order": 1, "seen_at": SEEN_AT}]},
            "session_state_intents_seen_check",
            id="intent-not-string",
        ),
        pytest.param(
            {"intents_seen": [{"intent": "x", "order": "1", "seen_at": SEEN_AT}]},
            "session_state_intents_seen_check",
            id="order-not-number",
        ),
        pytest.param(
            {"intents_seen": [GOOD_INTENT, {"intent": "x", "order": 2}]},
            "session_state_intents_seen_check",
            id="seen-at-missing",
        ),
        pytest.param(
            {"intents_seen": [{"intent": ["x"], "order": 1, "seen_at": SEEN_AT}]},
            "session_state_intents_seen_check",
            id="intent-array",
        ),
        pytest.param(
            {"templates_sent": Jsonb("welcome")},
            "session_state_templates_sent_check",
            id="templates-text",
        ),
        pytest.param(
            {"templates_sent": ["welcome", 2]},
            "session_state_templates_sent_check",
            id="template-number",
        ),
        pytest.param(
            {"templates_sent": [["welcome"]]},
            "session_state_templates_sent_check",
            id="template-nested-array",
        ),
        pytest.param(
            {"captured_data": []}, "session_state_captured_data_check", id="captured-array"
        ),
        pytest.param(
            {"captured_data": Jsonb("x")}, "session_state_captured_data_check", id="captured-text"
        ),
    ],
)
def test_state_check_constraint_rejects_malformed_json(
    service: PostgrestConnection,
    bare_session: dict[str, Any],
    overrides: dict[str, Any],
    constraint: str,
) -> None:
    row = state_row(bare_session, **overrides)
    assert_rejected(service, "session_state", row, CHECK_VIOLATION, constraint)


def test_state_whose_workspace_differs_from_its_sessions_is_rejected(
    service: PostgrestConnection, bare_session: dict[str, Any]
) -> None:
    row = state_row(bare_session, workspace_id=uuid.uuid4())
    assert_rejected(
        service, "session_state", row, FOREIGN_KEY_VIOLATION, "session_state_session_fkey"
    )


def test_state_of_missing_session_is_rejected(service: PostgrestConnection) -> None:
    row = {"session_id": uuid.uuid4(), "workspace_id": uuid.uuid4()}
    assert_rejected(
        service, "session_state", row, FOREIGN_KEY_VIOLATION, "session_state_session_fkey"
    )


# ---------------------------------------------------------------------------
# agent_turns
# ---------------------------------------------------------------------------


def test_turn_row_with_every_column_set_is_accepted(
    service: PostgrestConnection, bare_session: dict[str, Any]
) -> None:
    row = turn_row(
        bare_session,
        role="assistant",
        intent_detected="pricing",
        confidence=87.5,
        tools_called=[{"name": "search", "input": {"q": "price"}, "result": [1]}],
        tokens_used=42,
        idempotency_key="message-1",
    )
    stored = service.post("agent_turns", row)
    assert {column: stored[column] for column in row} == row


@pytest.mark.parametrize(
    ("overrides", "constraint"),
    [
        pytest.param({"role": "robot"}, "agent_turns_role_check", id="unknown-role"),
        pytest.param({"content": ""}, "agent_turns_content_check", id="empty-content"),
        pytest.param({"content": " \n\t"}, "agent_turns_content_check", id="blank-content"),
        pytest.param({"turn_number": 0}, "agent_turns_turn_number_check", id="turn-number-0"),
        pytest.param({"confidence": 101}, "agent_turns_confidence_check", id="confidence-101"),
        pytest.param({"confidence": -1}, "agent_turns_confidence_check", id="confidence-minus-1"),
        pytest.param({"tokens_used": -1}, "agent_turns_tokens_used_check", id="negative-tokens"),
        pytest.param(
            {"idempotency_key": ""}, "agent_turns_idempotency_key_check", id="empty-idempotency-key"
        ),
        pytest.param(
            {"tools_called": {"name": "search"}},
            "agent_turns_tools_called_check",
            id="tools-object",
        ),
        pytest.param(
            {"tools_called": [{"input": {}}]},
            "agent_turns_tools_called_check",
            id="tool-without-name",
        ),
        pytest.param(
            {"tools_called": [{"name": 1}]}, "agent_turns_tools_called_check", id="tool-name-number"
        ),
        pytest.param(
            {"tools_called": ["search"]}, "agent_turns_tools_called_check", id="tool-text"
        ),
        pytest.param(
            {"tools_called": [[{"name": "search"}]]},
            "agent_turns_tools_called_check",
            id="tool-nested-array",
        ),
    ],
)
def test_turn_check_constraint_rejects_bad_value(
    service: PostgrestConnection,
    bare_session: dict[str, Any],
    overrides: dict[str, Any],
    constraint: str,
) -> None:
    row = turn_row(bare_session, **overrides)
    assert_rejected(service, "agent_turns", row, CHECK_VIOLATION, constraint)


def test_duplicate_turn_number_in_a_session_is_rejected(
    service: PostgrestConnection, bare_session: dict[str, Any]
) -> None:
    service.post("agent_turns", turn_row(bare_session, turn_number=1))
    assert_rejected(
        service,
        "agent_turns",
        turn_row(bare_session, turn_number=1, content="again"),
        UNIQUE_VIOLATION,
        "agent_turns_turn_number_key",
    )


def test_duplicate_idempotency_key_in_a_session_is_rejected(
    service: PostgrestConnection, bare_session: dict[str, Any]
) -> None:
    service.post("agent_turns", turn_row(bare_session, turn_number=1, idempotency_key="m-1"))
    assert_rejected(
        service,
        "agent_turns",
        turn_row(bare_session, turn_number=2, idempotency_key="m-1"),
        UNIQUE_VIOLATION,
        "agent_turns_idempotency_key_key",
    )


def test_turns_without_idempotency_key_do_not_collide(
    service: PostgrestConnection, bare_session: dict[str, Any]
) -> None:
    service.post("agent_turns", turn_row(bare_session, turn_number=1))
    service.post("agent_turns", turn_row(bare_session, turn_number=2))
    assert len(service.get("agent_turns", session_id=bare_session["id"])) == 2


def test_turn_whose_workspace_differs_from_its_sessions_is_rejected(
    service: PostgrestConnection, bare_session: dict[str, Any]
) -> None:
    row = turn_row(bare_session, workspace_id=uuid.uuid4())
    assert_rejected(service, "agent_turns", row, FOREIGN_KEY_VIOLATION, "agent_turns_session_fkey")


def test_deleting_a_session_deletes_its_state_and_turns(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    service.post("agent_turns", turn_row(session))
    service.delete("agent_sessions", id=session["id"], workspace_id=session["workspace_id"])
    assert service.get("session_state", session_id=session["id"]) == []
    assert service.get("agent_turns", session_id=session["id"]) == []
