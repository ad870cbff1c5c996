"""The Supabase path's failures beyond PostgREST's own errors, as typed SessionErrors.

Gateways in front of PostgREST (Cloudflare, Kong, Supavisor) answer with bodies that carry no
PostgREST code; httpx raises its own exceptions; a proxy may answer 200 with a page that is
not the JSON asked for. Each becomes a SessionError that keeps the session and workspace, the
code when there is one, the cause, and says whether the same call may succeed if repeated.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
import respx
from postgrest import APIError
from supabase import Client

from agent_engine import SessionError, SessionManager
from tests.postgrest_responses import error_response
from tests.unit.conftest import (
    OBJECT_MEDIA_TYPE,
    REST_URL,
    Ids,
)
from tests.unit.wire_calls import (
    ADD_TURN,
    CREATE_SESSION,
    GET_SESSION,
    GET_SESSION_BY_CONVERSATION,
    GET_TURNS,
    UPDATE_SESSION_WITH_VERSION,
    UPDATE_STATE,
    WIRE_CALLS,
    WireCall,
)


def _raised_by(call: WireCall, manager: SessionManager, ids: Ids) -> SessionError:
    """The SessionError `call` raises (exactly that class), checked for its scope and JSON."""
    with pytest.raises(SessionError) as caught:
        call.run(manager, ids)
    error = caught.value
    assert type(error) is SessionError
    assert error.workspace_id == ids.workspace_id
    assert error.session_id == (ids.session_id if call.names_session else None)
    rendered = json.loads(json.dumps(error.to_dict()))
    assert rendered["retryable"] is error.retryable
    assert rendered["workspace_id"] == str(ids.workspace_id)
    return error


# 1. Gateway statuses: retryable whatever the body


@dataclass(frozen=True)
class GatewayBody:
    """A body a gateway answers with; `status_as_code`: postgrest-py makes the status the code
    when the body is not JSON (it cannot tell a code from it)."""

    name: str
    response: Callable[[int], httpx.Response]
    status_as_code: bool


GATEWAY_BODIES = [
    GatewayBody(
        "json without a code",
        lambda status: httpx.Response(
            status, json={"message": "An invalid response was received from the upstream server"}
        ),
        status_as_code=False,
    ),
    GatewayBody(
        "html page",
        lambda status: httpx.Response(
            status,
            text=f"<html><head><title>{status}</title></head><body>cloudflare</body></html>",
            headers={"Content-Type": "text/html; charset=UTF-8"},
        ),
        status_as_code=True,
    ),
    GatewayBody(
        "plain text",
        lambda status: httpx.Response(
            status,
            text="upstream connect error or disconnect/reset before headers",
            headers={"Content-Type": "text/plain"},
        ),
        status_as_code=True,
    ),
    GatewayBody("empty body", lambda status: httpx.Response(status), status_as_code=True),
]


@pytest.mark.parametrize("call", WIRE_CALLS, ids=lambda call: call.name)
@pytest.mark.parametrize("body", GATEWAY_BODIES, ids=lambda body: body.name)
@pytest.mark.parametrize("status", [429, 502, 503, 504, 520])
def test_gateway_status_without_postgrest_code_is_retryable_and_named_in_the_message(
    manager: SessionManager,
    api: respx.MockRouter,
    ids: Ids,
    call: WireCall,
    body: GatewayBody,
    status: int,
) -> None:
    call.route(api).mock(return_value=body.response(status))

    error = _raised_by(call, manager, ids)

    assert error.retryable is True
    assert error.code == (str(status) if body.status_as_code else None)
    assert f"HTTP {status}" in str(error)
    assert isinstance(error.__cause__, APIError)
    assert api.calls.call_count == 1


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(500, text="<html>Internal Server Error</html>"),
        httpx.Response(401, json={"message": "Invalid API key"}),
        httpx.Response(404),
        httpx.Response(400, text="Bad Request"),
    ],
    ids=["500 html", "401 json without code", "404 empty", "400 text"],
)
def test_other_status_without_postgrest_code_is_not_retryable_and_named_in_the_message(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, response: httpx.Response
) -> None:
    GET_SESSION.route(api).mock(return_value=response)

    error = _raised_by(GET_SESSION, manager, ids)

    assert error.retryable is False
    assert f"HTTP {response.status_code}" in str(error)


@pytest.mark.parametrize(
    ("response", "code", "retryable"),
    [
        (error_response(504, "PGRST003", "Timed out acquiring connection"), "PGRST003", True),
        (error_response(500, "57014", "canceling statement"), "57014", True),
        (error_response(503, "PT503", "raised by a function"), "PT503", False),
        (
            httpx.Response(
                504,
                text="<html>Gateway Timeout</html>",
                headers={"Proxy-Status": "PostgREST; error=PGRST003"},
            ),
            "PGRST003",
            True,
        ),
    ],
    ids=["504 PGRST003", "500 57014", "503 custom PT503", "504 page with Proxy-Status code"],
)
def test_a_real_postgrest_code_decides_retryability_whatever_the_status(
    manager: SessionManager,
    api: respx.MockRouter,
    ids: Ids,
    response: httpx.Response,
    code: str,
    retryable: bool,
) -> None:
    ADD_TURN.route(api).mock(return_value=response)

    error = _raised_by(ADD_TURN, manager, ids)

    assert error.code == code
    assert error.retryable is retryable
    assert "HTTP" not in str(error)


# 2. httpx exceptions: typed, retryable when the network or the time ran out

_REQUEST = httpx.Request("GET", f"{REST_URL}/agent_sessions")

HTTPX_ERRORS: list[tuple[Exception, bool]] = [
    (httpx.ConnectError("[Errno 111] Connection refused"), True),
    (httpx.ConnectTimeout("timed out"), True),
    (httpx.ReadTimeout("The read operation timed out"), True),
    (httpx.WriteTimeout("The write operation timed out"), True),
    (httpx.PoolTimeout("timed out waiting for a connection"), True),
    (httpx.ReadError("[Errno 104] Connection reset by peer"), True),
    (httpx.WriteError("[Errno 32] Broken pipe"), True),
    (httpx.CloseError("[Errno 9] Bad file descriptor"), True),
    (httpx.RemoteProtocolError("Server disconnected without sending a response."), True),
    (httpx.ProxyError("502 Bad Gateway"), True),
    (httpx.HTTPStatusError("503", request=_REQUEST, response=httpx.Response(503)), True),
    (httpx.LocalProtocolError("Illegal header value b'x\\ny'"), False),
    (httpx.UnsupportedProtocol("Request URL has an unsupported protocol 'ftp://'."), False),
    (httpx.DecodingError("Error -3 while decompressing data: incorrect header check"), False),
    (httpx.TooManyRedirects("Exceeded maximum allowed redirects."), False),
    (httpx.HTTPStatusError("404", request=_REQUEST, response=httpx.Response(404)), False),
    (httpx.InvalidURL("Invalid non-printable ASCII character in URL"), False),
    (httpx.CookieConflict("Multiple cookies exist with name=session"), False),
    (httpx.StreamConsumed(), False),
]


@pytest.mark.parametrize("call", WIRE_CALLS, ids=lambda call: call.name)
@pytest.mark.parametrize(
    ("raised", "retryable"),
    HTTPX_ERRORS,
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_every_httpx_exception_becomes_a_session_error_retryable_only_if_it_may_pass(
    manager: SessionManager,
    api: respx.MockRouter,
    ids: Ids,
    call: WireCall,
    raised: Exception,
    retryable: bool,
) -> None:
    call.route(api).mock(side_effect=raised)

    error = _raised_by(call, manager, ids)

    assert error.retryable is retryable
    assert error.code is None
    assert error.__cause__ is raised
    assert type(raised).__name__ in str(error)
    assert api.calls.call_count == 1


def test_a_client_closed_by_its_owner_is_a_non_retryable_session_error_and_sends_nothing(
    client: Client, offline: respx.MockRouter, ids: Ids
) -> None:
    manager = SessionManager(client)
    client.postgrest.session.close()

    error = _raised_by(GET_SESSION, manager, ids)

    assert error.retryable is False
    assert "closed" in str(error)
    assert isinstance(error.__cause__, RuntimeError)
    assert offline.calls.call_count == 0


# 3. Answers that are not the JSON the operation expects


@pytest.mark.parametrize(
    ("call", "response"),
    [
        (GET_SESSION, httpx.Response(200, text="<html>Sign in to the portal</html>")),
        (GET_SESSION, httpx.Response(200, json=[{"id": "x"}])),
        (GET_SESSION, httpx.Response(200, json=None)),
        (
            GET_SESSION,
            httpx.Response(200, content=b"\x80\x81", headers={"Content-Type": OBJECT_MEDIA_TYPE}),
        ),
        (GET_SESSION, httpx.Response(200, text='{"id": "truncated')),
        (GET_SESSION_BY_CONVERSATION, httpx.Response(200, text="<html>maintenance</html>")),
        (GET_SESSION_BY_CONVERSATION, httpx.Response(200)),
        (GET_SESSION_BY_CONVERSATION, httpx.Response(204)),
        (GET_SESSION_BY_CONVERSATION, httpx.Response(200, json={"id": "x"})),
        (GET_TURNS, httpx.Response(204)),
        (UPDATE_STATE, httpx.Response(204)),
        (UPDATE_SESSION_WITH_VERSION, httpx.Response(200, json=[])),
        (ADD_TURN, httpx.Response(200, text="OK")),
        (CREATE_SESSION, httpx.Response(200, content=b"\xff\xfe\xfd")),
    ],
    ids=[
        "object expected, html",
        "object expected, array",
        "object expected, null",
        "object expected, bytes that are not text",
        "object expected, truncated json",
        "array expected, html",
        "array expected, empty 200",
        "array expected, 204",
        "array expected, object",
        "embedded read, 204",
        "patch, 204",
        "guarded patch, array",
        "function, text",
        "function, bytes that are not text",
    ],
)
def test_an_answer_that_is_not_the_expected_json_is_a_non_retryable_session_error(
    manager: SessionManager,
    api: respx.MockRouter,
    ids: Ids,
    call: WireCall,
    response: httpx.Response,
) -> None:
    call.route(api).mock(return_value=response)

    error = _raised_by(call, manager, ids)

    assert error.retryable is False
    assert error.code is None
    assert f"HTTP {response.status_code}" in str(error)
    assert api.calls.call_count == 1


def test_a_function_answering_204_is_a_non_retryable_session_error_not_a_turn(
    manager: SessionManager, api: respx.MockRouter, ids: Ids
) -> None:
    ADD_TURN.route(api).mock(return_value=httpx.Response(204))

    error = _raised_by(ADD_TURN, manager, ids)

    assert error.retryable is False
    assert error.__cause__ is not None
