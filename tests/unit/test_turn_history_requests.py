"""The Supabase path of the turn-history and deletion methods: one /rpc call each, the exact
body, the answer PostgREST gives (a JSON null, 204 for a void function) read as the direct
path reads it, and PT404 as SessionNotFoundError. Both managers."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
import respx

from agent_engine import AgentTurn, SessionManager, SessionNotFoundError
from tests.unit.conftest import (
    LATER_TIMESTAMP,
    Ids,
    Rows,
    json_body,
    rpc_response,
    session_not_found_response,
)


def test_get_recent_turns_posts_the_limit_and_page_and_reads_the_turns(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    turns = [rows.turn(4, metadata={"channel": "whatsapp"}), rows.turn(5)]
    route = api.post("/rpc/agent_engine_get_recent_turns").mock(
        return_value=httpx.Response(200, json=turns)
    )

    read = manager.get_recent_turns(
        ids.session_id, workspace_id=ids.workspace_id, limit=2, before_turn=6
    )

    assert [turn.turn_number for turn in read] == [4, 5]
    assert read[0].metadata == {"channel": "whatsapp"}
    assert json_body(route.calls.last.request) == {
        "p_session_id": str(ids.session_id),
        "p_workspace_id": str(ids.workspace_id),
        "p_limit": 2,
        "p_before_turn": 6,
    }
    assert api.calls.call_count == 1


def test_pop_turn_reads_the_removed_turn_or_a_json_null(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    api.post("/rpc/agent_engine_pop_turn").mock(
        side_effect=[
            rpc_response(rows.turn(3)),
            httpx.Response(200, content=b"null", headers={"Content-Type": "application/json"}),
        ]
    )

    popped = manager.pop_turn(ids.session_id, workspace_id=ids.workspace_id)
    nothing = manager.pop_turn(ids.session_id, workspace_id=ids.workspace_id)

    assert isinstance(popped, AgentTurn)
    assert popped.turn_number == 3
    assert nothing is None


@pytest.mark.parametrize(
    ("method", "function", "answer", "expected"),
    [
        ("clear_turns", "agent_engine_clear_turns", httpx.Response(200, json=4), 4),
        ("delete_session", "agent_engine_delete_session", httpx.Response(204), None),
    ],
)
def test_clear_turns_and_delete_session_read_a_count_and_a_204(
    manager: SessionManager,
    api: respx.MockRouter,
    ids: Ids,
    method: str,
    function: str,
    answer: httpx.Response,
    expected: int | None,
) -> None:
    route = api.post(f"/rpc/{function}").mock(return_value=answer)

    assert getattr(manager, method)(ids.session_id, workspace_id=ids.workspace_id) == expected
    assert json_body(route.calls.last.request) == {
        "p_session_id": str(ids.session_id),
        "p_workspace_id": str(ids.workspace_id),
    }


def test_delete_contact_data_posts_the_contact_and_reads_the_count(
    manager: SessionManager, api: respx.MockRouter, ids: Ids
) -> None:
    route = api.post("/rpc/agent_engine_delete_contact_data").mock(
        return_value=httpx.Response(200, json=2)
    )

    assert manager.delete_contact_data(ids.contact_id, workspace_id=ids.workspace_id) == 2
    assert json_body(route.calls.last.request) == {
        "p_contact_id": str(ids.contact_id),
        "p_workspace_id": str(ids.workspace_id),
    }


@pytest.mark.parametrize("method", ["pop_turn", "clear_turns", "delete_session"])
def test_a_session_missing_from_the_workspace_is_session_not_found(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, method: str
) -> None:
    api.post(url__regex=r"/rpc/agent_engine_.*").mock(
        return_value=session_not_found_response(ids.session_id, ids.workspace_id)
    )

    with pytest.raises(SessionNotFoundError) as raised:
        getattr(manager, method)(ids.session_id, workspace_id=ids.workspace_id)

    assert (raised.value.session_id, raised.value.workspace_id) == (
        ids.session_id,
        ids.workspace_id,
    )


def test_add_turns_posts_the_batch_without_numbers_and_reads_the_stored_turns(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    route = api.post("/rpc/agent_engine_add_turns").mock(
        return_value=httpx.Response(200, json=[rows.turn(1), rows.turn(2)])
    )

    stored = manager.add_turns(
        ids.session_id,
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "tokens_used": 7}],
        workspace_id=ids.workspace_id,
    )

    assert [turn.turn_number for turn in stored] == [1, 2]
    body = json_body(route.calls.last.request)
    assert body["p_turns"][1] == {
        "role": "assistant",
        "content": "b",
        "intent_detected": None,
        "confidence": None,
        "tools_called": [],
        "tokens_used": 7,
        "idempotency_key": None,
        "metadata": {},
    }


def test_list_sessions_posts_the_filters_and_returns_a_cursor_for_a_full_page(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    route = api.post("/rpc/agent_engine_list_sessions").mock(
        return_value=httpx.Response(200, json=[rows.session_with_state()])
    )

    page = manager.list_sessions(workspace_id=ids.workspace_id, status="active", limit=1)
    following = manager.list_sessions(
        workspace_id=ids.workspace_id, status="active", limit=1, cursor=page.next_cursor
    )

    first, second = (json_body(call.request) for call in route.calls)
    assert (first["p_status"], first["p_limit"], first["p_after_id"]) == ("active", 1, None)
    assert second["p_after_id"] == str(ids.session_id)
    assert second["p_after_activity"] == LATER_TIMESTAMP
    assert [session.id for session in following.sessions] == [ids.session_id]


def test_purge_sessions_sends_the_statuses_as_a_json_array(
    manager: SessionManager, api: respx.MockRouter
) -> None:
    route = api.post("/rpc/agent_engine_purge_sessions_batch").mock(
        return_value=httpx.Response(200, json=0)
    )

    assert manager.purge_sessions(older_than=timedelta(days=30), statuses=["closed", "paused"]) == 0
    body = json_body(route.calls.last.request)
    assert (body["p_statuses"], body["p_workspace_id"], body["p_batch_size"]) == (
        ["closed", "paused"],
        None,
        1000,
    )
