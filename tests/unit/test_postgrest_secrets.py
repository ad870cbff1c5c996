"""No key in anything an error carries on the Supabase path, even when httpx quotes it.

A key holding a line break or an accent (pasted with it, built into a client by hand) makes
httpx fail with the key in its message: h11's "Illegal header value b'...'" when sending
(which httpcore also logs at DEBUG level), a UnicodeEncodeError holding it while building
the PostgREST client. Errors chain their causes, so the whole chain, the error's str, repr
and to_dict, and every log record must stay free of the key.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import h11
import httpcore
import httpx
import pytest
import respx
from supabase import AsyncClient, AsyncClientOptions, Client, ClientOptions, create_client

from agent_engine import (
    AgentEngineError,
    AsyncSessionManager,
    ConfigError,
    SessionError,
    SessionManager,
)
from agent_engine._transport import RedactedError
from tests.unit.conftest import LEGACY_SERVICE_ROLE_KEY, PROJECT_URL, Ids

KEY_PARTS = ("sb_secret_Qm9yZGVyQ29sbGll", "U2VjcmV0UGFydA")
"""Two halves of a key: each is distinctive, so finding either one means the key leaked."""


def _hand_built_client(key: str) -> Client:
    """A client built with supabase's create_client directly, bypassing Settings' checks."""
    options = ClientOptions(httpx_client=httpx.Client(http2=False), postgrest_client_retry=False)
    return create_client(PROJECT_URL, key, options)


def _h11_sends(request: httpx.Request) -> httpx.Response:
    """What httpcore does first with a request on HTTP/1.1: h11 serialises its headers.

    respx replaces httpcore's connection pool, so h11's refusal of an illegal header value
    is reproduced here, raised as httpcore raises it (httpx maps it to its own exception).
    """
    connection = h11.Connection(h11.CLIENT)
    headers = [(b"host", request.url.netloc), *request.headers.raw]
    try:
        connection.send(
            h11.Request(method=request.method, target=request.url.raw_path, headers=headers)
        )
    except h11.LocalProtocolError as error:
        raise httpcore.LocalProtocolError(error) from error
    return httpx.Response(200, json={})


def _chain(error: BaseException) -> Iterator[BaseException]:
    """`error` and every exception reachable through __cause__ and __context__."""
    seen: set[int] = set()
    pending = [error]
    while pending:
        current = pending.pop()
        if id(current) not in seen:
            seen.add(id(current))
            yield current
            pending += [link for link in (current.__cause__, current.__context__) if link]


def _assert_no_key_anywhere(error: AgentEngineError, logged: str, parts: tuple[str, ...]) -> None:
    texts = [json.dumps(error.to_dict()), logged]
    for link in _chain(error):
        texts += [str(link), repr(link), *(repr(arg) for arg in link.args)]
    for text in texts:
        for part in parts:
            assert part not in text


@pytest.mark.parametrize(
    "key",
    [f"{KEY_PARTS[0]}\n{KEY_PARTS[1]}", f"{KEY_PARTS[0]}é{KEY_PARTS[1]}"],
    ids=["line break", "accent"],
)
@pytest.mark.parametrize("manager_class", [SessionManager, AsyncSessionManager])
def test_a_client_whose_key_cannot_be_sent_is_refused_with_config_error_not_showing_it(
    offline: respx.MockRouter,
    caplog: pytest.LogCaptureFixture,
    key: str,
    manager_class: type[SessionManager] | type[AsyncSessionManager],
) -> None:
    caplog.set_level(logging.DEBUG)
    client: Any = (
        _hand_built_client(key)
        if manager_class is SessionManager
        else AsyncClient(PROJECT_URL, key, AsyncClientOptions(postgrest_client_retry=False))
    )

    with pytest.raises(ConfigError) as caught:
        manager_class(client)

    error = caught.value
    assert error.retryable is False
    assert "visible ASCII" in str(error)
    _assert_no_key_anywhere(error, caplog.text, KEY_PARTS)
    assert offline.calls.call_count == 0


def test_a_header_httpx_refuses_when_sending_is_non_retryable_and_its_token_never_shown(
    client: Client, api: respx.MockRouter, ids: Ids, caplog: pytest.LogCaptureFixture
) -> None:
    # The Authorization header changed after the manager was built (postgrest.auth(), as an
    # auth event does), to a token h11 refuses to send.
    manager = SessionManager(client)
    client.postgrest.auth(f"{KEY_PARTS[0]}\n{KEY_PARTS[1]}")
    api.get("/agent_sessions").mock(side_effect=_h11_sends)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(SessionError) as caught:
        manager.get_session(ids.session_id, workspace_id=ids.workspace_id)

    error = caught.value
    assert type(error) is SessionError
    assert error.retryable is False
    assert error.code is None
    assert "LocalProtocolError" in str(error)
    assert isinstance(error.__cause__, RedactedError)
    assert "Illegal header value b'***'" in str(error.__cause__)
    _assert_no_key_anywhere(error, caplog.text, KEY_PARTS)


def test_a_server_message_quoting_the_key_is_masked_in_the_error_and_its_cause(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, caplog: pytest.LogCaptureFixture
) -> None:
    api.post("/rpc/agent_engine_add_turn").mock(
        return_value=httpx.Response(
            401,
            json={
                "message": f"Invalid API key {LEGACY_SERVICE_ROLE_KEY}",
                "hint": f"apikey: {LEGACY_SERVICE_ROLE_KEY}",
            },
        )
    )
    caplog.set_level(logging.DEBUG)

    with pytest.raises(SessionError) as caught:
        manager.add_turn(ids.session_id, workspace_id=ids.workspace_id, role="user", content="a")

    error = caught.value
    assert "Invalid API key ***" in str(error)
    assert error.hint == "apikey: ***"
    assert isinstance(error.__cause__, RedactedError)
    signature = LEGACY_SERVICE_ROLE_KEY.rsplit(".", 1)[-1]
    _assert_no_key_anywhere(error, caplog.text, (LEGACY_SERVICE_ROLE_KEY, signature))
