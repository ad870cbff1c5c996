"""Error mapping: realistic PostgREST and network failures become the right AgentEngineError.

Every error is matched on its code (never on message text), keeps the session and workspace it
concerns, says whether retrying may succeed, renders to JSON for logs, and never shows the
service key (not in str, repr, to_dict, nor in anything logged during the failing call).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
import respx
from postgrest import APIError

from agent_engine import (
    IdempotencyConflictError,
    SessionAlreadyActiveError,
    SessionError,
    SessionManager,
    SessionNotFoundError,
)
from tests.postgrest_responses import error_response
from tests.unit.conftest import (
    AGENT_ID,
    LEGACY_SERVICE_ROLE_KEY,
    SECRET_KEY,
    Ids,
    Rows,
    build_client,
    no_rows_response,
    object_response,
    rpc_response,
    session_not_found_response,
)
from tests.unit.wire_calls import WIRE_CALLS, WireCall

# The calls, one per kind of request on the wire


@dataclass(frozen=True)
class ServerFailure:
    """A failure PostgREST (or the gateway in front of it) really answers with."""

    name: str
    response: Callable[[], httpx.Response]
    code: str | None
    retryable: bool


BAD_GATEWAY_PAGE = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
    "</body>\r\n</html>\r\n"
)

SERVER_FAILURES = [
    ServerFailure(
        "503 PGRST000 database unreachable",
        lambda: error_response(
            503,
            "PGRST000",
            "Database connection error. Retrying the connection.",
            'connection to server at "db.internal" (10.0.0.5), port 5432 failed',
        ),
        "PGRST000",
        True,
    ),
    ServerFailure(
        "503 PGRST001 database client error",
        lambda: error_response(503, "PGRST001", "Database client error. Retrying the connection."),
        "PGRST001",
        True,
    ),
    ServerFailure(
        "503 PGRST002 schema cache not loaded",
        lambda: error_response(
            503, "PGRST002", "Could not query the database for the schema cache. Retrying."
        ),
        "PGRST002",
        True,
    ),
    ServerFailure(
        "504 PGRST003 pool acquisition timeout",
        lambda: error_response(
            504, "PGRST003", "Timed out acquiring connection from connection pool."
        ),
        "PGRST003",
        True,
    ),
    ServerFailure(
        "500 57014 statement timeout",
        lambda: error_response(500, "57014", "canceling statement due to statement timeout"),
        "57014",
        True,
    ),
    ServerFailure(
        "400 23514 check violation",
        lambda: error_response(
            400,
            "23514",
            'new row for relation "agent_turns" violates check constraint '
            '"agent_turns_tokens_used_check"',
            "Failing row contains (...).",
        ),
        "23514",
        False,
    ),
    ServerFailure(
        "403 42501 permission denied",
        lambda: error_response(403, "42501", "permission denied for table agent_sessions"),
        "42501",
        False,
    ),
    ServerFailure(
        "401 PGRST301 invalid JWT",
        lambda: error_response(401, "PGRST301", "No suitable key or wrong key type"),
        "PGRST301",
        False,
    ),
    ServerFailure(
        "401 gateway invalid API key",
        lambda: httpx.Response(
            401,
            json={
                "message": "Invalid API key",
                "hint": "Double check your Supabase `anon` or `service_role` API key.",
            },
        ),
        None,
        False,
    ),
    ServerFailure(
        "502 HTML page",
        lambda: httpx.Response(
            502, text=BAD_GATEWAY_PAGE, headers={"Content-Type": "text/html; charset=utf-8"}
        ),
        "502",
        True,
    ),
]


def _assert_error_is_safe_to_log(error: SessionError, key: str, logged: str) -> None:
    rendered = error.to_dict()
    serialised = json.dumps(rendered)
    signature = key.rsplit(".", 1)[-1]
    for text in (str(error), repr(error), serialised, logged):
        assert key not in text
        assert signature not in text
    assert rendered["error"] == type(error).__name__
    assert rendered["retryable"] is error.retryable


def _assert_scope(error: SessionError, call: WireCall, ids: Ids) -> None:
    assert error.workspace_id == ids.workspace_id
    assert error.session_id == (ids.session_id if call.names_session else None)
    rendered = error.to_dict()
    assert rendered["workspace_id"] == str(ids.workspace_id)
    if call.names_session:
        assert rendered["session_id"] == str(ids.session_id)


@pytest.mark.parametrize("call", WIRE_CALLS, ids=lambda call: call.name)
@pytest.mark.parametrize("failure", SERVER_FAILURES, ids=lambda failure: failure.name)
def test_server_failure_becomes_session_error_with_code_and_retryability(
    manager: SessionManager,
    api: respx.MockRouter,
    ids: Ids,
    caplog: pytest.LogCaptureFixture,
    call: WireCall,
    failure: ServerFailure,
) -> None:
    call.route(api).mock(return_value=failure.response())
    caplog.set_level(logging.DEBUG)

    with pytest.raises(SessionError) as caught:
        call.run(manager, ids)

    error = caught.value
    assert type(error) is SessionError
    assert error.code == failure.code
    assert error.retryable is failure.retryable
    assert isinstance(error.__cause__, APIError)
    assert api.calls.call_count == 1
    _assert_scope(error, call, ids)
    assert any("HTTP Request" in record.getMessage() for record in caplog.records)
    _assert_error_is_safe_to_log(error, LEGACY_SERVICE_ROLE_KEY, caplog.text)


@pytest.mark.parametrize("call", WIRE_CALLS, ids=lambda call: call.name)
@pytest.mark.parametrize(
    "network_error",
    [
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.ReadTimeout("The read operation timed out"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_network_failure_is_retryable_session_error_caused_by_the_httpx_error(
    manager: SessionManager,
    api: respx.MockRouter,
    ids: Ids,
    caplog: pytest.LogCaptureFixture,
    call: WireCall,
    network_error: httpx.TransportError,
) -> None:
    call.route(api).mock(side_effect=network_error)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(SessionError) as caught:
        call.run(manager, ids)

    error = caught.value
    assert type(error) is SessionError
    assert error.retryable is True
    assert error.code is None
    assert error.__cause__ is network_error
    assert api.calls.call_count == 1
    _assert_scope(error, call, ids)
    _assert_error_is_safe_to_log(error, LEGACY_SERVICE_ROLE_KEY, caplog.text)


def test_an_error_seen_through_a_secret_key_client_does_not_show_the_key(
    api: respx.MockRouter, ids: Ids, caplog: pytest.LogCaptureFixture
) -> None:
    api.get("/agent_sessions").mock(
        return_value=error_response(401, "PGRST301", "No suitable key or wrong key type")
    )
    secret_client = build_client(SECRET_KEY)
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(SessionError) as caught:
            SessionManager(secret_client).get_session(ids.session_id, workspace_id=ids.workspace_id)
    finally:
        secret_client.postgrest.session.close()

    _assert_error_is_safe_to_log(caught.value, SECRET_KEY, caplog.text)


# Codes with a specific meaning


def test_create_session_on_unique_violation_raises_already_active_keeping_code_and_details(
    manager: SessionManager, api: respx.MockRouter, ids: Ids
) -> None:
    details = (
        f"Key (workspace_id, conversation_id, agent_id)=({ids.workspace_id}, "
        f"{ids.conversation_id}, {AGENT_ID}) already exists."
    )
    api.post("/rpc/agent_engine_create_session").mock(
        return_value=error_response(
            409,
            "23505",
            'duplicate key value violates unique constraint "agent_sessions_one_active_idx"',
            details,
        )
    )

    with pytest.raises(SessionAlreadyActiveError) as caught:
        manager.create_session(
            workspace_id=ids.workspace_id,
            agent_id=AGENT_ID,
            conversation_id=ids.conversation_id,
            initial_mode="greeting",
        )

    error = caught.value
    assert error.code == "23505"
    assert error.details == details
    assert error.workspace_id == ids.workspace_id
    assert error.conversation_id == ids.conversation_id
    assert error.agent_id == AGENT_ID
    assert error.retryable is False
    assert isinstance(error.__cause__, APIError)
    assert json.loads(json.dumps(error.to_dict()))["conversation_id"] == str(ids.conversation_id)
    assert api.calls.call_count == 1


def test_add_turn_with_a_taken_turn_number_raises_session_error_23505_not_already_active(
    manager: SessionManager, api: respx.MockRouter, ids: Ids
) -> None:
    details = (
        f"Key (workspace_id, session_id, turn_number)=({ids.workspace_id}, "
        f"{ids.session_id}, 3) already exists."
    )
    api.post("/rpc/agent_engine_add_turn").mock(
        return_value=error_response(
            409,
            "23505",
            'duplicate key value violates unique constraint "agent_turns_turn_number_key"',
            details,
        )
    )

    with pytest.raises(SessionError) as caught:
        manager.add_turn(
            ids.session_id,
            workspace_id=ids.workspace_id,
            role="assistant",
            content="sure",
            turn_number=3,
        )

    error = caught.value
    assert not isinstance(error, SessionAlreadyActiveError)
    assert error.code == "23505"
    assert error.details == details
    assert error.retryable is False
    assert error.session_id == ids.session_id
    assert error.workspace_id == ids.workspace_id
    assert "3" in str(error)
    json.dumps(error.to_dict())


def test_add_turn_reusing_a_key_for_another_turn_raises_idempotency_conflict_with_its_number(
    manager: SessionManager, api: respx.MockRouter, ids: Ids
) -> None:
    api.post("/rpc/agent_engine_add_turn").mock(
        return_value=error_response(
            409,
            "PT409",
            "idempotency key wamid.7 is already stored for turn 12 of session "
            f"{ids.session_id} with different values",
            '{"turn_number": 12}',
            "A new message needs a new idempotency key.",
        )
    )

    with pytest.raises(IdempotencyConflictError) as caught:
        manager.add_turn(
            ids.session_id,
            workspace_id=ids.workspace_id,
            role="user",
            content="a different message",
            idempotency_key="wamid.7",
        )

    error = caught.value
    assert isinstance(error, SessionError)
    assert (error.code, error.retryable, error.stored_turn_number) == ("PT409", False, 12)
    assert (error.session_id, error.workspace_id, error.idempotency_key) == (
        ids.session_id,
        ids.workspace_id,
        "wamid.7",
    )
    assert "turn 12" in str(error)
    assert error.to_dict()["stored_turn_number"] == 12


@pytest.mark.parametrize("details", [None, "", "not json", '{"turn_number": "12"}', "[12]"])
def test_an_idempotency_conflict_whose_details_were_lost_still_raises_without_a_number(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, details: str | None
) -> None:
    api.post("/rpc/agent_engine_add_turn").mock(
        return_value=error_response(409, "PT409", "idempotency conflict", details)
    )

    with pytest.raises(IdempotencyConflictError) as caught:
        manager.add_turn(
            ids.session_id,
            workspace_id=ids.workspace_id,
            role="user",
            content="hi",
            idempotency_key="k",
        )

    assert caught.value.stored_turn_number is None


@pytest.mark.parametrize(
    ("call", "operation"),
    [
        (
            lambda m, ids: m.add_intent_seen(ids.session_id, "x", workspace_id=ids.workspace_id),
            "add_intent_seen",
        ),
        (
            lambda m, ids: m.add_template_sent(ids.session_id, "x", workspace_id=ids.workspace_id),
            "add_template_sent",
        ),
        (
            lambda m, ids: m.update_captured_data(
                ids.session_id, {}, workspace_id=ids.workspace_id
            ),
            "update_captured_data",
        ),
        (
            lambda m, ids: m.add_turn(
                ids.session_id, workspace_id=ids.workspace_id, role="user", content="x"
            ),
            "add_turn",
        ),
        (
            lambda m, ids: m.get_total_tokens_used(ids.session_id, workspace_id=ids.workspace_id),
            "get_total_tokens_used",
        ),
        (
            lambda m, ids: m.get_turn_count(ids.session_id, workspace_id=ids.workspace_id),
            "get_turn_count",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_an_error_names_the_public_method_not_the_sql_function(
    manager: SessionManager,
    api: respx.MockRouter,
    ids: Ids,
    call: Callable[[SessionManager, Ids], object],
    operation: str,
) -> None:
    api.route().mock(return_value=error_response(500, "XX000", "internal error"))

    with pytest.raises(SessionError) as caught:
        call(manager, ids)

    assert str(caught.value).startswith(f"{operation} failed")


RPC_CALLS = [
    WireCall(
        "add_intent_seen",
        "POST",
        "/rpc/agent_engine_append_intent",
        lambda manager, ids: manager.add_intent_seen(
            ids.session_id, "pricing", workspace_id=ids.workspace_id
        ),
    ),
    WireCall(
        "add_template_sent",
        "POST",
        "/rpc/agent_engine_append_template",
        lambda manager, ids: manager.add_template_sent(
            ids.session_id, "welcome_v2", workspace_id=ids.workspace_id
        ),
    ),
    WireCall(
        "update_captured_data",
        "POST",
        "/rpc/agent_engine_merge_captured_data",
        lambda manager, ids: manager.update_captured_data(
            ids.session_id, {"name": "Ana"}, workspace_id=ids.workspace_id
        ),
    ),
    WireCall(
        "add_turn",
        "POST",
        "/rpc/agent_engine_add_turn",
        lambda manager, ids: manager.add_turn(
            ids.session_id, workspace_id=ids.workspace_id, role="user", content="hi"
        ),
    ),
]


@pytest.mark.parametrize("call", RPC_CALLS, ids=lambda call: call.name)
def test_function_raising_pt404_means_session_not_found_in_the_workspace(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, call: WireCall
) -> None:
    call.route(api).mock(return_value=session_not_found_response(ids.session_id, ids.workspace_id))

    with pytest.raises(SessionNotFoundError) as caught:
        call.run(manager, ids)

    error = caught.value
    assert error.code == "PT404"
    assert error.session_id == ids.session_id
    assert error.workspace_id == ids.workspace_id
    assert error.retryable is False
    assert api.calls.call_count == 1
    json.dumps(error.to_dict())


SINGLE_ROW_READS = [
    WireCall(
        "get_session",
        "GET",
        "/agent_sessions",
        lambda manager, ids: manager.get_session(ids.session_id, workspace_id=ids.workspace_id),
    ),
    WireCall(
        "get_state",
        "GET",
        "/session_state",
        lambda manager, ids: manager.get_state(ids.session_id, workspace_id=ids.workspace_id),
    ),
    WireCall(
        "get_turns",
        "GET",
        "/agent_sessions",
        lambda manager, ids: manager.get_turns(ids.session_id, workspace_id=ids.workspace_id),
    ),
    WireCall(
        "get_total_tokens_used",
        "GET",
        "/agent_sessions",
        lambda manager, ids: manager.get_total_tokens_used(
            ids.session_id, workspace_id=ids.workspace_id
        ),
    ),
    WireCall(
        "get_turn_count",
        "GET",
        "/agent_sessions",
        lambda manager, ids: manager.get_turn_count(ids.session_id, workspace_id=ids.workspace_id),
    ),
    WireCall(
        "update_state",
        "PATCH",
        "/session_state",
        lambda manager, ids: manager.update_state(
            ids.session_id, workspace_id=ids.workspace_id, captured_data={}
        ),
    ),
]


@pytest.mark.parametrize("call", SINGLE_ROW_READS, ids=lambda call: call.name)
def test_no_row_for_a_single_row_request_means_session_not_found_without_a_second_request(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, call: WireCall
) -> None:
    call.route(api).mock(return_value=no_rows_response())

    with pytest.raises(SessionNotFoundError) as caught:
        call.run(manager, ids)

    error = caught.value
    assert error.code == "PGRST116"
    assert error.session_id == ids.session_id
    assert error.workspace_id == ids.workspace_id
    assert error.retryable is False
    assert isinstance(error.__cause__, APIError)
    assert api.calls.call_count == 1
    json.dumps(error.to_dict())


def test_a_guarded_update_whose_re_read_fails_on_the_network_is_retryable(
    manager: SessionManager, api: respx.MockRouter, ids: Ids
) -> None:
    api.patch("/agent_sessions").mock(return_value=no_rows_response())
    timeout = httpx.ReadTimeout("The read operation timed out")
    api.get("/agent_sessions").mock(side_effect=timeout)

    with pytest.raises(SessionError) as caught:
        manager.close_session(ids.session_id, 2, workspace_id=ids.workspace_id)

    assert type(caught.value) is SessionError
    assert caught.value.retryable is True
    assert caught.value.__cause__ is timeout
    assert api.calls.call_count == 2


def test_an_answer_that_is_not_the_expected_row_is_a_session_error_not_a_pydantic_error(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    # e.g. a migration renamed a column the model needs
    broken = rows.session()
    del broken["version"]
    api.patch("/agent_sessions").mock(return_value=object_response(broken))

    with pytest.raises(SessionError) as caught:
        manager.pause_session(ids.session_id, 3, workspace_id=ids.workspace_id)

    assert caught.value.session_id == ids.session_id
    assert caught.value.workspace_id == ids.workspace_id
    json.dumps(caught.value.to_dict())


def test_a_total_that_is_not_a_number_is_a_session_error_not_a_raw_value_error(
    manager: SessionManager, api: respx.MockRouter, ids: Ids
) -> None:
    api.get("/agent_sessions").mock(return_value=object_response({"turn_count": "many"}))

    with pytest.raises(SessionError) as caught:
        manager.get_turn_count(ids.session_id, workspace_id=ids.workspace_id)

    assert "get_turn_count got an answer it could not read" in str(caught.value)
    assert isinstance(caught.value.__cause__, ValueError)


def test_a_second_look_at_a_row_of_unknown_status_is_a_session_error_not_a_raw_value_error(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    api.patch("/agent_sessions").mock(return_value=no_rows_response())
    api.get("/agent_sessions").mock(
        return_value=object_response(
            {"version": 3, "status": "archived", "current_mode": "x", "agent_id": AGENT_ID}
        )
    )

    with pytest.raises(SessionError) as caught:
        manager.pause_session(ids.session_id, 3, workspace_id=ids.workspace_id)

    assert type(caught.value) is SessionError
    assert caught.value.retryable is False
    assert isinstance(caught.value.__cause__, ValueError)


def test_an_unknown_function_is_a_non_retryable_session_error_keeping_pgrst202(
    manager: SessionManager, api: respx.MockRouter, ids: Ids
) -> None:
    # Before the migration is applied (or the schema cache reloaded) the function is unknown.
    api.post("/rpc/agent_engine_append_intent").mock(
        return_value=error_response(
            404,
            "PGRST202",
            "Could not find the function public.agent_engine_append_intent"
            "(p_intent, p_session_id, p_workspace_id) in the schema cache",
            hint=None,
        )
    )

    with pytest.raises(SessionError) as caught:
        manager.add_intent_seen(ids.session_id, "pricing", workspace_id=ids.workspace_id)

    assert type(caught.value) is SessionError
    assert caught.value.code == "PGRST202"
    assert caught.value.retryable is False


def test_a_retryable_failure_can_be_retried_with_the_same_call(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    api.post("/rpc/agent_engine_add_turn").mock(
        side_effect=[
            error_response(503, "PGRST001", "Database client error. Retrying the connection."),
            rpc_response(rows.turn()),
        ]
    )

    with pytest.raises(SessionError) as caught:
        manager.add_turn(ids.session_id, workspace_id=ids.workspace_id, role="user", content="a")
    assert caught.value.retryable is True
    turn = manager.add_turn(ids.session_id, workspace_id=ids.workspace_id, role="user", content="a")

    assert turn.id == ids.turn_id
    assert api.calls.call_count == 2
