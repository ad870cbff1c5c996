"""Property: whatever the Supabase manager accepts goes on the wire exactly and comes back
exactly; whatever it refuses sends nothing.

respx plays a PostgREST that stores what it is sent: its answer carries the request's own
values, so the test covers the encoding of the request and the parsing of the answer.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx
from hypothesis import HealthCheck, given, settings

from agent_engine import SessionManager
from tests.strategies import json_values, texts
from tests.unit.conftest import REST_URL, Ids, Rows, rpc_response

PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def echo(rows: Rows) -> Any:
    """PostgREST stand-in: add_turn and merge answer with the values they were sent."""
    with respx.mock(base_url=REST_URL, assert_all_called=False) as router:

        def add_turn(request: httpx.Request) -> httpx.Response:
            body = json.loads(request.content)
            return rpc_response(
                rows.turn(
                    content=body["p_content"],
                    idempotency_key=body["p_idempotency_key"],
                    tools_called=body["p_tools_called"],
                )
            )

        def merge(request: httpx.Request) -> httpx.Response:
            return rpc_response(rows.state(captured_data=json.loads(request.content)["p_data"]))

        router.post("/rpc/agent_engine_add_turn").mock(side_effect=add_turn)
        router.post("/rpc/agent_engine_merge_captured_data").mock(side_effect=merge)
        yield router


@PROPERTY_SETTINGS
@given(content=texts, key=texts, tool_input=json_values)
def test_turn_values_round_trip_exactly_or_are_refused_before_any_request(
    manager: SessionManager,
    echo: respx.MockRouter,
    ids: Ids,
    content: str,
    key: str,
    tool_input: Any,
) -> None:
    echo.reset()
    try:
        turn = manager.add_turn(
            ids.session_id,
            workspace_id=ids.workspace_id,
            role="user",
            content=content,
            idempotency_key=key,
            tools_called=[{"name": "lookup", "input": tool_input}],
        )
    except ValueError:
        assert echo.calls.call_count == 0
        return
    assert echo.calls.call_count == 1
    assert (turn.content, turn.idempotency_key) == (content, key)
    assert turn.tools_called[0].input == tool_input


@PROPERTY_SETTINGS
@given(name=texts, value=json_values)
def test_captured_data_round_trips_exactly_or_is_refused_before_any_request(
    manager: SessionManager, echo: respx.MockRouter, ids: Ids, name: str, value: Any
) -> None:
    echo.reset()
    try:
        state = manager.update_captured_data(
            ids.session_id, {name: value}, workspace_id=ids.workspace_id
        )
    except ValueError:
        assert echo.calls.call_count == 0
        return
    assert echo.calls.call_count == 1
    assert state.captured_data == {name: value}
