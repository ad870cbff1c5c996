"""The RPC functions, called as PostgREST calls them (named arguments, one transaction each)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.db.conftest import PostgrestConnection, assert_not_found_alike

pytestmark = pytest.mark.db

INVALID_ARGUMENT = "22023"
UNIQUE_VIOLATION = "23505"
CHECK_VIOLATION = "23514"
IDEMPOTENCY_CONFLICT = "PT409"

SEEN_AT = "2026-11-24T10:00:00+00:00"


def new_session_arguments(workspace_id: uuid.UUID, **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "p_workspace_id": workspace_id,
        "p_agent_id": "sales",
        "p_conversation_id": uuid.uuid4(),
        "p_current_mode": "greeting",
    }
    return arguments | overrides


def scope(session: dict[str, Any]) -> dict[str, Any]:
    return {"p_session_id": session["id"], "p_workspace_id": session["workspace_id"]}


def stored_session(service: PostgrestConnection, session: dict[str, Any]) -> dict[str, Any]:
    (row,) = service.get("agent_sessions", id=session["id"], workspace_id=session["workspace_id"])
    return row


def stored_turns(service: PostgrestConnection, session: dict[str, Any]) -> list[dict[str, Any]]:
    rows = service.get(
        "agent_turns", workspace_id=session["workspace_id"], session_id=session["id"]
    )
    return sorted(rows, key=lambda row: int(row["turn_number"]))


# ---------------------------------------------------------------------------
# create / get_or_create
# ---------------------------------------------------------------------------


def test_create_session_returns_active_session_with_embedded_empty_state(
    service: PostgrestConnection, workspace_id: uuid.UUID
) -> None:
    contact_id = uuid.uuid4()
    arguments = new_session_arguments(workspace_id, p_contact_id=contact_id)
    created = service.rpc("agent_engine_create_session", **arguments)

    assert created["workspace_id"] == str(workspace_id)
    assert created["conversation_id"] == str(arguments["p_conversation_id"])
    assert created["contact_id"] == str(contact_id)
    assert (created["agent_id"], created["current_mode"]) == ("sales", "greeting")
    assert (created["status"], created["version"]) == ("active", 1)
    assert (created["turn_count"], created["tokens_used"]) == (0, 0)
    state = created["session_state"]
    assert (state["session_id"], state["workspace_id"]) == (created["id"], str(workspace_id))
    assert (state["intents_seen"], state["templates_sent"], state["captured_data"]) == ([], [], {})
    assert service.get("session_state", session_id=created["id"]) != []


def test_create_session_stores_the_initial_state(
    service: PostgrestConnection, workspace_id: uuid.UUID
) -> None:
    intents = [{"intent": "pricing", "order": 1, "seen_at": SEEN_AT}]
    created = service.rpc(
        "agent_engine_create_session",
        **new_session_arguments(
            workspace_id,
            p_intents_seen=intents,
            p_templates_sent=["welcome"],
            p_captured_data={"name": "Ada"},
        ),
    )
    (state,) = service.get("session_state", session_id=created["id"])
    assert state["intents_seen"] == intents
    assert state["templates_sent"] == ["welcome"]
    assert state["captured_data"] == {"name": "Ada"}
    assert created["session_state"]["captured_data"] == {"name": "Ada"}


def test_create_session_twice_for_same_conversation_and_agent_raises_unique_violation(
    service: PostgrestConnection, workspace_id: uuid.UUID
) -> None:
    arguments = new_session_arguments(workspace_id)
    service.rpc("agent_engine_create_session", **arguments)
    with pytest.raises(psycopg.Error) as caught:
        service.rpc("agent_engine_create_session", **arguments)
    assert caught.value.sqlstate == UNIQUE_VIOLATION
    assert caught.value.diag.constraint_name == "agent_sessions_one_active_idx"
    conversation = service.get("agent_sessions", conversation_id=arguments["p_conversation_id"])
    assert len(conversation) == 1


def test_create_session_after_the_active_one_is_closed_creates_a_new_one(
    service: PostgrestConnection, workspace_id: uuid.UUID
) -> None:
    arguments = new_session_arguments(workspace_id)
    first = service.rpc("agent_engine_create_session", **arguments)
    service.patch("agent_sessions", {"status": "closed"}, {"id": first["id"]})
    second = service.rpc("agent_engine_create_session", **arguments)
    assert second["id"] != first["id"]
    assert second["status"] == "active"


def test_create_session_with_malformed_intent_creates_nothing(
    service: PostgrestConnection, workspace_id: uuid.UUID
) -> None:
    arguments = new_session_arguments(workspace_id, p_intents_seen=[{"intent": "pricing"}])
    with pytest.raises(psycopg.Error) as caught:
        service.rpc("agent_engine_create_session", **arguments)
    assert caught.value.sqlstate == CHECK_VIOLATION
    # The session insert is rolled back with the failed state insert.
    assert service.get("agent_sessions", conversation_id=arguments["p_conversation_id"]) == []


@pytest.mark.parametrize(
    "function", ["agent_engine_create_session", "agent_engine_get_or_create_session"]
)
@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"p_intents_seen": {"intent": "x"}}, id="intents-object"),
        pytest.param({"p_templates_sent": Jsonb("welcome")}, id="templates-text"),
        pytest.param({"p_captured_data": ["x"]}, id="captured-array"),
        pytest.param({"p_captured_data": None}, id="captured-null"),
        pytest.param({"p_agent_id": None}, id="agent-null"),
        pytest.param({"p_workspace_id": None}, id="workspace-null"),
    ],
)
def test_session_creation_rejects_invalid_arguments_with_22023(
    service: PostgrestConnection,
    workspace_id: uuid.UUID,
    function: str,
    overrides: dict[str, Any],
) -> None:
    with pytest.raises(psycopg.Error) as caught:
        service.rpc(function, **new_session_arguments(workspace_id, **overrides))
    assert caught.value.sqlstate == INVALID_ARGUMENT


def test_get_or_create_returns_the_existing_active_session_and_ignores_initial_state(
    service: PostgrestConnection, workspace_id: uuid.UUID
) -> None:
    arguments = new_session_arguments(workspace_id)
    created = service.rpc("agent_engine_create_session", **arguments)
    service.rpc("agent_engine_append_template", **scope(created), p_template_name="welcome")

    found = service.rpc(
        "agent_engine_get_or_create_session", **arguments, p_templates_sent=["other"]
    )

    assert found["id"] == created["id"]
    assert found["session_state"]["templates_sent"] == ["welcome"]
    assert len(service.get("agent_sessions", conversation_id=arguments["p_conversation_id"])) == 1


def test_get_or_create_creates_the_session_with_state_when_none_is_active(
    service: PostgrestConnection, workspace_id: uuid.UUID
) -> None:
    arguments = new_session_arguments(workspace_id, p_captured_data={"source": "ad"})
    closed = service.rpc("agent_engine_create_session", **arguments)
    service.patch("agent_sessions", {"status": "closed"}, {"id": closed["id"]})

    created = service.rpc("agent_engine_get_or_create_session", **arguments)

    assert created["id"] != closed["id"]
    assert created["status"] == "active"
    assert created["session_state"]["session_id"] == created["id"]
    assert created["session_state"]["captured_data"] == {"source": "ad"}
    again = service.rpc("agent_engine_get_or_create_session", **arguments)
    assert again == created


# ---------------------------------------------------------------------------
# PT404
# ---------------------------------------------------------------------------

SESSION_FUNCTIONS: list[tuple[str, dict[str, Any]]] = [
    ("agent_engine_append_intent", {"p_intent": "pricing"}),
    ("agent_engine_append_template", {"p_template_name": "welcome"}),
    ("agent_engine_merge_captured_data", {"p_data": {"name": "Ada"}}),
    ("agent_engine_add_turn", {"p_role": "user", "p_content": "hello"}),
]


@pytest.mark.parametrize(
    ("function", "arguments"), SESSION_FUNCTIONS, ids=[name for name, _ in SESSION_FUNCTIONS]
)
def test_session_function_raises_pt404_with_the_same_message_for_missing_and_foreign_session(
    service: PostgrestConnection,
    session: dict[str, Any],
    function: str,
    arguments: dict[str, Any],
) -> None:
    assert_not_found_alike(service, function, session["id"], arguments)
    # The other workspace's call changed nothing in the session.
    assert stored_session(service, session)["updated_at"] == datetime.fromisoformat(
        session["updated_at"]
    )
    (state,) = service.get("session_state", session_id=session["id"])
    assert state["updated_at"] == datetime.fromisoformat(session["session_state"]["updated_at"])


# ---------------------------------------------------------------------------
# Session state
# ---------------------------------------------------------------------------


def test_append_intent_stores_intents_with_order_and_timestamp(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    service.rpc("agent_engine_append_intent", **scope(session), p_intent="pricing")
    state = service.rpc("agent_engine_append_intent", **scope(session), p_intent="demo")

    assert [(item["intent"], item["order"]) for item in state["intents_seen"]] == [
        ("pricing", 1),
        ("demo", 2),
    ]
    for item in state["intents_seen"]:
        assert datetime.fromisoformat(item["seen_at"]).tzinfo is not None
    assert state["session_id"] == session["id"]
    (stored,) = service.get("session_state", session_id=session["id"])
    assert stored["intents_seen"] == state["intents_seen"]


@pytest.mark.parametrize("intent", ["", "   ", None])
def test_append_intent_rejects_empty_intent_with_22023(
    service: PostgrestConnection, session: dict[str, Any], intent: str | None
) -> None:
    with pytest.raises(psycopg.Error) as caught:
        service.rpc("agent_engine_append_intent", **scope(session), p_intent=intent)
    assert caught.value.sqlstate == INVALID_ARGUMENT


def test_append_template_is_idempotent_and_keeps_first_sent_order(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    for name in ("welcome", "pricing", "welcome", "pricing"):
        state = service.rpc("agent_engine_append_template", **scope(session), p_template_name=name)
    assert state["templates_sent"] == ["welcome", "pricing"]


def test_append_template_already_sent_writes_nothing(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    first = service.rpc("agent_engine_append_template", **scope(session), p_template_name="welcome")
    retry = service.rpc("agent_engine_append_template", **scope(session), p_template_name="welcome")
    assert retry == first  # including updated_at: the retry did not touch the row


def test_merge_captured_data_is_shallow(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    service.rpc(
        "agent_engine_merge_captured_data",
        **scope(session),
        p_data={"name": "Ada", "address": {"city": "London", "zip": "N1"}},
    )
    state = service.rpc(
        "agent_engine_merge_captured_data",
        **scope(session),
        p_data={"address": {"city": "Paris"}, "email": "ada@example.com"},
    )
    # Top-level keys are replaced whole: the nested zip is gone.
    assert state["captured_data"] == {
        "name": "Ada",
        "address": {"city": "Paris"},
        "email": "ada@example.com",
    }


@pytest.mark.parametrize(
    "data",
    [pytest.param(["a"], id="array"), pytest.param("a", id="text"), pytest.param(None, id="null")],
)
def test_merge_captured_data_rejects_non_object_with_22023(
    service: PostgrestConnection, session: dict[str, Any], data: Any
) -> None:
    with pytest.raises(psycopg.Error) as caught:
        service.rpc(
            "agent_engine_merge_captured_data",
            **scope(session),
            p_data=None if data is None else Jsonb(data),
        )
    assert caught.value.sqlstate == INVALID_ARGUMENT


# ---------------------------------------------------------------------------
# Turns
# ---------------------------------------------------------------------------


def test_add_turn_numbers_turns_from_1_and_keeps_totals_without_bumping_version(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    first = service.rpc(
        "agent_engine_add_turn",
        **scope(session),
        p_role="user",
        p_content="How much is it?",
        p_tokens_used=7,
    )
    second = service.rpc(
        "agent_engine_add_turn",
        **scope(session),
        p_role="assistant",
        p_content="It is 10 euros.",
        p_intent_detected="pricing",
        p_confidence=92.5,
        p_tools_called=[{"name": "price_lookup", "input": {"sku": "A1"}}],
        p_tokens_used=30,
    )

    assert (first["turn_number"], second["turn_number"]) == (1, 2)
    assert second["role"] == "assistant"
    assert second["intent_detected"] == "pricing"
    assert second["confidence"] == 92.5
    assert second["tools_called"] == [{"name": "price_lookup", "input": {"sku": "A1"}}]
    assert second["idempotency_key"] is None
    stored = stored_session(service, session)
    assert (stored["turn_count"], stored["tokens_used"], stored["version"]) == (2, 37, 1)
    assert stored["last_activity_at"] > datetime.fromisoformat(session["last_activity_at"])


def test_add_turn_with_explicit_number_uses_it_and_continues_after_it(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    explicit = service.rpc(
        "agent_engine_add_turn", **scope(session), p_role="user", p_content="a", p_turn_number=5
    )
    following = service.rpc("agent_engine_add_turn", **scope(session), p_role="user", p_content="b")
    assert (explicit["turn_number"], following["turn_number"]) == (5, 6)


def test_add_turn_with_taken_number_raises_unique_violation_and_changes_no_totals(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    service.rpc(
        "agent_engine_add_turn", **scope(session), p_role="user", p_content="a", p_tokens_used=3
    )
    with pytest.raises(psycopg.Error) as caught:
        service.rpc(
            "agent_engine_add_turn",
            **scope(session),
            p_role="user",
            p_content="b",
            p_turn_number=1,
            p_tokens_used=100,
        )
    assert caught.value.sqlstate == UNIQUE_VIOLATION
    assert caught.value.diag.constraint_name == "agent_turns_turn_number_key"
    stored = stored_session(service, session)
    assert (stored["turn_count"], stored["tokens_used"]) == (1, 3)


FIRST_TURN: dict[str, Any] = {
    "p_role": "user",
    "p_content": "hello",
    "p_tokens_used": 5,
    "p_intent_detected": "greeting",
    "p_confidence": 87.5,
    "p_tools_called": Jsonb([{"name": "lookup", "input": {"q": "shoes"}, "result": None}]),
    "p_idempotency_key": "message-1",
}


def test_add_turn_with_known_idempotency_key_and_same_turn_returns_stored_turn_unchanged(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    original = service.rpc("agent_engine_add_turn", **scope(session), **FIRST_TURN)
    before = stored_session(service, session)

    retried = service.rpc("agent_engine_add_turn", **scope(session), **FIRST_TURN)
    with_its_number = service.rpc(
        "agent_engine_add_turn", **scope(session), **FIRST_TURN, p_turn_number=1
    )

    assert retried == original == with_its_number
    assert stored_session(service, session) == before  # totals and last_activity_at untouched
    assert [turn["content"] for turn in stored_turns(service, session)] == ["hello"]


@pytest.mark.parametrize(
    "difference",
    [
        {"p_role": "assistant"},
        {"p_content": "hello, edited"},
        {"p_content": "hello "},
        {"p_tokens_used": 50},
        {"p_intent_detected": "pricing"},
        {"p_intent_detected": None},
        {"p_confidence": 87.0},
        {"p_confidence": None},
        {"p_tools_called": Jsonb([])},
        {"p_tools_called": Jsonb([{"name": "lookup", "input": {"q": "boots"}, "result": None}])},
        {"p_turn_number": 2},
    ],
    ids=lambda difference: next(iter(difference)),
)
def test_add_turn_with_known_idempotency_key_and_different_turn_raises_pt409_and_changes_nothing(
    service: PostgrestConnection, session: dict[str, Any], difference: dict[str, Any]
) -> None:
    service.rpc("agent_engine_add_turn", **scope(session), **FIRST_TURN)
    before = stored_session(service, session)

    with pytest.raises(psycopg.Error) as caught:
        service.rpc("agent_engine_add_turn", **scope(session), **{**FIRST_TURN, **difference})

    assert caught.value.sqlstate == IDEMPOTENCY_CONFLICT
    assert json.loads(caught.value.diag.message_detail or "") == {"turn_number": 1}
    assert stored_session(service, session) == before
    assert [turn["content"] for turn in stored_turns(service, session)] == ["hello"]


@pytest.mark.parametrize("number", [1_000_000_001, 2**31 - 1])
def test_add_turn_refuses_an_explicit_number_above_the_bound_that_keeps_numbering_open(
    service: PostgrestConnection, session: dict[str, Any], number: int
) -> None:
    with pytest.raises(psycopg.Error) as caught:
        service.rpc(
            "agent_engine_add_turn",
            **scope(session),
            p_role="user",
            p_content="a",
            p_turn_number=number,
        )

    assert caught.value.sqlstate == INVALID_ARGUMENT
    assert stored_turns(service, session) == []


def test_add_turn_at_the_highest_explicit_number_leaves_automatic_numbering_working(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    highest = service.rpc(
        "agent_engine_add_turn",
        **scope(session),
        p_role="user",
        p_content="a",
        p_turn_number=1_000_000_000,
    )
    following = service.rpc("agent_engine_add_turn", **scope(session), p_role="user", p_content="b")

    assert (highest["turn_number"], following["turn_number"]) == (1_000_000_000, 1_000_000_001)


def test_idempotency_keys_are_scoped_to_their_session(
    service: PostgrestConnection, workspace_id: uuid.UUID
) -> None:
    sessions = [
        service.rpc("agent_engine_create_session", **new_session_arguments(workspace_id))
        for _ in range(2)
    ]
    turns = [
        service.rpc(
            "agent_engine_add_turn",
            **scope(session),
            p_role="user",
            p_content="hi",
            p_idempotency_key="message-1",
        )
        for session in sessions
    ]
    assert turns[0]["id"] != turns[1]["id"]
    assert [turn["session_id"] for turn in turns] == [session["id"] for session in sessions]


@pytest.mark.parametrize(
    ("overrides", "sqlstate"),
    [
        pytest.param({"p_role": "robot"}, CHECK_VIOLATION, id="unknown-role"),
        pytest.param({"p_content": ""}, CHECK_VIOLATION, id="empty-content"),
        pytest.param({"p_confidence": 101}, CHECK_VIOLATION, id="confidence-101"),
        pytest.param({"p_tokens_used": -1}, CHECK_VIOLATION, id="negative-tokens"),
        pytest.param({"p_tools_called": [{"input": 1}]}, CHECK_VIOLATION, id="tool-without-name"),
        pytest.param({"p_turn_number": 0}, CHECK_VIOLATION, id="turn-number-0"),
        pytest.param({"p_tools_called": {"name": "x"}}, INVALID_ARGUMENT, id="tools-object"),
        pytest.param({"p_content": None}, INVALID_ARGUMENT, id="content-null"),
        pytest.param({"p_tokens_used": None}, INVALID_ARGUMENT, id="tokens-null"),
    ],
)
def test_add_turn_with_invalid_value_is_rejected_and_changes_nothing(
    service: PostgrestConnection, session: dict[str, Any], overrides: dict[str, Any], sqlstate: str
) -> None:
    arguments = {"p_role": "user", "p_content": "hi", "p_tokens_used": 4} | overrides
    with pytest.raises(psycopg.Error) as caught:
        service.rpc("agent_engine_add_turn", **scope(session), **arguments)
    assert caught.value.sqlstate == sqlstate
    stored = stored_session(service, session)
    assert (stored["turn_count"], stored["tokens_used"]) == (0, 0)
    assert stored_turns(service, session) == []


# ---------------------------------------------------------------------------
# Plain table writes (PATCH)
# ---------------------------------------------------------------------------


def test_version_guarded_update_with_stale_version_updates_nothing(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    filters = {"id": session["id"], "workspace_id": session["workspace_id"], "version": 1}
    updated = service.patch("agent_sessions", {"current_mode": "qualifying", "version": 2}, filters)
    assert [row["version"] for row in updated] == [2]

    stale = service.patch("agent_sessions", {"current_mode": "closing", "version": 2}, filters)

    assert stale == []
    assert stored_session(service, session)["current_mode"] == "qualifying"


@pytest.mark.parametrize(
    ("table", "key"), [("agent_sessions", "id"), ("session_state", "session_id")]
)
def test_updated_at_is_set_by_the_trigger_whatever_the_update_says(
    service: PostgrestConnection, session: dict[str, Any], table: str, key: str
) -> None:
    long_ago = datetime.fromisoformat("2000-01-01T00:00:00+00:00")
    (row,) = service.patch(table, {"updated_at": long_ago}, {key: session["id"]})
    assert row["updated_at"] > datetime.fromisoformat(session["updated_at"])
