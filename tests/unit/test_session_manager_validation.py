"""Invalid input raises ValueError (pydantic's ValidationError is one) and sends no request."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import respx
from pydantic import ValidationError

from agent_engine import AgentNotFoundError, SessionManager
from tests.unit.conftest import AGENT_ID, Ids

ManagerCall = Callable[[SessionManager, Ids], object]

NOT_A_UUID = "session-123"


def _add_turn(**overrides: Any) -> ManagerCall:
    def call(manager: SessionManager, ids: Ids) -> object:
        arguments: dict[str, Any] = {"role": "user", "content": "hello", **overrides}
        return manager.add_turn(ids.session_id, workspace_id=ids.workspace_id, **arguments)

    return call


def _update_session(expected_version: int = 3, **changes: Any) -> ManagerCall:
    def call(manager: SessionManager, ids: Ids) -> object:
        return manager.update_session_with_version(
            ids.session_id, expected_version, workspace_id=ids.workspace_id, **changes
        )

    return call


def _update_state(**fields: Any) -> ManagerCall:
    def call(manager: SessionManager, ids: Ids) -> object:
        return manager.update_state(ids.session_id, workspace_id=ids.workspace_id, **fields)

    return call


def _merge_captured_data(data: Any) -> ManagerCall:
    def call(manager: SessionManager, ids: Ids) -> object:
        return manager.update_captured_data(ids.session_id, data, workspace_id=ids.workspace_id)

    return call


def _create_session(**overrides: Any) -> ManagerCall:
    def call(manager: SessionManager, ids: Ids) -> object:
        arguments: dict[str, Any] = {
            "workspace_id": ids.workspace_id,
            "agent_id": AGENT_ID,
            "conversation_id": ids.conversation_id,
            "initial_mode": "greeting",
            **overrides,
        }
        return manager.create_session(**arguments)

    return call


INVALID_CALLS: dict[str, ManagerCall] = {
    # ids
    "session_id not a uuid": lambda manager, ids: manager.get_session(
        NOT_A_UUID, workspace_id=ids.workspace_id
    ),
    "workspace_id not a uuid": lambda manager, ids: manager.get_state(
        ids.session_id, workspace_id="acme"
    ),
    "empty workspace_id": lambda manager, ids: manager.get_turns(ids.session_id, workspace_id=""),
    "conversation_id not a uuid": lambda manager, ids: manager.get_session_by_conversation(
        "whatsapp:+5511999999999", AGENT_ID, workspace_id=ids.workspace_id
    ),
    "empty agent_id": lambda manager, ids: manager.get_session_by_conversation(
        ids.conversation_id, " ", workspace_id=ids.workspace_id
    ),
    "add_turn session_id not a uuid": lambda manager, ids: manager.add_turn(
        NOT_A_UUID, workspace_id=ids.workspace_id, role="user", content="hi"
    ),
    "add_intent_seen workspace_id not a uuid": lambda manager, ids: manager.add_intent_seen(
        ids.session_id, "pricing", workspace_id="12345"
    ),
    "guarded update session_id not a uuid": lambda manager, ids: manager.close_session(
        NOT_A_UUID, 3, workspace_id=ids.workspace_id
    ),
    "create_session workspace_id not a uuid": _create_session(workspace_id="acme"),
    "create_session conversation_id not a uuid": _create_session(conversation_id="chat-1"),
    "create_session contact_id not a uuid": _create_session(contact_id="contact-1"),
    "create_session empty agent_id": _create_session(agent_id=""),
    "create_session unknown initial_state field": _create_session(initial_state={"notes": "vip"}),
    "create_session without registry nor initial_mode": _create_session(initial_mode=None),
    # turns
    "negative tokens_used": _add_turn(tokens_used=-1),
    "confidence 101": _add_turn(confidence=101),
    "confidence -0.5": _add_turn(confidence=-0.5),
    "confidence NaN": _add_turn(confidence=float("nan")),
    "unknown role": _add_turn(role="robot"),
    "empty content": _add_turn(content=""),
    "whitespace content": _add_turn(content="   "),
    "newline-and-tab content": _add_turn(content="\n\t"),
    "turn_number 0": _add_turn(turn_number=0),
    "turn_number beyond a Postgres integer": _add_turn(turn_number=2**31),
    "tokens_used beyond a Postgres integer": _add_turn(tokens_used=2**31),
    "empty intent_detected": _add_turn(intent_detected=" "),
    "tool call without name": _add_turn(tools_called=[{"name": "", "input": {}}]),
    "metadata a list": _add_turn(metadata=[("channel", "whatsapp")]),
    "metadata a string": _add_turn(metadata="channel=whatsapp"),
    "metadata with NaN": _add_turn(metadata={"score": float("nan")}),
    "metadata with a non-string key": _add_turn(metadata={1: "one"}),
    "metadata with U+0000 in a key": _add_turn(metadata={"a\x00b": 1}),
    "get_turns limit 0": lambda manager, ids: manager.get_turns(
        ids.session_id, workspace_id=ids.workspace_id, limit=0
    ),
    "get_turns negative after_turn": lambda manager, ids: manager.get_turns(
        ids.session_id, workspace_id=ids.workspace_id, after_turn=-1
    ),
    # state
    "empty intent": lambda manager, ids: manager.add_intent_seen(
        ids.session_id, "", workspace_id=ids.workspace_id
    ),
    "whitespace intent": lambda manager, ids: manager.add_intent_seen(
        ids.session_id, "  \t", workspace_id=ids.workspace_id
    ),
    "empty template name": lambda manager, ids: manager.add_template_sent(
        ids.session_id, "", workspace_id=ids.workspace_id
    ),
    "whitespace template name": lambda manager, ids: manager.add_template_sent(
        ids.session_id, "   ", workspace_id=ids.workspace_id
    ),
    "update_state without fields": _update_state(),
    "update_state unknown field": _update_state(notes="vip"),
    "update_state empty template name": _update_state(templates_sent=["welcome_v2", " "]),
    "captured data None": _merge_captured_data(None),
    "captured data a number": _merge_captured_data(42),
    "captured data a list": _merge_captured_data([1, 2]),
    "captured data a list of pairs": _merge_captured_data([("name", "Ana")]),
    "captured data a string": _merge_captured_data("name=Ana"),
    "captured data with an object value": _merge_captured_data({"when": object()}),
    "captured data with a datetime value": _merge_captured_data(
        {"when": datetime(2026, 11, 24, tzinfo=UTC)}
    ),
    "captured data with a set value": _merge_captured_data({"tags": {"vip"}}),
    "captured data with a non-string key": _merge_captured_data({1: "one"}),
    "captured data with NaN": _merge_captured_data({"score": float("nan")}),
    # guarded update
    "expected_version 0": _update_session(0, status="closed"),
    "expected_version negative": _update_session(-1, status="closed"),
    "no field to change": _update_session(),
    "unknown status": _update_session(status="archived"),
    "empty mode": _update_session(current_mode=" "),
}


@pytest.mark.parametrize("call", INVALID_CALLS.values(), ids=INVALID_CALLS.keys())
def test_invalid_input_raises_value_error_without_any_request(
    manager: SessionManager, offline: respx.MockRouter, ids: Ids, call: ManagerCall
) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (the contract is ValueError, message aside)
        call(manager, ids)

    assert offline.calls.call_count == 0


def test_a_bad_uuid_is_reported_by_pydantic_naming_the_field(
    manager: SessionManager, offline: respx.MockRouter, ids: Ids
) -> None:
    with pytest.raises(ValidationError, match="session_id"):
        manager.get_session(NOT_A_UUID, workspace_id=ids.workspace_id)

    assert offline.calls.call_count == 0


def test_expected_version_must_be_an_int_not_a_bool(
    manager: SessionManager, offline: respx.MockRouter, ids: Ids
) -> None:
    with pytest.raises(ValidationError, match="expected_version"):
        manager.close_session(ids.session_id, True, workspace_id=ids.workspace_id)

    assert offline.calls.call_count == 0


# With a registry


def test_with_registry_creating_a_session_for_an_unregistered_agent_raises_agent_not_found(
    registry_manager: SessionManager, offline: respx.MockRouter, ids: Ids
) -> None:
    with pytest.raises(AgentNotFoundError) as caught:
        registry_manager.create_session(
            workspace_id=ids.workspace_id,
            agent_id="ghost-bot",
            conversation_id=ids.conversation_id,
        )

    assert caught.value.agent_id == "ghost-bot"
    assert offline.calls.call_count == 0


def test_with_registry_get_or_create_for_an_unregistered_agent_raises_agent_not_found(
    registry_manager: SessionManager, offline: respx.MockRouter, ids: Ids
) -> None:
    with pytest.raises(AgentNotFoundError):
        registry_manager.get_or_create_session(
            workspace_id=ids.workspace_id,
            agent_id="ghost-bot",
            conversation_id=ids.conversation_id,
        )

    assert offline.calls.call_count == 0


@pytest.mark.parametrize("method", ["create_session", "get_or_create_session"])
def test_with_registry_an_initial_mode_that_is_not_a_state_of_the_agent_is_refused(
    registry_manager: SessionManager, offline: respx.MockRouter, ids: Ids, method: str
) -> None:
    with pytest.raises(ValueError, match="pitching"):
        getattr(registry_manager, method)(
            workspace_id=ids.workspace_id,
            agent_id=AGENT_ID,
            conversation_id=ids.conversation_id,
            initial_mode="pitching",  # a state of the other agent, not of this one
        )

    assert offline.calls.call_count == 0
