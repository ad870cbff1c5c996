"""Concurrent callers of one session through the public API: nothing lost, nothing doubled.

8 threads x 50 calls on one manager whose pool has a connection per thread, released
together by a barrier so the calls overlap.
"""

from __future__ import annotations

import uuid

import pytest

from agent_engine import AgentSessionWithState, AgentTurn, SessionManager, SessionState
from tests.db.behaviour.conftest import AGENT_ID, CALLS_PER_WORKER, WORKERS, run_together

pytestmark = pytest.mark.db

TOTAL = WORKERS * CALLS_PER_WORKER


@pytest.fixture
def shared_session(
    wide_manager: SessionManager, workspace_id: uuid.UUID, conversation_id: uuid.UUID
) -> AgentSessionWithState:
    return wide_manager.create_session(
        workspace_id=workspace_id, agent_id=AGENT_ID, conversation_id=conversation_id
    )


def test_concurrent_add_intent_seen_keeps_every_intent_with_orders_1_to_n(
    wide_manager: SessionManager, shared_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    def work(worker: int) -> list[SessionState]:
        return [
            wide_manager.add_intent_seen(
                shared_session.id, f"intent-{worker}-{call}", workspace_id=workspace_id
            )
            for call in range(CALLS_PER_WORKER)
        ]

    returned = run_together(work)

    intents = wide_manager.get_state(shared_session.id, workspace_id=workspace_id).intents_seen
    assert [intent.order for intent in intents] == list(range(1, TOTAL + 1))
    assert sorted(intent.intent for intent in intents) == sorted(
        f"intent-{worker}-{call}" for worker in range(WORKERS) for call in range(CALLS_PER_WORKER)
    )
    order_of = {intent.intent: intent.order for intent in intents}
    for worker, states in enumerate(returned):
        orders = [order_of[f"intent-{worker}-{call}"] for call in range(CALLS_PER_WORKER)]
        assert orders == sorted(orders), f"worker {worker}'s intents out of call order"
        # Each call's answer holds its own append, numbered as it is stored.
        for call, state in enumerate(states):
            last = state.intents_seen[-1]
            assert (last.intent, last.order) == (f"intent-{worker}-{call}", orders[call])


def test_concurrent_add_template_sent_keeps_every_distinct_template_once(
    wide_manager: SessionManager, shared_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    def work(worker: int) -> None:
        for call in range(CALLS_PER_WORKER):
            wide_manager.add_template_sent(
                shared_session.id, f"template-{worker}-{call}", workspace_id=workspace_id
            )

    run_together(work)

    templates = wide_manager.get_state(shared_session.id, workspace_id=workspace_id).templates_sent
    assert len(templates) == TOTAL
    assert set(templates) == {
        f"template-{worker}-{call}" for worker in range(WORKERS) for call in range(CALLS_PER_WORKER)
    }


def test_concurrent_update_captured_data_keeps_every_key(
    wide_manager: SessionManager, shared_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    def work(worker: int) -> None:
        for call in range(CALLS_PER_WORKER):
            wide_manager.update_captured_data(
                shared_session.id,
                {f"key-{worker}-{call}": worker * 1000 + call},
                workspace_id=workspace_id,
            )

    run_together(work)

    data = wide_manager.get_state(shared_session.id, workspace_id=workspace_id).captured_data
    assert data == {
        f"key-{worker}-{call}": worker * 1000 + call
        for worker in range(WORKERS)
        for call in range(CALLS_PER_WORKER)
    }


def test_concurrent_add_turn_numbers_turns_1_to_n_and_keeps_exact_totals(
    wide_manager: SessionManager, shared_session: AgentSessionWithState, workspace_id: uuid.UUID
) -> None:
    def tokens(worker: int, call: int) -> int:
        return worker * 100 + call + 1

    def work(worker: int) -> list[AgentTurn]:
        return [
            wide_manager.add_turn(
                shared_session.id,
                workspace_id=workspace_id,
                role="user",
                content=f"message {worker}-{call}",
                tokens_used=tokens(worker, call),
            )
            for call in range(CALLS_PER_WORKER)
        ]

    returned = [turn for turns in run_together(work) for turn in turns]

    expected_tokens = sum(
        tokens(worker, call) for worker in range(WORKERS) for call in range(CALLS_PER_WORKER)
    )
    stored = wide_manager.get_turns(shared_session.id, workspace_id=workspace_id)
    assert [turn.turn_number for turn in stored] == list(range(1, TOTAL + 1))
    assert sorted(turn.turn_number for turn in returned) == list(range(1, TOTAL + 1))
    assert {turn.content for turn in stored} == {
        f"message {worker}-{call}" for worker in range(WORKERS) for call in range(CALLS_PER_WORKER)
    }
    assert sum(turn.tokens_used for turn in stored) == expected_tokens
    assert wide_manager.get_turn_count(shared_session.id, workspace_id=workspace_id) == TOTAL
    assert (
        wide_manager.get_total_tokens_used(shared_session.id, workspace_id=workspace_id)
        == expected_tokens
    )
