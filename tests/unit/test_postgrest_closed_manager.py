"""A closed manager on the Supabase path refuses every call, sends nothing, and says why.

The refusal is a non-retryable SessionError (a retry loop must not spin on it), whether the
manager owns its client (from_env, PostgrestTransport(owns_client=True)) or was given one;
a client given to the manager stays open for its owner.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import respx
from supabase import Client

from agent_engine import SessionError, SessionManager, Settings
from agent_engine._sync.postgrest_transport import PostgrestTransport
from tests.unit.conftest import (
    AGENT_ID,
    LEGACY_SERVICE_ROLE_KEY,
    PROJECT_URL,
    Ids,
    Rows,
    build_client,
    object_response,
)

Method = Callable[[SessionManager, Ids], object]

METHODS: dict[str, Method] = {
    "create_session": lambda manager, ids: manager.create_session(
        workspace_id=ids.workspace_id,
        agent_id=AGENT_ID,
        conversation_id=ids.conversation_id,
        initial_mode="greeting",
    ),
    "get_or_create_session": lambda manager, ids: manager.get_or_create_session(
        workspace_id=ids.workspace_id,
        agent_id=AGENT_ID,
        conversation_id=ids.conversation_id,
        initial_mode="greeting",
    ),
    "get_session": lambda manager, ids: manager.get_session(
        ids.session_id, workspace_id=ids.workspace_id
    ),
    "get_session_by_conversation": lambda manager, ids: manager.get_session_by_conversation(
        ids.conversation_id, AGENT_ID, workspace_id=ids.workspace_id
    ),
    "update_session_with_version": lambda manager, ids: manager.update_session_with_version(
        ids.session_id, 3, workspace_id=ids.workspace_id, current_mode="scheduling"
    ),
    "close_session": lambda manager, ids: manager.close_session(
        ids.session_id, 3, workspace_id=ids.workspace_id
    ),
    "handoff_session": lambda manager, ids: manager.handoff_session(
        ids.session_id, 3, workspace_id=ids.workspace_id
    ),
    "pause_session": lambda manager, ids: manager.pause_session(
        ids.session_id, 3, workspace_id=ids.workspace_id
    ),
    "resume_session": lambda manager, ids: manager.resume_session(
        ids.session_id, 3, workspace_id=ids.workspace_id
    ),
    "mutate_session": lambda manager, ids: manager.mutate_session(
        ids.session_id, lambda session: {"current_mode": "closing"}, workspace_id=ids.workspace_id
    ),
    "get_state": lambda manager, ids: manager.get_state(
        ids.session_id, workspace_id=ids.workspace_id
    ),
    "update_state": lambda manager, ids: manager.update_state(
        ids.session_id, workspace_id=ids.workspace_id, templates_sent=["welcome_v2"]
    ),
    "add_intent_seen": lambda manager, ids: manager.add_intent_seen(
        ids.session_id, "pricing", workspace_id=ids.workspace_id
    ),
    "add_template_sent": lambda manager, ids: manager.add_template_sent(
        ids.session_id, "welcome_v2", workspace_id=ids.workspace_id
    ),
    "update_captured_data": lambda manager, ids: manager.update_captured_data(
        ids.session_id, {"name": "Ana"}, workspace_id=ids.workspace_id
    ),
    "add_turn": lambda manager, ids: manager.add_turn(
        ids.session_id, workspace_id=ids.workspace_id, role="user", content="hello"
    ),
    "get_turns": lambda manager, ids: manager.get_turns(
        ids.session_id, workspace_id=ids.workspace_id
    ),
    "get_total_tokens_used": lambda manager, ids: manager.get_total_tokens_used(
        ids.session_id, workspace_id=ids.workspace_id
    ),
    "get_turn_count": lambda manager, ids: manager.get_turn_count(
        ids.session_id, workspace_id=ids.workspace_id
    ),
}


@dataclass
class Built:
    """A manager, the client under it, and whether the manager owns that client."""

    manager: SessionManager
    client: Client
    owns_client: bool


def _from_env() -> Built:
    manager = SessionManager.from_env(
        settings=Settings(
            supabase_url=PROJECT_URL, supabase_service_role_key=LEGACY_SERVICE_ROLE_KEY
        )
    )
    transport = manager._transport
    assert isinstance(transport, PostgrestTransport)
    return Built(manager, transport._client, owns_client=True)


def _owning_transport() -> Built:
    client = build_client()
    return Built(SessionManager(PostgrestTransport(client, owns_client=True)), client, True)


def _given_client() -> Built:
    client = build_client()
    return Built(SessionManager(client), client, owns_client=False)


BUILDS: dict[str, Callable[[], Built]] = {
    "from_env": _from_env,
    "owning transport": _owning_transport,
    "given client": _given_client,
}


@pytest.fixture(params=list(BUILDS))
def built(request: pytest.FixtureRequest) -> Iterator[Built]:
    built = BUILDS[request.param]()
    yield built
    built.client.postgrest.session.close()


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_of_a_closed_manager_raises_non_retryable_closed_error_sending_nothing(
    built: Built, offline: respx.MockRouter, ids: Ids, method: str
) -> None:
    built.manager.close()

    with pytest.raises(SessionError) as caught:
        METHODS[method](built.manager, ids)

    error = caught.value
    assert type(error) is SessionError
    assert error.retryable is False
    assert "the session manager is closed" in str(error)
    assert error.workspace_id == ids.workspace_id
    assert error.to_dict()["retryable"] is False
    assert offline.calls.call_count == 0


def test_closing_a_manager_closes_the_client_it_owns_and_leaves_a_given_one_open(
    built: Built,
) -> None:
    built.manager.close()

    assert built.client.postgrest.session.is_closed is built.owns_client


def test_a_client_given_to_a_closed_manager_still_serves_a_new_manager(
    api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    built = _given_client()
    api.get("/agent_sessions").mock(return_value=object_response(rows.session_with_state()))
    try:
        built.manager.close()
        session = SessionManager(built.client).get_session(
            ids.session_id, workspace_id=ids.workspace_id
        )
    finally:
        built.client.postgrest.session.close()

    assert session.id == ids.session_id


def test_a_manager_used_as_a_context_manager_is_closed_on_exit(
    offline: respx.MockRouter, ids: Ids
) -> None:
    built = _given_client()
    try:
        with built.manager as manager:
            pass
        with pytest.raises(SessionError, match="the session manager is closed") as caught:
            manager.get_state(ids.session_id, workspace_id=ids.workspace_id)
    finally:
        built.client.postgrest.session.close()

    assert caught.value.retryable is False
    assert offline.calls.call_count == 0
