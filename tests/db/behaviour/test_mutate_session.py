"""mutate_session: re-read, change, guarded write, retried on conflicts until it lands."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

import pytest

from agent_engine import AgentSessionWithState, SessionManager, VersionConflictError
from tests.db.behaviour.conftest import WORKERS, run_together

pytestmark = pytest.mark.db

INCREMENTS_PER_WORKER = 25
ATTEMPTS = 200


@pytest.fixture
def counter_session(
    plain_manager: SessionManager, workspace_id: uuid.UUID, conversation_id: uuid.UUID
) -> AgentSessionWithState:
    """A session of an unregistered agent whose mode is a counter starting at "0"."""
    return plain_manager.create_session(
        workspace_id=workspace_id,
        agent_id="counter",
        conversation_id=conversation_id,
        initial_mode="0",
    )


def increment(session: AgentSessionWithState) -> dict[str, Any]:
    return {"current_mode": str(int(session.current_mode) + 1)}


def test_mutate_session_from_racing_threads_applies_every_increment_exactly_once(
    plain_manager: SessionManager, counter_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    def work(_: int) -> None:
        for _ in range(INCREMENTS_PER_WORKER):
            plain_manager.mutate_session(
                counter_session.id, increment, workspace_id=workspace_id, attempts=ATTEMPTS
            )

    run_together(work)

    final = plain_manager.get_session(counter_session.id, workspace_id=workspace_id)
    total = WORKERS * INCREMENTS_PER_WORKER
    assert final.current_mode == str(total)
    assert final.version == total + 1


def test_mutate_session_returns_the_written_session(
    plain_manager: SessionManager, counter_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    written = plain_manager.mutate_session(counter_session.id, increment, workspace_id=workspace_id)

    assert (written.current_mode, written.version) == ("1", 2)
    read = plain_manager.get_session(counter_session.id, workspace_id=workspace_id)
    assert (read.current_mode, read.version) == ("1", 2)


def test_mutate_session_gives_up_with_the_last_conflict_when_every_write_conflicts(
    plain_manager: SessionManager,
    other_instance: SessionManager,
    counter_session: AgentSessionWithState,
    workspace_id: uuid.UUID,
) -> None:
    calls: list[int] = []

    def change_behind_its_back(session: AgentSessionWithState) -> Mapping[str, Any]:
        calls.append(session.version)
        # Another writer gets in between the read and the guarded write, every time.
        other_instance.update_session_with_version(
            session.id, session.version, workspace_id=workspace_id, current_mode="interloper"
        )
        return {"current_mode": "mine"}

    with pytest.raises(VersionConflictError) as raised:
        plain_manager.mutate_session(
            counter_session.id, change_behind_its_back, workspace_id=workspace_id, attempts=3
        )

    assert calls == [1, 2, 3]
    assert (raised.value.expected_version, raised.value.actual_version) == (3, 4)
    assert raised.value.retryable is True
    final = plain_manager.get_session(counter_session.id, workspace_id=workspace_id)
    assert (final.current_mode, final.version) == ("interloper", 4)


@pytest.mark.parametrize("nothing", [None, {}], ids=["None", "empty"])
def test_mutate_session_writes_nothing_when_the_change_is_empty(
    plain_manager: SessionManager,
    counter_session: AgentSessionWithState,
    workspace_id: uuid.UUID,
    nothing: dict[str, Any] | None,
) -> None:
    returned = plain_manager.mutate_session(
        counter_session.id, lambda _: nothing, workspace_id=workspace_id
    )

    assert returned == counter_session
    assert plain_manager.get_session(counter_session.id, workspace_id=workspace_id) == (
        counter_session
    )


def test_mutate_session_logs_each_conflict_retry_at_debug_on_the_agent_engine_logger(
    plain_manager: SessionManager,
    other_instance: SessionManager,
    counter_session: AgentSessionWithState,
    workspace_id: uuid.UUID,
    caplog: pytest.LogCaptureFixture,
) -> None:
    interloped: list[int] = []

    def change_behind_its_back_once(session: AgentSessionWithState) -> Mapping[str, Any]:
        if not interloped:
            interloped.append(session.version)
            other_instance.update_session_with_version(
                session.id, session.version, workspace_id=workspace_id, current_mode="other"
            )
        return {"current_mode": "mine"}

    with caplog.at_level(logging.DEBUG, logger="agent_engine"):
        written = plain_manager.mutate_session(
            counter_session.id, change_behind_its_back_once, workspace_id=workspace_id
        )

    assert (written.current_mode, written.version) == ("mine", 3)
    retries = [r for r in caplog.records if r.name == "agent_engine" and "conflict" in r.msg]
    assert len(retries) == 1
    assert retries[0].levelno == logging.DEBUG
    assert str(counter_session.id) in retries[0].getMessage()
