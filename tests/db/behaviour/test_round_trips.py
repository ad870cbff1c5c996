"""One round trip per operation: each call sends one request (two on a guarded no-match)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

import pytest

from agent_engine import (
    AgentRegistry,
    AgentSessionWithState,
    Failure,
    SessionError,
    SessionManager,
    VersionConflictError,
)
from agent_engine._transport import JSON, Request
from tests.db.behaviour.conftest import AGENT_ID
from tests.managers import Managers, SpyTransport

pytestmark = pytest.mark.db

Call = Callable[[SessionManager, AgentSessionWithState], object]
"""(manager, an active session at version 1) -> the call under test."""

ONE_ROUND_TRIP: dict[str, Call] = {
    "create_session": lambda m, s: m.create_session(
        workspace_id=s.workspace_id, agent_id=AGENT_ID, conversation_id=uuid.uuid4()
    ),
    "get_or_create_session (existing)": lambda m, s: m.get_or_create_session(
        workspace_id=s.workspace_id, agent_id=AGENT_ID, conversation_id=s.conversation_id
    ),
    "get_or_create_session (new)": lambda m, s: m.get_or_create_session(
        workspace_id=s.workspace_id, agent_id=AGENT_ID, conversation_id=uuid.uuid4()
    ),
    "get_session": lambda m, s: m.get_session(s.id, workspace_id=s.workspace_id),
    "get_session_by_conversation": lambda m, s: m.get_session_by_conversation(
        s.conversation_id, AGENT_ID, workspace_id=s.workspace_id
    ),
    "update_session_with_version": lambda m, s: m.update_session_with_version(
        s.id, 1, workspace_id=s.workspace_id, current_mode="qualifying"
    ),
    "close_session": lambda m, s: m.close_session(s.id, 1, workspace_id=s.workspace_id),
    "handoff_session": lambda m, s: m.handoff_session(s.id, 1, workspace_id=s.workspace_id),
    "pause_session": lambda m, s: m.pause_session(s.id, 1, workspace_id=s.workspace_id),
    "resume_session": lambda m, s: m.resume_session(s.id, 1, workspace_id=s.workspace_id),
    "get_state": lambda m, s: m.get_state(s.id, workspace_id=s.workspace_id),
    "update_state": lambda m, s: m.update_state(
        s.id, workspace_id=s.workspace_id, captured_data={"a": 1}
    ),
    "add_intent_seen": lambda m, s: m.add_intent_seen(s.id, "x", workspace_id=s.workspace_id),
    "add_template_sent": lambda m, s: m.add_template_sent(s.id, "t", workspace_id=s.workspace_id),
    "update_captured_data": lambda m, s: m.update_captured_data(
        s.id, {"a": 1}, workspace_id=s.workspace_id
    ),
    "add_turn": lambda m, s: m.add_turn(
        s.id, workspace_id=s.workspace_id, role="user", content="hi", tokens_used=3
    ),
    "get_turns": lambda m, s: m.get_turns(s.id, workspace_id=s.workspace_id, limit=5),
    "get_total_tokens_used": lambda m, s: m.get_total_tokens_used(
        s.id, workspace_id=s.workspace_id
    ),
    "get_turn_count": lambda m, s: m.get_turn_count(s.id, workspace_id=s.workspace_id),
    "add_turns": lambda m, s: m.add_turns(
        s.id,
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        workspace_id=s.workspace_id,
    ),
    "get_recent_turns": lambda m, s: m.get_recent_turns(s.id, workspace_id=s.workspace_id, limit=5),
    "pop_turn": lambda m, s: m.pop_turn(s.id, workspace_id=s.workspace_id),
    "clear_turns": lambda m, s: m.clear_turns(s.id, workspace_id=s.workspace_id),
    "list_sessions": lambda m, s: m.list_sessions(workspace_id=s.workspace_id, limit=5),
    "delete_session": lambda m, s: m.delete_session(s.id, workspace_id=s.workspace_id),
    "delete_contact_data": lambda m, s: m.delete_contact_data(
        uuid.uuid4(), workspace_id=s.workspace_id
    ),
    "purge_sessions (one short batch)": lambda m, s: m.purge_sessions(
        older_than=timedelta(days=1), workspace_id=s.workspace_id
    ),
}


@pytest.fixture
def spied_session(
    spy_manager: SessionManager, spy: SpyTransport, workspace_id: uuid.UUID
) -> AgentSessionWithState:
    created = spy_manager.create_session(
        workspace_id=workspace_id, agent_id=AGENT_ID, conversation_id=uuid.uuid4()
    )
    spy.requests.clear()
    return created


@pytest.mark.parametrize("operation", sorted(ONE_ROUND_TRIP))
def test_each_operation_takes_one_round_trip(
    spy_manager: SessionManager,
    spy: SpyTransport,
    spied_session: AgentSessionWithState,
    operation: str,
) -> None:
    ONE_ROUND_TRIP[operation](spy_manager, spied_session)

    assert len(spy.requests) == 1


INTERNAL_ERROR = Failure(code="XX000", message="internal error")
"""A failure no operation gives a meaning of its own."""


class _FailingTransport:
    def execute(self, request: Request) -> JSON | Failure:
        return INTERNAL_ERROR

    def close(self) -> None:
        """Nothing to release."""


class _AsyncFailingTransport:
    async def execute(self, request: Request) -> JSON | Failure:
        return INTERNAL_ERROR

    async def aclose(self) -> None:
        """Nothing to release."""


@pytest.mark.parametrize("operation", sorted(ONE_ROUND_TRIP))
def test_each_operation_s_errors_carry_its_public_method_s_name(
    managers: Managers,
    registry: AgentRegistry,
    spied_session: AgentSessionWithState,
    operation: str,
) -> None:
    method = operation.split(" ")[0]
    failing = _AsyncFailingTransport() if managers.is_async else _FailingTransport()
    manager = managers.over(cast(Any, failing), registry=registry)

    with pytest.raises(SessionError) as caught:
        ONE_ROUND_TRIP[operation](manager, spied_session)

    assert str(caught.value).startswith(f"{method} failed for ")
    assert caught.value.code == INTERNAL_ERROR.code


def test_guarded_update_that_matches_nothing_takes_a_second_read_to_say_why(
    spy_manager: SessionManager, spy: SpyTransport, spied_session: AgentSessionWithState
) -> None:
    with pytest.raises(VersionConflictError):
        spy_manager.pause_session(spied_session.id, 5, workspace_id=spied_session.workspace_id)

    assert len(spy.requests) == 2


def test_mutate_session_without_conflict_reads_once_and_writes_once(
    spy_manager: SessionManager, spy: SpyTransport, spied_session: AgentSessionWithState
) -> None:
    spy_manager.mutate_session(
        spied_session.id,
        lambda _: {"current_mode": "qualifying"},
        workspace_id=spied_session.workspace_id,
    )

    assert len(spy.requests) == 2
