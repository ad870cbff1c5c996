"""Bad input is refused before any statement runs: the spying transport records nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from agent_engine import AgentNotFoundError, SessionManager
from tests.db.behaviour.conftest import AGENT_ID
from tests.hostile_input import HOSTILE_INPUT
from tests.managers import SpyTransport

pytestmark = pytest.mark.db

Call = Callable[[SessionManager, uuid.UUID, uuid.UUID], object]
"""(manager, a session id, its workspace) -> the call under test."""

BAD_UUID = "not-a-uuid"


def _turn(**overrides: Any) -> Call:
    arguments: dict[str, Any] = {"role": "user", "content": "hello", **overrides}
    return lambda m, s, w: m.add_turn(s, workspace_id=w, **arguments)


BAD_INPUT: dict[str, tuple[Call, type[Exception], str]] = {
    "bad session uuid": (
        lambda m, s, w: m.get_session(BAD_UUID, workspace_id=w),
        ValidationError,
        "session_id",
    ),
    "bad workspace uuid": (
        lambda m, s, w: m.add_intent_seen(s, "pricing", workspace_id=BAD_UUID),
        ValidationError,
        "workspace_id",
    ),
    "bad conversation uuid on create": (
        lambda m, s, w: m.create_session(
            workspace_id=w, agent_id=AGENT_ID, conversation_id=BAD_UUID
        ),
        ValidationError,
        "conversation_id",
    ),
    "bad contact uuid on get_or_create": (
        lambda m, s, w: m.get_or_create_session(
            workspace_id=w, agent_id=AGENT_ID, conversation_id=uuid.uuid4(), contact_id=BAD_UUID
        ),
        ValidationError,
        "contact_id",
    ),
    "bad conversation uuid on lookup": (
        lambda m, s, w: m.get_session_by_conversation(BAD_UUID, AGENT_ID, workspace_id=w),
        ValidationError,
        "conversation_id",
    ),
    "unknown agent": (
        lambda m, s, w: m.get_or_create_session(
            workspace_id=w, agent_id="nobody", conversation_id=uuid.uuid4()
        ),
        AgentNotFoundError,
        "nobody",
    ),
    "initial mode that is not a state of the agent": (
        lambda m, s, w: m.create_session(
            workspace_id=w, agent_id=AGENT_ID, conversation_id=uuid.uuid4(), initial_mode="solving"
        ),
        ValueError,
        "initial_mode",
    ),
    "negative tokens": (_turn(tokens_used=-1), ValidationError, "tokens_used"),
    "confidence 101": (_turn(confidence=101), ValidationError, "confidence"),
    "negative confidence": (_turn(confidence=-0.5), ValidationError, "confidence"),
    "unknown role": (_turn(role="robot"), ValidationError, "role"),
    "empty content": (_turn(content=""), ValidationError, "content"),
    "blank content": (_turn(content=" \n\t "), ValidationError, "content"),
    "turn number 0": (_turn(turn_number=0), ValidationError, "turn_number"),
    "blank idempotency key": (_turn(idempotency_key="  "), ValidationError, "idempotency_key"),
    "unknown status": (
        lambda m, s, w: m.update_session_with_version(s, 1, workspace_id=w, status="sleeping"),
        ValidationError,
        "status",
    ),
    "expected version 0": (
        lambda m, s, w: m.close_session(s, 0, workspace_id=w),
        ValueError,
        "expected_version",
    ),
    "guarded update without fields": (
        lambda m, s, w: m.update_session_with_version(s, 1, workspace_id=w),
        ValueError,
        "at least one field",
    ),
    "blank intent": (
        lambda m, s, w: m.add_intent_seen(s, "   ", workspace_id=w),
        ValueError,
        "intent",
    ),
    "empty template name": (
        lambda m, s, w: m.add_template_sent(s, "", workspace_id=w),
        ValueError,
        "template_name",
    ),
    "captured data not a mapping": (
        lambda m, s, w: m.update_captured_data(s, ["size", 42], workspace_id=w),  # type: ignore[arg-type]
        ValueError,
        "mapping",
    ),
    "update_state without fields": (
        lambda m, s, w: m.update_state(s, workspace_id=w),
        ValueError,
        "at least one",
    ),
    "update_state with an unknown field": (
        lambda m, s, w: m.update_state(s, workspace_id=w, notes="x"),
        ValidationError,
        "notes",
    ),
    "get_turns limit 0": (
        lambda m, s, w: m.get_turns(s, workspace_id=w, limit=0),
        ValidationError,
        "limit",
    ),
    "get_turns negative after_turn": (
        lambda m, s, w: m.get_turns(s, workspace_id=w, after_turn=-1),
        ValidationError,
        "after_turn",
    ),
    "mutate_session with 0 attempts": (
        lambda m, s, w: m.mutate_session(s, lambda _: None, workspace_id=w, attempts=0),
        ValueError,
        "attempts",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_rejected_before_any_statement_runs(
    spy_manager: SessionManager, spy: SpyTransport, workspace_id: uuid.UUID, case: str
) -> None:
    call, error, match = BAD_INPUT[case]

    with pytest.raises(error, match=match):
        call(spy_manager, uuid.uuid4(), workspace_id)

    assert spy.requests == []


def test_expected_version_that_is_not_an_int_is_rejected_before_any_statement_runs(
    spy_manager: SessionManager, spy: SpyTransport, workspace_id: uuid.UUID
) -> None:
    with pytest.raises(ValidationError, match="expected_version"):
        spy_manager.pause_session(uuid.uuid4(), "1", workspace_id=workspace_id)  # type: ignore[arg-type]

    assert spy.requests == []


@pytest.mark.parametrize("case", sorted(HOSTILE_INPUT))
def test_hostile_input_is_refused_naming_the_argument_before_any_statement_runs(
    plain_spy_manager: SessionManager, spy: SpyTransport, workspace_id: uuid.UUID, case: str
) -> None:
    call, argument = HOSTILE_INPUT[case]

    with pytest.raises(ValueError, match=argument):
        call(plain_spy_manager, uuid.uuid4(), workspace_id)

    assert spy.requests == []
