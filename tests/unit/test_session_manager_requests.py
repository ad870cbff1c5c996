"""Each public SessionManager method: the exact PostgREST request, one round trip, the parsed model.

Query strings are compared as sorted parsed items, so only the set of parameters matters, not
their order; the comparison is exact, so a missing workspace filter or an extra parameter fails.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

import pytest
import respx

from agent_engine import (
    AgentSession,
    AgentSessionWithState,
    AgentTurn,
    IntentRecord,
    SessionManager,
    SessionState,
    SessionStatus,
    ToolCallRecord,
    TurnRole,
)
from tests.unit.conftest import (
    AGENT_ID,
    LATER_TIMESTAMP,
    LATER_TIMESTAMP_VALUE,
    LEGACY_SERVICE_ROLE_KEY,
    OBJECT_MEDIA_TYPE,
    SECRET_KEY,
    TIMESTAMP,
    TIMESTAMP_VALUE,
    Ids,
    Rows,
    array_response,
    assert_service_key_sent,
    build_client,
    json_body,
    object_response,
    query_items,
    rpc_response,
)

SESSION_WITH_STATE_COLUMNS = "*,session_state(*)"


def _assert_full_state(state: SessionState, ids: Ids) -> None:
    assert state.session_id == ids.session_id
    assert state.workspace_id == ids.workspace_id
    assert state.intents_seen == [
        IntentRecord(intent="greeting", order=1, seen_at=TIMESTAMP_VALUE),
        IntentRecord(intent="pricing", order=2, seen_at=LATER_TIMESTAMP_VALUE),
    ]
    assert state.templates_sent == ["welcome_v2"]
    assert state.captured_data == {"name": "Ana", "budget": 1500.5, "tags": ["vip"], "email": None}
    assert state.updated_at == LATER_TIMESTAMP_VALUE


def _assert_session_row(session: AgentSession, ids: Ids, *, version: int = 3) -> None:
    assert session.id == ids.session_id
    assert session.workspace_id == ids.workspace_id
    assert session.agent_id == AGENT_ID
    assert session.conversation_id == ids.conversation_id
    assert session.contact_id == ids.contact_id
    assert session.version == version
    assert session.turn_count == 4
    assert session.tokens_used == 812
    assert session.created_at == TIMESTAMP_VALUE
    assert session.updated_at == LATER_TIMESTAMP_VALUE
    assert session.last_activity_at == LATER_TIMESTAMP_VALUE


# Sessions


def test_create_session_calls_create_function_once_with_every_argument_and_parses_session(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    route = api.post("/rpc/agent_engine_create_session").mock(
        return_value=rpc_response(rows.session_with_state(version=1, current_mode="greeting"))
    )

    session = manager.create_session(
        workspace_id=ids.workspace_id,
        agent_id=AGENT_ID,
        conversation_id=str(ids.conversation_id),
        contact_id=ids.contact_id,
        initial_mode="greeting",
        initial_state={
            "intents_seen": [{"intent": "greeting", "order": 1, "seen_at": TIMESTAMP}],
            "templates_sent": ["welcome_v2"],
            "captured_data": {"source": "whatsapp", "utm": {"campaign": "black-friday"}},
        },
    )

    assert api.calls.call_count == 1
    request = route.calls.last.request
    assert request.method == "POST"
    assert query_items(request) == []
    assert_service_key_sent(request)
    assert request.headers["accept"] != OBJECT_MEDIA_TYPE
    assert json_body(request) == {
        "p_workspace_id": str(ids.workspace_id),
        "p_agent_id": AGENT_ID,
        "p_conversation_id": str(ids.conversation_id),
        "p_current_mode": "greeting",
        "p_contact_id": str(ids.contact_id),
        "p_intents_seen": [
            {"intent": "greeting", "order": 1, "seen_at": "2026-11-24T10:15:30.123456Z"}
        ],
        "p_templates_sent": ["welcome_v2"],
        "p_captured_data": {"source": "whatsapp", "utm": {"campaign": "black-friday"}},
    }
    assert isinstance(session, AgentSessionWithState)
    _assert_session_row(session, ids, version=1)
    assert session.status is SessionStatus.ACTIVE
    assert session.current_mode == "greeting"
    _assert_full_state(session.state, ids)


def test_create_session_without_contact_or_initial_state_sends_nulls_and_empty_collections(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    empty_state = rows.state(intents_seen=[], templates_sent=[], captured_data={})
    route = api.post("/rpc/agent_engine_create_session").mock(
        return_value=rpc_response(rows.session_with_state(empty_state, contact_id=None))
    )

    session = manager.create_session(
        workspace_id=str(ids.workspace_id),
        agent_id=AGENT_ID,
        conversation_id=ids.conversation_id,
        initial_mode="greeting",
    )

    assert api.calls.call_count == 1
    body = json_body(route.calls.last.request)
    assert body["p_contact_id"] is None
    assert body["p_intents_seen"] == []
    assert body["p_templates_sent"] == []
    assert body["p_captured_data"] == {}
    assert session.contact_id is None
    assert session.state.intents_seen == []
    assert session.state.captured_data == {}


def test_create_session_with_registry_sends_agent_initial_state_as_mode(
    registry_manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    route = api.post("/rpc/agent_engine_create_session").mock(
        return_value=rpc_response(rows.session_with_state(version=1, current_mode="greeting"))
    )

    session = registry_manager.create_session(
        workspace_id=ids.workspace_id, agent_id=AGENT_ID, conversation_id=ids.conversation_id
    )

    assert api.calls.call_count == 1
    assert json_body(route.calls.last.request)["p_current_mode"] == "greeting"
    assert session.current_mode == "greeting"


def test_create_session_with_registry_sends_an_explicit_initial_mode_of_the_agent(
    registry_manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    route = api.post("/rpc/agent_engine_create_session").mock(
        return_value=rpc_response(rows.session_with_state(version=1, current_mode="scheduling"))
    )

    registry_manager.create_session(
        workspace_id=ids.workspace_id,
        agent_id=AGENT_ID,
        conversation_id=ids.conversation_id,
        initial_mode="scheduling",
    )

    assert json_body(route.calls.last.request)["p_current_mode"] == "scheduling"


def test_get_or_create_session_calls_get_or_create_function_once_and_parses_session(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    route = api.post("/rpc/agent_engine_get_or_create_session").mock(
        return_value=rpc_response(rows.session_with_state())
    )

    session = manager.get_or_create_session(
        workspace_id=ids.workspace_id,
        agent_id=AGENT_ID,
        conversation_id=ids.conversation_id,
        contact_id=str(ids.contact_id),
        initial_mode="greeting",
        initial_state={"captured_data": {"source": "web"}},
    )

    assert api.calls.call_count == 1
    request = route.calls.last.request
    assert request.method == "POST"
    assert query_items(request) == []
    assert_service_key_sent(request)
    assert json_body(request) == {
        "p_workspace_id": str(ids.workspace_id),
        "p_agent_id": AGENT_ID,
        "p_conversation_id": str(ids.conversation_id),
        "p_current_mode": "greeting",
        "p_contact_id": str(ids.contact_id),
        "p_intents_seen": [],
        "p_templates_sent": [],
        "p_captured_data": {"source": "web"},
    }
    _assert_session_row(session, ids)
    assert session.current_mode == "qualifying"
    _assert_full_state(session.state, ids)


def test_get_session_reads_one_object_with_embedded_state_filtered_by_workspace(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    route = api.get("/agent_sessions").mock(
        return_value=object_response(rows.session_with_state(status="paused"))
    )

    session = manager.get_session(ids.session_id, workspace_id=ids.workspace_id)

    assert api.calls.call_count == 1
    request = route.calls.last.request
    assert request.method == "GET"
    assert query_items(request) == sorted(
        [
            ("select", SESSION_WITH_STATE_COLUMNS),
            ("id", f"eq.{ids.session_id}"),
            ("workspace_id", f"eq.{ids.workspace_id}"),
        ]
    )
    assert request.headers["accept"] == OBJECT_MEDIA_TYPE
    assert_service_key_sent(request)
    assert isinstance(session, AgentSessionWithState)
    _assert_session_row(session, ids)
    assert session.status is SessionStatus.PAUSED
    assert session.current_mode == "qualifying"
    _assert_full_state(session.state, ids)


ID_SPELLINGS: dict[str, Callable[[UUID], UUID | str]] = {
    "a UUID": lambda value: value,
    "its text": str,
    "upper case": lambda value: str(value).upper(),
    "without hyphens": lambda value: value.hex,
    "in braces": lambda value: f"{{{value}}}",
    "a URN": lambda value: value.urn,
}
"""Ways to write an id that the managers take: ids are validated once, here."""


@pytest.mark.parametrize("spell", ID_SPELLINGS.values(), ids=ID_SPELLINGS.keys())
def test_get_session_accepts_every_spelling_of_an_id_and_sends_its_canonical_text(
    manager: SessionManager,
    api: respx.MockRouter,
    ids: Ids,
    rows: Rows,
    spell: Callable[[UUID], UUID | str],
) -> None:
    route = api.get("/agent_sessions").mock(return_value=object_response(rows.session_with_state()))

    session = manager.get_session(spell(ids.session_id), workspace_id=spell(ids.workspace_id))

    sent = query_items(route.calls.last.request)
    assert ("id", f"eq.{ids.session_id}") in sent
    assert ("workspace_id", f"eq.{ids.workspace_id}") in sent
    assert session.id == ids.session_id


def test_get_session_by_conversation_filters_active_session_and_returns_the_only_row(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    route = api.get("/agent_sessions").mock(
        return_value=array_response([rows.session_with_state()])
    )

    session = manager.get_session_by_conversation(
        ids.conversation_id, AGENT_ID, workspace_id=ids.workspace_id
    )

    assert api.calls.call_count == 1
    request = route.calls.last.request
    assert request.method == "GET"
    assert query_items(request) == sorted(
        [
            ("select", SESSION_WITH_STATE_COLUMNS),
            ("workspace_id", f"eq.{ids.workspace_id}"),
            ("conversation_id", f"eq.{ids.conversation_id}"),
            ("agent_id", f"eq.{AGENT_ID}"),
            ("status", "eq.active"),
            ("limit", "1"),
        ]
    )
    assert request.headers["accept"] != OBJECT_MEDIA_TYPE
    assert_service_key_sent(request)
    assert session is not None
    _assert_session_row(session, ids)
    _assert_full_state(session.state, ids)


def test_get_session_by_conversation_returns_none_for_an_empty_array(
    manager: SessionManager, api: respx.MockRouter, ids: Ids
) -> None:
    api.get("/agent_sessions").mock(return_value=array_response([]))

    session = manager.get_session_by_conversation(
        ids.conversation_id, AGENT_ID, workspace_id=ids.workspace_id
    )

    assert session is None
    assert api.calls.call_count == 1


# Version-guarded updates


def test_update_session_with_version_patches_where_id_workspace_and_version_match(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    route = api.patch("/agent_sessions").mock(
        return_value=object_response(
            rows.session(version=4, current_mode="scheduling", last_activity_at=LATER_TIMESTAMP)
        )
    )

    session = manager.update_session_with_version(
        ids.session_id,
        3,
        workspace_id=ids.workspace_id,
        current_mode="scheduling",
        last_activity_at=LATER_TIMESTAMP_VALUE,
    )

    assert api.calls.call_count == 1
    request = route.calls.last.request
    assert request.method == "PATCH"
    assert query_items(request) == sorted(
        [
            ("id", f"eq.{ids.session_id}"),
            ("workspace_id", f"eq.{ids.workspace_id}"),
            ("version", "eq.3"),
        ]
    )
    assert request.headers["accept"] == OBJECT_MEDIA_TYPE
    assert request.headers["prefer"] == "return=representation"
    assert_service_key_sent(request)
    assert json_body(request) == {
        "current_mode": "scheduling",
        "last_activity_at": "2026-11-24T10:16:02.654321Z",
        "version": 4,
    }
    assert type(session) is AgentSession
    _assert_session_row(session, ids, version=4)
    assert session.current_mode == "scheduling"


def test_update_session_with_version_status_change_is_guarded_by_the_allowed_previous_statuses(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    route = api.patch("/agent_sessions").mock(
        return_value=object_response(rows.session(version=8, status="paused"))
    )

    session = manager.update_session_with_version(
        ids.session_id, 7, workspace_id=ids.workspace_id, status="paused"
    )

    request = route.calls.last.request
    assert query_items(request) == sorted(
        [
            ("id", f"eq.{ids.session_id}"),
            ("workspace_id", f"eq.{ids.workspace_id}"),
            ("version", "eq.7"),
            ("status", "in.(active,paused)"),
        ]
    )
    assert json_body(request) == {"status": "paused", "version": 8}
    assert session.version == 8
    assert session.status is SessionStatus.PAUSED


def _assert_status_patch(
    api: respx.MockRouter, ids: Ids, *, version: int, status: str, allowed_from: str
) -> None:
    assert api.calls.call_count == 1
    request = api.calls.last.request
    assert request.method == "PATCH"
    assert request.url.path == "/rest/v1/agent_sessions"
    assert query_items(request) == sorted(
        [
            ("id", f"eq.{ids.session_id}"),
            ("workspace_id", f"eq.{ids.workspace_id}"),
            ("version", f"eq.{version}"),
            ("status", f"in.({allowed_from})"),
        ]
    )
    assert request.headers["accept"] == OBJECT_MEDIA_TYPE
    assert request.headers["prefer"] == "return=representation"
    assert_service_key_sent(request)
    assert json_body(request) == {"status": status, "version": version + 1}


def test_close_session_patches_status_closed_from_any_status_and_returns_new_version(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    api.patch("/agent_sessions").mock(
        return_value=object_response(rows.session(version=6, status="closed"))
    )

    session = manager.close_session(ids.session_id, 5, workspace_id=ids.workspace_id)

    _assert_status_patch(
        api, ids, version=5, status="closed", allowed_from="active,paused,closed,handed_off"
    )
    assert session.version == 6
    assert session.status is SessionStatus.CLOSED


def test_handoff_session_patches_status_handed_off_unless_closed(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    api.patch("/agent_sessions").mock(
        return_value=object_response(rows.session(version=3, status="handed_off"))
    )

    session = manager.handoff_session(ids.session_id, 2, workspace_id=ids.workspace_id)

    _assert_status_patch(
        api, ids, version=2, status="handed_off", allowed_from="active,paused,handed_off"
    )
    assert session.version == 3
    assert session.status is SessionStatus.HANDED_OFF


def test_pause_session_patches_status_paused_from_active_or_paused(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    api.patch("/agent_sessions").mock(
        return_value=object_response(rows.session(version=10, status="paused"))
    )

    session = manager.pause_session(ids.session_id, 9, workspace_id=ids.workspace_id)

    _assert_status_patch(api, ids, version=9, status="paused", allowed_from="active,paused")
    assert session.version == 10
    assert session.status is SessionStatus.PAUSED


def test_resume_session_patches_status_active_from_paused_or_handed_off(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    api.patch("/agent_sessions").mock(
        return_value=object_response(rows.session(version=4, status="active"))
    )

    session = manager.resume_session(ids.session_id, 3, workspace_id=ids.workspace_id)

    _assert_status_patch(
        api, ids, version=3, status="active", allowed_from="active,paused,handed_off"
    )
    assert session.version == 4
    assert session.status is SessionStatus.ACTIVE


# State


def test_get_state_reads_one_state_object_filtered_by_session_and_workspace(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    route = api.get("/session_state").mock(return_value=object_response(rows.state()))

    state = manager.get_state(ids.session_id, workspace_id=ids.workspace_id)

    assert api.calls.call_count == 1
    request = route.calls.last.request
    assert request.method == "GET"
    assert query_items(request) == sorted(
        [
            ("select", "*"),
            ("session_id", f"eq.{ids.session_id}"),
            ("workspace_id", f"eq.{ids.workspace_id}"),
        ]
    )
    assert request.headers["accept"] == OBJECT_MEDIA_TYPE
    assert_service_key_sent(request)
    _assert_full_state(state, ids)


def test_update_state_patches_only_the_given_fields_of_the_state_row(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    new_data = {"name": "Ana Souza", "budget": 2000}
    route = api.patch("/session_state").mock(
        return_value=object_response(
            rows.state(templates_sent=["welcome_v2", "pricing_table"], captured_data=new_data)
        )
    )

    state = manager.update_state(
        ids.session_id,
        workspace_id=ids.workspace_id,
        templates_sent=["welcome_v2", "pricing_table"],
        captured_data=new_data,
    )

    assert api.calls.call_count == 1
    request = route.calls.last.request
    assert request.method == "PATCH"
    assert query_items(request) == sorted(
        [("session_id", f"eq.{ids.session_id}"), ("workspace_id", f"eq.{ids.workspace_id}")]
    )
    assert request.headers["accept"] == OBJECT_MEDIA_TYPE
    assert request.headers["prefer"] == "return=representation"
    assert_service_key_sent(request)
    assert json_body(request) == {
        "templates_sent": ["welcome_v2", "pricing_table"],
        "captured_data": {"name": "Ana Souza", "budget": 2000},
    }
    assert state.templates_sent == ["welcome_v2", "pricing_table"]
    assert state.captured_data == new_data
    assert state.session_id == ids.session_id


def test_update_state_replaces_intents_seen_with_json_rendered_records(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    route = api.patch("/session_state").mock(return_value=object_response(rows.state()))

    manager.update_state(
        ids.session_id,
        workspace_id=ids.workspace_id,
        intents_seen=[IntentRecord(intent="greeting", order=1, seen_at=TIMESTAMP_VALUE)],
    )

    assert json_body(route.calls.last.request) == {
        "intents_seen": [
            {"intent": "greeting", "order": 1, "seen_at": "2026-11-24T10:15:30.123456Z"}
        ]
    }


def test_add_intent_seen_calls_append_intent_with_the_stripped_intent(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    appended = rows.state(
        intents_seen=[
            {"intent": "greeting", "order": 1, "seen_at": TIMESTAMP},
            {"intent": "pricing", "order": 2, "seen_at": LATER_TIMESTAMP},
            {"intent": "book_demo", "order": 3, "seen_at": LATER_TIMESTAMP},
        ]
    )
    route = api.post("/rpc/agent_engine_append_intent").mock(return_value=rpc_response(appended))

    state = manager.add_intent_seen(ids.session_id, "  book_demo ", workspace_id=ids.workspace_id)

    assert api.calls.call_count == 1
    request = route.calls.last.request
    assert request.method == "POST"
    assert query_items(request) == []
    assert_service_key_sent(request)
    assert json_body(request) == {
        "p_session_id": str(ids.session_id),
        "p_workspace_id": str(ids.workspace_id),
        "p_intent": "book_demo",
    }
    assert [(intent.intent, intent.order) for intent in state.intents_seen] == [
        ("greeting", 1),
        ("pricing", 2),
        ("book_demo", 3),
    ]


def test_add_template_sent_calls_append_template_with_the_template_name(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    route = api.post("/rpc/agent_engine_append_template").mock(
        return_value=rpc_response(rows.state(templates_sent=["welcome_v2", "follow_up_24h"]))
    )

    state = manager.add_template_sent(
        ids.session_id, "follow_up_24h", workspace_id=ids.workspace_id
    )

    assert api.calls.call_count == 1
    request = route.calls.last.request
    assert request.method == "POST"
    assert_service_key_sent(request)
    assert json_body(request) == {
        "p_session_id": str(ids.session_id),
        "p_workspace_id": str(ids.workspace_id),
        "p_template_name": "follow_up_24h",
    }
    assert state.templates_sent == ["welcome_v2", "follow_up_24h"]


def test_update_captured_data_calls_merge_function_with_the_data_to_merge(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    merged = {"name": "Ana", "budget": 1500.5, "tags": ["vip"], "email": None, "city": "Lisboa"}
    route = api.post("/rpc/agent_engine_merge_captured_data").mock(
        return_value=rpc_response(rows.state(captured_data=merged))
    )

    state = manager.update_captured_data(
        ids.session_id, {"city": "Lisboa"}, workspace_id=ids.workspace_id
    )

    assert api.calls.call_count == 1
    request = route.calls.last.request
    assert request.method == "POST"
    assert_service_key_sent(request)
    assert json_body(request) == {
        "p_session_id": str(ids.session_id),
        "p_workspace_id": str(ids.workspace_id),
        "p_data": {"city": "Lisboa"},
    }
    assert state.captured_data == merged


# Turns


def test_add_turn_calls_add_turn_function_with_every_field_and_parses_the_stored_turn(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    tool_call = {"name": "calendar.find_slots", "input": {"day": "2026-11-25"}, "result": ["10:00"]}
    stored = rows.turn(
        turn_number=5,
        role="assistant",
        content="We have 10:00 free tomorrow.",
        intent_detected="book_demo",
        confidence=87.25,
        tools_called=[tool_call],
        tokens_used=431,
        idempotency_key="wamid.HBgLNTUxMTk5OTk5OTk5FQIAERgSQ0Q",
    )
    route = api.post("/rpc/agent_engine_add_turn").mock(return_value=rpc_response(stored))

    turn = manager.add_turn(
        ids.session_id,
        workspace_id=ids.workspace_id,
        role=TurnRole.ASSISTANT,
        content="We have 10:00 free tomorrow.",
        turn_number=5,
        intent_detected="book_demo",
        confidence=87.25,
        tools_called=[ToolCallRecord.model_validate(tool_call)],
        tokens_used=431,
        idempotency_key="wamid.HBgLNTUxMTk5OTk5OTk5FQIAERgSQ0Q",
    )

    assert api.calls.call_count == 1
    request = route.calls.last.request
    assert request.method == "POST"
    assert query_items(request) == []
    assert_service_key_sent(request)
    assert json_body(request) == {
        "p_session_id": str(ids.session_id),
        "p_workspace_id": str(ids.workspace_id),
        "p_role": "assistant",
        "p_content": "We have 10:00 free tomorrow.",
        "p_turn_number": 5,
        "p_intent_detected": "book_demo",
        "p_confidence": 87.25,
        "p_tools_called": [tool_call],
        "p_tokens_used": 431,
        "p_idempotency_key": "wamid.HBgLNTUxMTk5OTk5OTk5FQIAERgSQ0Q",
        "p_metadata": {},
    }
    assert turn.session_id == ids.session_id
    assert turn.workspace_id == ids.workspace_id
    assert turn.turn_number == 5
    assert turn.role is TurnRole.ASSISTANT
    assert turn.content == "We have 10:00 free tomorrow."
    assert turn.intent_detected == "book_demo"
    assert turn.confidence == 87.25
    assert turn.tools_called == [ToolCallRecord.model_validate(tool_call)]
    assert turn.tokens_used == 431
    assert turn.idempotency_key == "wamid.HBgLNTUxMTk5OTk5OTk5FQIAERgSQ0Q"
    assert turn.created_at == TIMESTAMP_VALUE


def test_add_turn_with_defaults_lets_the_database_number_the_turn(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    route = api.post("/rpc/agent_engine_add_turn").mock(
        return_value=rpc_response(
            rows.turn(
                turn_number=1, content="hi", intent_detected=None, confidence=None, tokens_used=0
            )
        )
    )

    turn = manager.add_turn(
        ids.session_id, workspace_id=ids.workspace_id, role="user", content="hi"
    )

    assert json_body(route.calls.last.request) == {
        "p_session_id": str(ids.session_id),
        "p_workspace_id": str(ids.workspace_id),
        "p_role": "user",
        "p_content": "hi",
        "p_turn_number": None,
        "p_intent_detected": None,
        "p_confidence": None,
        "p_tools_called": [],
        "p_tokens_used": 0,
        "p_idempotency_key": None,
        "p_metadata": {},
    }
    assert turn.id == ids.turn_id
    assert turn.turn_number == 1
    assert turn.confidence is None


def test_add_turn_twice_with_one_idempotency_key_returns_the_stored_turn_both_times(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    # The client only forwards the key: the database function stores the turn once and
    # answers a repeated key with the stored row (proven by the tests/db suite). Here the
    # mock plays that database, so what is checked is that the key travels on both calls and
    # that equal stored rows parse to equal turns.
    stored = rows.turn(
        turn_number=7, id=str(ids.turn_id), idempotency_key="msg-42", content="ok, book it"
    )
    route = api.post("/rpc/agent_engine_add_turn").mock(
        side_effect=[rpc_response(stored), rpc_response(stored)]
    )

    def send() -> AgentTurn:
        return manager.add_turn(
            ids.session_id,
            workspace_id=ids.workspace_id,
            role="user",
            content="ok, book it",
            tokens_used=12,
            idempotency_key="msg-42",
        )

    first, second = send(), send()

    assert api.calls.call_count == 2
    assert [json_body(call.request)["p_idempotency_key"] for call in route.calls] == [
        "msg-42",
        "msg-42",
    ]
    assert first == second
    assert first.id == second.id == ids.turn_id
    assert first.turn_number == 7


def test_get_turns_embeds_turns_ordered_by_number_under_the_session(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    turns = [rows.turn(1), rows.turn(2, role="assistant"), rows.turn(3)]
    route = api.get("/agent_sessions").mock(
        return_value=object_response({"id": str(ids.session_id), "agent_turns": turns})
    )

    result = manager.get_turns(ids.session_id, workspace_id=ids.workspace_id)

    assert api.calls.call_count == 1
    request = route.calls.last.request
    assert request.method == "GET"
    assert query_items(request) == sorted(
        [
            ("select", "id,agent_turns(*)"),
            ("id", f"eq.{ids.session_id}"),
            ("workspace_id", f"eq.{ids.workspace_id}"),
            ("agent_turns.order", "turn_number.asc"),
        ]
    )
    assert request.headers["accept"] == OBJECT_MEDIA_TYPE
    assert_service_key_sent(request)
    assert [turn.turn_number for turn in result] == [1, 2, 3]
    assert [turn.role for turn in result] == [TurnRole.USER, TurnRole.ASSISTANT, TurnRole.USER]
    assert all(isinstance(turn, AgentTurn) for turn in result)
    assert result[0].id == ids.turn_id


def test_get_turns_pages_with_embedded_limit_and_after_turn_filter(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    route = api.get("/agent_sessions").mock(
        return_value=object_response(
            {"id": str(ids.session_id), "agent_turns": [rows.turn(11), rows.turn(12)]}
        )
    )

    result = manager.get_turns(
        ids.session_id, workspace_id=ids.workspace_id, limit=2, after_turn=10
    )

    request = route.calls.last.request
    assert query_items(request) == sorted(
        [
            ("select", "id,agent_turns(*)"),
            ("id", f"eq.{ids.session_id}"),
            ("workspace_id", f"eq.{ids.workspace_id}"),
            ("agent_turns.order", "turn_number.asc"),
            ("agent_turns.limit", "2"),
            ("agent_turns.turn_number", "gt.10"),
        ]
    )
    assert [turn.turn_number for turn in result] == [11, 12]


def test_get_turns_of_a_session_without_turns_is_an_empty_list(
    manager: SessionManager, api: respx.MockRouter, ids: Ids
) -> None:
    api.get("/agent_sessions").mock(
        return_value=object_response({"id": str(ids.session_id), "agent_turns": []})
    )

    assert manager.get_turns(ids.session_id, workspace_id=ids.workspace_id) == []


def test_get_total_tokens_used_reads_only_the_running_total(
    manager: SessionManager, api: respx.MockRouter, ids: Ids
) -> None:
    route = api.get("/agent_sessions").mock(return_value=object_response({"tokens_used": 9876}))

    total = manager.get_total_tokens_used(ids.session_id, workspace_id=ids.workspace_id)

    assert api.calls.call_count == 1
    request = route.calls.last.request
    assert request.method == "GET"
    assert query_items(request) == sorted(
        [
            ("select", "tokens_used"),
            ("id", f"eq.{ids.session_id}"),
            ("workspace_id", f"eq.{ids.workspace_id}"),
        ]
    )
    assert request.headers["accept"] == OBJECT_MEDIA_TYPE
    assert_service_key_sent(request)
    assert total == 9876


def test_get_turn_count_reads_only_the_running_count(
    manager: SessionManager, api: respx.MockRouter, ids: Ids
) -> None:
    route = api.get("/agent_sessions").mock(return_value=object_response({"turn_count": 17}))

    count = manager.get_turn_count(ids.session_id, workspace_id=ids.workspace_id)

    assert api.calls.call_count == 1
    request = route.calls.last.request
    assert request.method == "GET"
    assert query_items(request) == sorted(
        [
            ("select", "turn_count"),
            ("id", f"eq.{ids.session_id}"),
            ("workspace_id", f"eq.{ids.workspace_id}"),
        ]
    )
    assert request.headers["accept"] == OBJECT_MEDIA_TYPE
    assert_service_key_sent(request)
    assert count == 17


# Keys


def test_a_secret_key_is_sent_as_apikey_and_bearer_token(
    api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    route = api.get("/session_state").mock(return_value=object_response(rows.state()))
    secret_client = build_client(SECRET_KEY)
    try:
        SessionManager(secret_client).get_state(ids.session_id, workspace_id=ids.workspace_id)
    finally:
        secret_client.postgrest.session.close()

    request = route.calls.last.request
    assert_service_key_sent(request, SECRET_KEY)
    assert LEGACY_SERVICE_ROLE_KEY not in str(request.headers)


def test_requests_target_the_project_rest_endpoint(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    route = api.get("/session_state").mock(return_value=object_response(rows.state()))

    manager.get_state(ids.session_id, workspace_id=ids.workspace_id)

    url = route.calls.last.request.url
    assert (url.scheme, url.host, url.path) == (
        "https",
        "abcdefghijklmnopqrst.supabase.co",
        "/rest/v1/session_state",
    )


def test_timestamps_with_another_utc_offset_parse_to_the_same_instant(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    api.get("/session_state").mock(
        return_value=object_response(rows.state(updated_at="2026-11-24T07:15:30.5-03:00"))
    )

    state = manager.get_state(ids.session_id, workspace_id=ids.workspace_id)

    assert state.updated_at == datetime(2026, 11, 24, 10, 15, 30, 500000, tzinfo=UTC)
