"""Sessions through the public API: create, read, get-or-create, guarded updates, lifecycle."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.rows import DictRow

from agent_engine import (
    AgentSessionWithState,
    InvalidTransitionError,
    SessionAlreadyActiveError,
    SessionManager,
    SessionStatus,
    VersionConflictError,
)
from agent_engine._schema import GET_OR_CREATE_SESSION_FUNCTION
from tests.db.behaviour.conftest import (
    AGENT_ID,
    OTHER_AGENT_ID,
    WAIT_SECONDS,
    WORKERS,
    start_together,
    wait_for_lock_waiters,
)
from tests.db.conftest import Database
from tests.managers import SpyTransport

pytestmark = pytest.mark.db


# ---------------------------------------------------------------------------
# create / get / get_session_by_conversation / get_or_create
# ---------------------------------------------------------------------------


def test_create_session_starts_active_at_version_1_in_the_agents_initial_state(
    manager: SessionManager, workspace_id: uuid.UUID, conversation_id: uuid.UUID
) -> None:
    contact_id = uuid.uuid4()

    created = manager.create_session(
        workspace_id=workspace_id,
        agent_id=AGENT_ID,
        conversation_id=conversation_id,
        contact_id=contact_id,
    )

    assert (created.workspace_id, created.agent_id) == (workspace_id, AGENT_ID)
    assert (created.conversation_id, created.contact_id) == (conversation_id, contact_id)
    assert created.status is SessionStatus.ACTIVE
    assert created.current_mode == "greeting"
    assert (created.version, created.turn_count, created.tokens_used) == (1, 0, 0)
    assert created.state.session_id == created.id
    assert created.state.workspace_id == workspace_id
    assert created.state.intents_seen == []
    assert created.state.templates_sent == []
    assert created.state.captured_data == {}


def test_create_session_presets_the_initial_state_and_mode(
    manager: SessionManager, workspace_id: uuid.UUID, conversation_id: uuid.UUID
) -> None:
    created = manager.create_session(
        workspace_id=workspace_id,
        agent_id=AGENT_ID,
        conversation_id=conversation_id,
        initial_mode="qualifying",
        initial_state={"templates_sent": ["welcome"], "captured_data": {"name": "Ana"}},
    )

    assert created.current_mode == "qualifying"
    read = manager.get_session(created.id, workspace_id=workspace_id)
    assert read.state.templates_sent == ["welcome"]
    assert read.state.captured_data == {"name": "Ana"}


def test_get_session_returns_the_session_with_its_state_as_created(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    read = manager.get_session(active_session.id, workspace_id=workspace_id)

    assert read == active_session


def test_get_session_accepts_ids_as_strings(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    read = manager.get_session(str(active_session.id), workspace_id=str(workspace_id))

    assert read == active_session


def test_get_session_by_conversation_returns_the_active_session(
    manager: SessionManager,
    active_session: AgentSessionWithState,
    workspace_id: uuid.UUID,
    conversation_id: uuid.UUID,
) -> None:
    found = manager.get_session_by_conversation(
        conversation_id, AGENT_ID, workspace_id=workspace_id
    )

    assert found == active_session


def test_get_session_by_conversation_is_none_for_a_conversation_without_session(
    manager: SessionManager, workspace_id: uuid.UUID
) -> None:
    assert (
        manager.get_session_by_conversation(uuid.uuid4(), AGENT_ID, workspace_id=workspace_id)
        is None
    )


def test_get_session_by_conversation_is_none_for_another_agent_of_the_conversation(
    manager: SessionManager,
    active_session: AgentSessionWithState,
    workspace_id: uuid.UUID,
    conversation_id: uuid.UUID,
) -> None:
    assert (
        manager.get_session_by_conversation(
            conversation_id, OTHER_AGENT_ID, workspace_id=workspace_id
        )
        is None
    )


def test_create_session_while_one_is_active_raises_session_already_active(
    manager: SessionManager,
    active_session: AgentSessionWithState,
    workspace_id: uuid.UUID,
    conversation_id: uuid.UUID,
) -> None:
    with pytest.raises(SessionAlreadyActiveError) as raised:
        manager.create_session(
            workspace_id=workspace_id, agent_id=AGENT_ID, conversation_id=conversation_id
        )

    assert raised.value.code == "23505"
    assert raised.value.conversation_id == conversation_id
    assert raised.value.retryable is False
    assert (
        manager.get_session_by_conversation(conversation_id, AGENT_ID, workspace_id=workspace_id)
        == active_session
    )


def test_another_agent_may_have_its_own_active_session_for_the_same_conversation(
    manager: SessionManager,
    active_session: AgentSessionWithState,
    workspace_id: uuid.UUID,
    conversation_id: uuid.UUID,
) -> None:
    other = manager.create_session(
        workspace_id=workspace_id, agent_id=OTHER_AGENT_ID, conversation_id=conversation_id
    )

    assert other.id != active_session.id
    assert other.current_mode == "triage"


def test_get_or_create_session_returns_the_existing_active_session(
    manager: SessionManager,
    active_session: AgentSessionWithState,
    workspace_id: uuid.UUID,
    conversation_id: uuid.UUID,
) -> None:
    got = manager.get_or_create_session(
        workspace_id=workspace_id,
        agent_id=AGENT_ID,
        conversation_id=conversation_id,
        initial_mode="qualifying",
        initial_state={"captured_data": {"ignored": True}},
    )

    assert got == active_session


def test_get_or_create_session_creates_a_session_when_there_is_none(
    manager: SessionManager, workspace_id: uuid.UUID, conversation_id: uuid.UUID
) -> None:
    got = manager.get_or_create_session(
        workspace_id=workspace_id,
        agent_id=AGENT_ID,
        conversation_id=conversation_id,
        initial_state={"captured_data": {"source": "ad"}},
    )

    assert got.status is SessionStatus.ACTIVE
    assert got.state.captured_data == {"source": "ad"}
    assert manager.get_session(got.id, workspace_id=workspace_id) == got


def test_get_or_create_session_from_racing_threads_yields_one_session_and_one_row(
    wide_manager: SessionManager,
    database: Database,
    owner: psycopg.Connection[DictRow],
    workspace_id: uuid.UUID,
    conversation_id: uuid.UUID,
) -> None:
    def get_or_create(_: int) -> AgentSessionWithState:
        return wide_manager.get_or_create_session(
            workspace_id=workspace_id, agent_id=AGENT_ID, conversation_id=conversation_id
        )

    # Creating a session inserts it, then its state. Holding inserts into session_state back
    # keeps the first creator's transaction open until every racer has tried to insert the
    # same active session too, so the race is lost by 7 callers every time, not by luck.
    with (
        database.connect_as_owner() as observer,
        ThreadPoolExecutor(max_workers=WORKERS) as executor,
    ):
        with owner.transaction():
            owner.execute("lock table public.session_state in share mode")
            racing = start_together(executor, get_or_create)
            wait_for_lock_waiters(observer, WORKERS, running=GET_OR_CREATE_SESSION_FUNCTION)
        sessions = [future.result(timeout=WAIT_SECONDS) for future in racing]

    assert len({session.id for session in sessions}) == 1
    rows = owner.execute(
        "select id from public.agent_sessions where workspace_id = %s and conversation_id = %s",
        (workspace_id, conversation_id),
    ).fetchall()
    assert [row["id"] for row in rows] == [sessions[0].id]
    states = owner.execute(
        "select session_id from public.session_state where workspace_id = %s", (workspace_id,)
    ).fetchall()
    assert [row["session_id"] for row in states] == [sessions[0].id]


# ---------------------------------------------------------------------------
# Guarded updates
# ---------------------------------------------------------------------------


def test_guarded_update_increments_version_changes_fields_and_moves_updated_at(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    activity = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)

    updated = manager.update_session_with_version(
        active_session.id,
        1,
        workspace_id=workspace_id,
        current_mode="qualifying",
        last_activity_at=activity,
    )

    assert updated.version == 2
    assert updated.current_mode == "qualifying"
    assert updated.last_activity_at == activity
    assert updated.updated_at > active_session.updated_at
    assert updated.status is SessionStatus.ACTIVE
    read = manager.get_session(active_session.id, workspace_id=workspace_id)
    assert (read.version, read.current_mode, read.last_activity_at) == (2, "qualifying", activity)
    assert read.updated_at == updated.updated_at
    assert read.created_at == active_session.created_at


def test_guarded_update_on_stale_version_raises_conflict_with_actual_version(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    manager.update_session_with_version(
        active_session.id, 1, workspace_id=workspace_id, current_mode="qualifying"
    )
    manager.update_session_with_version(
        active_session.id, 2, workspace_id=workspace_id, current_mode="greeting"
    )
    before = manager.get_session(active_session.id, workspace_id=workspace_id)

    with pytest.raises(VersionConflictError) as raised:
        manager.update_session_with_version(
            active_session.id, 1, workspace_id=workspace_id, current_mode="qualifying"
        )

    conflict = raised.value
    assert (conflict.expected_version, conflict.actual_version) == (1, 3)
    assert conflict.retryable is True
    assert (conflict.session_id, conflict.workspace_id) == (active_session.id, workspace_id)
    assert manager.get_session(active_session.id, workspace_id=workspace_id) == before


def test_guarded_update_with_a_version_ahead_of_the_session_raises_conflict(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    with pytest.raises(VersionConflictError) as raised:
        manager.update_session_with_version(
            active_session.id, 7, workspace_id=workspace_id, current_mode="qualifying"
        )

    assert (raised.value.expected_version, raised.value.actual_version) == (7, 1)
    assert manager.get_session(active_session.id, workspace_id=workspace_id) == active_session


def test_adding_turns_and_state_leaves_the_version_alone(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    manager.add_turn(active_session.id, workspace_id=workspace_id, role="user", content="hi")
    manager.add_intent_seen(active_session.id, "greeting", workspace_id=workspace_id)
    manager.add_template_sent(active_session.id, "welcome", workspace_id=workspace_id)
    manager.update_captured_data(active_session.id, {"a": 1}, workspace_id=workspace_id)
    manager.update_state(active_session.id, workspace_id=workspace_id, captured_data={"b": 2})

    updated = manager.update_session_with_version(
        active_session.id, 1, workspace_id=workspace_id, current_mode="qualifying"
    )

    assert updated.version == 2


# ---------------------------------------------------------------------------
# Lifecycle
# ---------------------------------------------------------------------------


def test_closed_session_frees_the_conversation_for_a_new_session(
    manager: SessionManager,
    active_session: AgentSessionWithState,
    workspace_id: uuid.UUID,
    conversation_id: uuid.UUID,
) -> None:
    closed = manager.close_session(active_session.id, 1, workspace_id=workspace_id)
    assert (closed.status, closed.version) == (SessionStatus.CLOSED, 2)
    assert (
        manager.get_session_by_conversation(conversation_id, AGENT_ID, workspace_id=workspace_id)
        is None
    )

    fresh = manager.create_session(
        workspace_id=workspace_id, agent_id=AGENT_ID, conversation_id=conversation_id
    )

    assert fresh.id != active_session.id
    assert (fresh.status, fresh.version) == (SessionStatus.ACTIVE, 1)
    assert (
        manager.get_session_by_conversation(conversation_id, AGENT_ID, workspace_id=workspace_id)
        == fresh
    )
    old = manager.get_session(active_session.id, workspace_id=workspace_id)
    assert old.status is SessionStatus.CLOSED


def test_handoff_session_hands_the_session_off_and_bumps_the_version(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    handed = manager.handoff_session(active_session.id, 1, workspace_id=workspace_id)

    assert (handed.status, handed.version) == (SessionStatus.HANDED_OFF, 2)
    read = manager.get_session(active_session.id, workspace_id=workspace_id)
    assert (read.status, read.version) == (SessionStatus.HANDED_OFF, 2)


def test_pause_session_pauses_an_active_session(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    paused = manager.pause_session(active_session.id, 1, workspace_id=workspace_id)

    assert (paused.status, paused.version) == (SessionStatus.PAUSED, 2)
    read = manager.get_session(active_session.id, workspace_id=workspace_id)
    assert (read.status, read.version) == (SessionStatus.PAUSED, 2)


@pytest.mark.parametrize("leave", ["pause_session", "handoff_session"])
def test_resume_session_makes_a_paused_or_handed_off_session_active_again(
    manager: SessionManager,
    active_session: AgentSessionWithState,
    workspace_id: uuid.UUID,
    conversation_id: uuid.UUID,
    leave: str,
) -> None:
    getattr(manager, leave)(active_session.id, 1, workspace_id=workspace_id)

    resumed = manager.resume_session(active_session.id, 2, workspace_id=workspace_id)

    assert (resumed.status, resumed.version) == (SessionStatus.ACTIVE, 3)
    found = manager.get_session_by_conversation(
        conversation_id, AGENT_ID, workspace_id=workspace_id
    )
    assert found is not None
    assert found.id == active_session.id


def test_resume_of_a_closed_session_raises_invalid_transition_and_changes_nothing(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    manager.close_session(active_session.id, 1, workspace_id=workspace_id)
    before = manager.get_session(active_session.id, workspace_id=workspace_id)

    with pytest.raises(InvalidTransitionError) as raised:
        manager.resume_session(active_session.id, 2, workspace_id=workspace_id)

    assert (raised.value.from_value, raised.value.to_value) == ("closed", "active")
    assert raised.value.retryable is False
    assert manager.get_session(active_session.id, workspace_id=workspace_id) == before


def test_resume_when_another_session_became_active_raises_session_already_active(
    manager: SessionManager,
    active_session: AgentSessionWithState,
    workspace_id: uuid.UUID,
    conversation_id: uuid.UUID,
) -> None:
    manager.handoff_session(active_session.id, 1, workspace_id=workspace_id)
    replacement = manager.create_session(
        workspace_id=workspace_id, agent_id=AGENT_ID, conversation_id=conversation_id
    )

    with pytest.raises(SessionAlreadyActiveError) as raised:
        manager.resume_session(active_session.id, 2, workspace_id=workspace_id)

    assert raised.value.session_id == active_session.id
    assert raised.value.code == "23505"
    handed = manager.get_session(active_session.id, workspace_id=workspace_id)
    assert (handed.status, handed.version) == (SessionStatus.HANDED_OFF, 2)
    assert (
        manager.get_session_by_conversation(conversation_id, AGENT_ID, workspace_id=workspace_id)
        == replacement
    )


def test_mode_change_the_agent_forbids_raises_invalid_transition_and_leaves_session_unchanged(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    with pytest.raises(InvalidTransitionError) as raised:
        manager.update_session_with_version(
            active_session.id, 1, workspace_id=workspace_id, current_mode="closing"
        )

    assert (raised.value.from_value, raised.value.to_value) == ("greeting", "closing")
    assert manager.get_session(active_session.id, workspace_id=workspace_id) == active_session


def test_mode_change_the_agent_allows_step_by_step_succeeds(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    manager.update_session_with_version(
        active_session.id, 1, workspace_id=workspace_id, current_mode="qualifying"
    )
    closing = manager.update_session_with_version(
        active_session.id, 2, workspace_id=workspace_id, current_mode="closing"
    )

    assert (closing.current_mode, closing.version) == ("closing", 3)


def test_mode_of_another_agent_raises_invalid_transition_and_leaves_session_unchanged(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    with pytest.raises(InvalidTransitionError):
        manager.update_session_with_version(
            active_session.id, 1, workspace_id=workspace_id, current_mode="solving"
        )

    assert manager.get_session(active_session.id, workspace_id=workspace_id) == active_session


def test_mode_no_agent_has_raises_invalid_transition_before_any_statement(
    spy_manager: SessionManager,
    spy: SpyTransport,
    workspace_id: uuid.UUID,
    conversation_id: uuid.UUID,
) -> None:
    created = spy_manager.create_session(
        workspace_id=workspace_id, agent_id=AGENT_ID, conversation_id=conversation_id
    )
    spy.requests.clear()

    with pytest.raises(InvalidTransitionError) as raised:
        spy_manager.update_session_with_version(
            created.id, 1, workspace_id=workspace_id, current_mode="flying"
        )

    assert raised.value.to_value == "flying"
    assert spy.requests == []
    assert spy_manager.get_session(created.id, workspace_id=workspace_id) == created


def test_last_activity_at_alone_is_a_guarded_update(
    manager: SessionManager, active_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    later = active_session.last_activity_at + timedelta(minutes=5)

    updated = manager.update_session_with_version(
        active_session.id, 1, workspace_id=workspace_id, last_activity_at=later
    )

    assert (updated.version, updated.last_activity_at) == (2, later)
    assert updated.current_mode == active_session.current_mode
