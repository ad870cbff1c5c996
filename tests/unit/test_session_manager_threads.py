"""One SessionManager shared by many threads: every call gets the answer to its own request."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from uuid import UUID, uuid4

import httpx
import respx

from agent_engine import (
    AgentSession,
    AgentSessionWithState,
    AgentTurn,
    SessionManager,
    SessionState,
)
from tests.unit.conftest import (
    TIMESTAMP,
    Ids,
    Rows,
    json_body,
    object_response,
    rpc_response,
)

THREADS = 8
CALLS_PER_THREAD = 25


def _filter_value(request: httpx.Request, column: str) -> str:
    value = request.url.params[column]
    assert value.startswith("eq."), value
    return value.removeprefix("eq.")


def _rows_for(session_id: str, workspace_id: str) -> Rows:
    return Rows(Ids(UUID(workspace_id), UUID(session_id), uuid4(), uuid4(), uuid4()))


# The mocked database echoes back what each request asked for, so an answer delivered to the
# wrong caller (or a request built from another thread's arguments) shows up as a mismatch.


def _read_session(request: httpx.Request) -> httpx.Response:
    rows = _rows_for(_filter_value(request, "id"), _filter_value(request, "workspace_id"))
    return object_response(rows.session_with_state())


def _update_session(request: httpx.Request) -> httpx.Response:
    rows = _rows_for(_filter_value(request, "id"), _filter_value(request, "workspace_id"))
    body = json_body(request)
    assert body["version"] == int(_filter_value(request, "version")) + 1
    return object_response(rows.session(version=body["version"], current_mode=body["current_mode"]))


def _add_turn(request: httpx.Request) -> httpx.Response:
    body = json_body(request)
    rows = _rows_for(body["p_session_id"], body["p_workspace_id"])
    return rpc_response(
        rows.turn(
            turn_number=body["p_turn_number"],
            content=body["p_content"],
            tokens_used=body["p_tokens_used"],
        )
    )


def _append_intent(request: httpx.Request) -> httpx.Response:
    body = json_body(request)
    rows = _rows_for(body["p_session_id"], body["p_workspace_id"])
    intents = [{"intent": body["p_intent"], "order": 1, "seen_at": TIMESTAMP}]
    return rpc_response(rows.state(intents_seen=intents))


@dataclass(frozen=True)
class Outcome:
    """What one call asked for and what it got back."""

    kind: str
    session_id: UUID
    workspace_id: UUID
    marker: str
    result: object


def _one_call(manager: SessionManager, worker: int, index: int, workspace_id: UUID) -> Outcome:
    session_id = uuid4()
    marker = f"w{worker}-c{index}"
    kind = ("get_session", "add_turn", "add_intent_seen", "update_session")[index % 4]
    result: object
    if kind == "get_session":
        result = manager.get_session(session_id, workspace_id=workspace_id)
    elif kind == "add_turn":
        result = manager.add_turn(
            session_id,
            workspace_id=workspace_id,
            role="user",
            content=marker,
            turn_number=index + 1,
            tokens_used=worker * 100 + index,
        )
    elif kind == "add_intent_seen":
        result = manager.add_intent_seen(session_id, marker, workspace_id=workspace_id)
    else:
        result = manager.update_session_with_version(
            session_id, index + 1, workspace_id=workspace_id, current_mode=marker
        )
    return Outcome(kind, session_id, workspace_id, marker, result)


def _assert_own_answer(outcome: Outcome, worker: int, index: int) -> None:
    result = outcome.result
    if outcome.kind == "get_session":
        assert isinstance(result, AgentSessionWithState)
        assert (result.id, result.workspace_id) == (outcome.session_id, outcome.workspace_id)
        assert result.state.session_id == outcome.session_id
    elif outcome.kind == "add_turn":
        assert isinstance(result, AgentTurn)
        assert (result.session_id, result.workspace_id) == (
            outcome.session_id,
            outcome.workspace_id,
        )
        assert (result.content, result.turn_number) == (outcome.marker, index + 1)
        assert result.tokens_used == worker * 100 + index
    elif outcome.kind == "add_intent_seen":
        assert isinstance(result, SessionState)
        assert (result.session_id, result.workspace_id) == (
            outcome.session_id,
            outcome.workspace_id,
        )
        assert [intent.intent for intent in result.intents_seen] == [outcome.marker]
    else:
        assert isinstance(result, AgentSession)
        assert (result.id, result.workspace_id) == (outcome.session_id, outcome.workspace_id)
        assert (result.current_mode, result.version) == (outcome.marker, index + 2)


def test_one_manager_shared_by_eight_threads_answers_every_call_with_its_own_data(
    manager: SessionManager, api: respx.MockRouter
) -> None:
    api.get("/agent_sessions").mock(side_effect=_read_session)
    api.patch("/agent_sessions").mock(side_effect=_update_session)
    api.post("/rpc/agent_engine_add_turn").mock(side_effect=_add_turn)
    api.post("/rpc/agent_engine_append_intent").mock(side_effect=_append_intent)
    start = threading.Barrier(THREADS)

    def worker(number: int) -> list[Outcome]:
        workspace_id = uuid4()
        start.wait()
        return [
            _one_call(manager, number, index, workspace_id) for index in range(CALLS_PER_THREAD)
        ]

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        futures = [pool.submit(worker, number) for number in range(THREADS)]
        results = [future.result(timeout=30) for future in futures]

    for number, outcomes in enumerate(results):
        assert len(outcomes) == CALLS_PER_THREAD
        for index, outcome in enumerate(outcomes):
            _assert_own_answer(outcome, number, index)
    assert api.calls.call_count == THREADS * CALLS_PER_THREAD
    sent_sessions = {
        str(call.request.url.params.get("id", "")).removeprefix("eq.")
        or json.loads(call.request.content)["p_session_id"]
        for call in api.calls
    }
    assert len(sent_sessions) == THREADS * CALLS_PER_THREAD
