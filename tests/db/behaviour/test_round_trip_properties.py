"""Property: whatever the direct manager accepts, Postgres stores and returns exactly;
whatever it refuses is refused before any statement.

Hypothesis draws text and JSON with the parts Postgres cannot hold (tests/strategies.py).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings

from agent_engine import SessionManager
from tests.managers import SpyTransport
from tests.strategies import json_values, texts

pytestmark = pytest.mark.db

PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    # The session is shared by the examples on purpose: each example adds to it.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture
def session_id(plain_spy_manager: SessionManager, workspace_id: uuid.UUID) -> uuid.UUID:
    return plain_spy_manager.create_session(
        workspace_id=workspace_id,
        agent_id="sales-bot",
        conversation_id=uuid.uuid4(),
        initial_mode="greeting",
    ).id


def _refused_or_none(call: Any) -> ValueError | None:
    try:
        call()
    except ValueError as error:
        return error
    return None


QUOTING_HAZARDS = "it's 100%s off; %% %(name)s %d \\' \\\\ '); drop table agent_turns; --"
"""Text the direct transport must quote, never read: a quote, backslashes (libpq then writes
an E'' literal), and the %-directives of the template its message is formatted with."""


@PROPERTY_SETTINGS
@given(content=texts, key=texts)
@example(content=QUOTING_HAZARDS, key=QUOTING_HAZARDS)
def test_turn_text_is_stored_exactly_or_refused_before_any_statement(
    plain_spy_manager: SessionManager,
    spy: SpyTransport,
    session_id: uuid.UUID,
    workspace_id: uuid.UUID,
    content: str,
    key: str,
) -> None:
    spy.requests.clear()
    key = f"{uuid.uuid4()}{key}"  # unique per example, the drawn part kept exactly
    added: list[Any] = []

    refused = _refused_or_none(
        lambda: added.append(
            plain_spy_manager.add_turn(
                session_id,
                workspace_id=workspace_id,
                role="user",
                content=content,
                intent_detected=content.strip()[:255] or None,
                idempotency_key=key,
            )
        )
    )

    if refused is not None:
        assert spy.requests == []
        return
    (turn,) = added
    stored = plain_spy_manager.get_turns(
        session_id, workspace_id=workspace_id, after_turn=turn.turn_number - 1, limit=1
    )
    assert [(t.content, t.idempotency_key, t.intent_detected) for t in stored] == [
        (content, key, turn.intent_detected)
    ]
    assert turn.content == content


@PROPERTY_SETTINGS
@given(value=json_values, name=texts)
def test_captured_json_is_stored_exactly_or_refused_before_any_statement(
    plain_spy_manager: SessionManager,
    spy: SpyTransport,
    session_id: uuid.UUID,
    workspace_id: uuid.UUID,
    value: Any,
    name: str,
) -> None:
    spy.requests.clear()
    data = {name: value}

    refused = _refused_or_none(
        lambda: plain_spy_manager.update_captured_data(session_id, data, workspace_id=workspace_id)
    )

    if refused is not None:
        assert spy.requests == []
        return
    stored = plain_spy_manager.get_state(session_id, workspace_id=workspace_id).captured_data
    assert stored[name] == value
    assert _same_json_types(stored[name], value)


@PROPERTY_SETTINGS
@given(tool_input=json_values, tool_result=json_values)
def test_tool_call_json_is_stored_exactly_or_refused_before_any_statement(
    plain_spy_manager: SessionManager,
    spy: SpyTransport,
    session_id: uuid.UUID,
    workspace_id: uuid.UUID,
    tool_input: Any,
    tool_result: Any,
) -> None:
    spy.requests.clear()
    added: list[Any] = []
    tool = {"name": "lookup", "input": tool_input, "result": tool_result}

    refused = _refused_or_none(
        lambda: added.append(
            plain_spy_manager.add_turn(
                session_id,
                workspace_id=workspace_id,
                role="tool",
                content="ok",
                tools_called=[tool],
            )
        )
    )

    if refused is not None:
        assert spy.requests == []
        return
    (turn,) = added
    (call,) = turn.tools_called
    assert (call.input, call.result) == (tool_input, tool_result)
    assert _same_json_types(call.input, tool_input)
    assert _same_json_types(call.result, tool_result)


def _same_json_types(stored: Any, given: Any) -> bool:
    """Equal JSON kinds all the way down (a float may come back as a float only)."""
    if isinstance(given, bool) or given is None or isinstance(given, str):
        return type(stored) is type(given)
    if isinstance(given, float):
        return isinstance(stored, float)
    if isinstance(given, int):
        return type(stored) is int
    if isinstance(given, list):
        return isinstance(stored, list) and all(map(_same_json_types, stored, given))
    return isinstance(stored, dict) and all(
        _same_json_types(stored[k], v) for k, v in given.items()
    )
