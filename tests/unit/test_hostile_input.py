"""Hostile and sloppy input on the Supabase manager: refused locally, naming the argument.

The cases live in tests/hostile_input.py, shared with the direct transport's suite; here
respx answers anything with 500, so a case that reached the wire would show as a call.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx
from supabase import AsyncClient, AsyncClientOptions

from agent_engine import SessionManager, ToolCallRecord
from agent_engine._models import IDENTIFIER_MAX_LENGTH
from tests.hostile_input import HOSTILE_INPUT
from tests.unit.conftest import AGENT_ID, PROJECT_URL, Ids, Rows, json_body, rpc_response


@pytest.mark.parametrize("case", sorted(HOSTILE_INPUT))
def test_hostile_input_is_refused_naming_the_argument_before_any_request(
    manager: SessionManager, offline: respx.MockRouter, ids: Ids, case: str
) -> None:
    call, argument = HOSTILE_INPUT[case]

    with pytest.raises(ValueError, match=argument):
        call(manager, ids.session_id, ids.workspace_id)

    assert offline.calls.call_count == 0


@pytest.mark.parametrize(
    "client",
    [None, PROJECT_URL, "postgresql://postgres@localhost/postgres", object(), 42],
    ids=["None", "a project URL", "a DSN", "an object", "a number"],
)
def test_a_manager_is_refused_at_construction_without_a_client_or_transport(client: Any) -> None:
    with pytest.raises(ValueError, match="client"):
        SessionManager(client)


def test_a_manager_refuses_an_async_supabase_client_at_construction() -> None:
    async_client = AsyncClient(PROJECT_URL, "sb_secret_x" * 3, AsyncClientOptions())
    with pytest.raises(ValueError, match="AsyncClient"):
        SessionManager(async_client)  # type: ignore[arg-type]


def test_a_manager_refuses_a_registry_that_is_not_an_agent_registry(
    shared_client: Any,
) -> None:
    with pytest.raises(ValueError, match="registry"):
        SessionManager(shared_client, registry={"sales": "config"})  # type: ignore[arg-type]


def test_a_tool_call_record_with_an_unknown_key_is_refused_when_built() -> None:
    with pytest.raises(ValueError, match="args"):
        ToolCallRecord(name="lookup", args={"q": "boots"})  # type: ignore[call-arg]


def test_an_idempotency_key_is_sent_exactly_as_given_surrounding_spaces_included(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    key = "  wamid.HBgL \t"
    route = api.post("/rpc/agent_engine_add_turn").mock(
        return_value=rpc_response(rows.turn(idempotency_key=key))
    )

    turn = manager.add_turn(
        ids.session_id,
        workspace_id=ids.workspace_id,
        role="user",
        content="hi",
        idempotency_key=key,
    )

    assert json_body(route.calls.last.request)["p_idempotency_key"] == key
    assert turn.idempotency_key == key


def test_an_identifier_of_the_maximum_length_is_accepted(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    key = "k" * IDENTIFIER_MAX_LENGTH
    route = api.post("/rpc/agent_engine_add_turn").mock(
        return_value=rpc_response(rows.turn(idempotency_key=key))
    )

    manager.add_turn(
        ids.session_id,
        workspace_id=ids.workspace_id,
        role="user",
        content="hi",
        idempotency_key=key,
    )

    assert json_body(route.calls.last.request)["p_idempotency_key"] == key


def test_templates_given_whole_keep_set_semantics_first_sighting_first(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    route = api.patch("/session_state").mock(
        return_value=httpx.Response(200, json=rows.state(templates_sent=["welcome", "promo"]))
    )

    manager.update_state(
        ids.session_id,
        workspace_id=ids.workspace_id,
        templates_sent=["welcome", "promo", "welcome", " promo "],
    )

    assert json_body(route.calls.last.request) == {"templates_sent": ["welcome", "promo"]}


def test_initial_templates_keep_set_semantics_too(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    route = api.post("/rpc/agent_engine_create_session").mock(
        return_value=rpc_response(rows.session_with_state())
    )

    manager.create_session(
        workspace_id=ids.workspace_id,
        agent_id=AGENT_ID,
        conversation_id=ids.conversation_id,
        initial_mode="greeting",
        initial_state={"templates_sent": ["welcome", "welcome"]},
    )

    assert json_body(route.calls.last.request)["p_templates_sent"] == ["welcome"]


def test_a_tool_call_record_is_accepted_as_input_like_its_mapping(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    route = api.post("/rpc/agent_engine_add_turn").mock(return_value=rpc_response(rows.turn()))

    manager.add_turn(
        ids.session_id,
        workspace_id=ids.workspace_id,
        role="tool",
        content="found 3 pairs",
        tools_called=[ToolCallRecord(name="lookup", input={"q": "boots"}), {"name": "log"}],
    )

    assert json_body(route.calls.last.request)["p_tools_called"] == [
        {"name": "lookup", "input": {"q": "boots"}, "result": None},
        {"name": "log", "input": None, "result": None},
    ]
