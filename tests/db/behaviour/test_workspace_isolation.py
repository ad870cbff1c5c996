"""A session is invisible outside its workspace: every method taking a session id says not found.

Each call names a session of workspace A with workspace B's id, using arguments that would
succeed in A (version 1 is A's real version), so a missing workspace filter shows up as a
success or as a change in A.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from agent_engine import (
    AgentSessionWithState,
    AgentTurn,
    SessionManager,
    SessionNotFoundError,
)
from tests.db.behaviour.conftest import AGENT_ID

pytestmark = pytest.mark.db

Call = Callable[[SessionManager, uuid.UUID, uuid.UUID], object]
"""(manager, session id of workspace A, workspace B) -> the call under test."""


ISOLATION_CASES: dict[str, Call] = {
    "get_session": lambda m, s, w: m.get_session(s, workspace_id=w),
    "update_session_with_version": lambda m, s, w: m.update_session_with_version(
        s, 1, workspace_id=w, current_mode="qualifying"
    ),
    "close_session": lambda m, s, w: m.close_session(s, 1, workspace_id=w),
    "handoff_session": lambda m, s, w: m.handoff_session(s, 1, workspace_id=w),
    "pause_session": lambda m, s, w: m.pause_session(s, 1, workspace_id=w),
    "resume_session": lambda m, s, w: m.resume_session(s, 1, workspace_id=w),
    "mutate_session": lambda m, s, w: m.mutate_session(
        s, lambda _: {"current_mode": "qualifying"}, workspace_id=w
    ),
    "get_state": lambda m, s, w: m.get_state(s, workspace_id=w),
    "update_state": lambda m, s, w: m.update_state(
        s, workspace_id=w, captured_data={"stolen": True}
    ),
    "add_intent_seen": lambda m, s, w: m.add_intent_seen(s, "pricing", workspace_id=w),
    "add_template_sent": lambda m, s, w: m.add_template_sent(s, "catalogue", workspace_id=w),
    "update_captured_data": lambda m, s, w: m.update_captured_data(
        s, {"stolen": True}, workspace_id=w
    ),
    "add_turn": lambda m, s, w: m.add_turn(
        s, workspace_id=w, role="user", content="intruder", tokens_used=50
    ),
    "get_turns": lambda m, s, w: m.get_turns(s, workspace_id=w),
    "get_total_tokens_used": lambda m, s, w: m.get_total_tokens_used(s, workspace_id=w),
    "get_turn_count": lambda m, s, w: m.get_turn_count(s, workspace_id=w),
    "get_recent_turns": lambda m, s, w: m.get_recent_turns(s, workspace_id=w, limit=5),
    "pop_turn": lambda m, s, w: m.pop_turn(s, workspace_id=w),
    "clear_turns": lambda m, s, w: m.clear_turns(s, workspace_id=w),
    "delete_session": lambda m, s, w: m.delete_session(s, workspace_id=w),
    "add_turns": lambda m, s, w: m.add_turns(
        s, [{"role": "user", "content": "intruder"}], workspace_id=w
    ),
}


@dataclass(frozen=True)
class Snapshot:
    """Everything the public API shows of a session."""

    session: AgentSessionWithState
    turns: list[AgentTurn]


def snapshot(manager: SessionManager, session_id: uuid.UUID, workspace_id: uuid.UUID) -> Snapshot:
    return Snapshot(
        manager.get_session(session_id, workspace_id=workspace_id),
        manager.get_turns(session_id, workspace_id=workspace_id),
    )


@pytest.fixture
def busy_session(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> AgentSessionWithState:
    """The active session with a turn, an intent, a template and captured data."""
    manager.add_turn(
        active_session.id, workspace_id=workspace_id, role="user", content="hi", tokens_used=7
    )
    manager.add_intent_seen(active_session.id, "greeting", workspace_id=workspace_id)
    manager.add_template_sent(active_session.id, "welcome", workspace_id=workspace_id)
    manager.update_captured_data(active_session.id, {"name": "Ana"}, workspace_id=workspace_id)
    return manager.get_session(active_session.id, workspace_id=workspace_id)


def test_isolation_cases_cover_every_public_method_taking_a_session_id() -> None:
    taking_a_session_id = {
        name
        for name, method in inspect.getmembers(SessionManager, inspect.isfunction)
        if not name.startswith("_") and "session_id" in inspect.signature(method).parameters
    }

    assert taking_a_session_id == set(ISOLATION_CASES)


@pytest.mark.parametrize("method", sorted(ISOLATION_CASES))
def test_session_of_workspace_a_is_not_found_from_workspace_b_and_a_is_unchanged(
    manager: SessionManager,
    busy_session: AgentSessionWithState,
    workspace_id: uuid.UUID,
    other_workspace_id: uuid.UUID,
    method: str,
) -> None:
    before = snapshot(manager, busy_session.id, workspace_id)

    with pytest.raises(SessionNotFoundError) as raised:
        ISOLATION_CASES[method](manager, busy_session.id, other_workspace_id)

    assert raised.value.workspace_id == other_workspace_id
    assert raised.value.session_id == busy_session.id
    assert raised.value.retryable is False
    assert snapshot(manager, busy_session.id, workspace_id) == before


def test_get_session_by_conversation_from_another_workspace_is_none(
    manager: SessionManager,
    active_session: AgentSessionWithState,
    conversation_id: uuid.UUID,
    other_workspace_id: uuid.UUID,
) -> None:
    assert (
        manager.get_session_by_conversation(
            conversation_id, AGENT_ID, workspace_id=other_workspace_id
        )
        is None
    )


def test_the_same_conversation_in_another_workspace_gets_its_own_session(
    manager: SessionManager,
    active_session: AgentSessionWithState,
    conversation_id: uuid.UUID,
    other_workspace_id: uuid.UUID,
) -> None:
    other = manager.get_or_create_session(
        workspace_id=other_workspace_id, agent_id=AGENT_ID, conversation_id=conversation_id
    )

    assert other.id != active_session.id
    assert other.workspace_id == other_workspace_id
