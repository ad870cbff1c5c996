"""Who closes the HTTP connections: the manager only closes a client it owns."""

from __future__ import annotations

from pathlib import Path

import pytest
import respx
from supabase import Client

import agent_engine._sync.session_manager as session_manager_module
from agent_engine import AgentRegistry, SessionManager, Settings, create_admin_client
from agent_engine._sync.postgrest_transport import PostgrestTransport
from tests.unit.conftest import (
    LEGACY_SERVICE_ROLE_KEY,
    PROJECT_URL,
    Ids,
    Rows,
    object_response,
)


def _http_is_closed(client: Client) -> bool:
    return client.postgrest.session.is_closed


def test_close_of_a_manager_owning_its_transport_closes_the_http_client(client: Client) -> None:
    manager = SessionManager(PostgrestTransport(client, owns_client=True))

    manager.close()

    assert _http_is_closed(client)


def test_close_of_a_manager_over_a_passed_in_client_leaves_the_client_open(
    client: Client, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    api.get("/session_state").mock(return_value=object_response(rows.state()))
    manager = SessionManager(client)

    manager.close()

    assert not _http_is_closed(client)
    state = SessionManager(client).get_state(ids.session_id, workspace_id=ids.workspace_id)
    assert state.session_id == ids.session_id


def test_a_transport_not_owning_its_client_leaves_it_open(client: Client) -> None:
    SessionManager(PostgrestTransport(client)).close()

    assert not _http_is_closed(client)


def test_leaving_the_context_manager_closes_an_owned_client(
    client: Client, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    api.get("/session_state").mock(return_value=object_response(rows.state()))

    with SessionManager(PostgrestTransport(client, owns_client=True)) as manager:
        manager.get_state(ids.session_id, workspace_id=ids.workspace_id)
        assert not _http_is_closed(client)

    assert _http_is_closed(client)


def test_leaving_the_context_manager_on_an_error_still_closes_an_owned_client(
    client: Client,
) -> None:
    with (
        pytest.raises(RuntimeError, match="boom"),
        SessionManager(PostgrestTransport(client, owns_client=True)),
    ):
        raise RuntimeError("boom")

    assert _http_is_closed(client)


def test_leaving_the_context_manager_leaves_a_passed_in_client_open(client: Client) -> None:
    with SessionManager(client):
        pass

    assert not _http_is_closed(client)


def test_from_env_builds_a_manager_that_owns_and_closes_its_client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    created: list[Client] = []

    def recording_create_admin_client(settings: Settings) -> Client:
        created.append(create_admin_client(settings))
        return created[-1]

    # session_manager imported the name, so that is where the recording one must go
    monkeypatch.setattr(
        session_manager_module, "create_admin_client", recording_create_admin_client
    )
    monkeypatch.chdir(tmp_path)  # no stray .env file
    monkeypatch.setenv("SUPABASE_URL", PROJECT_URL)
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", LEGACY_SERVICE_ROLE_KEY)
    registry = AgentRegistry()

    with SessionManager.from_env(registry=registry) as manager:
        assert manager.registry is registry
        assert len(created) == 1
        assert not _http_is_closed(created[0])

    assert _http_is_closed(created[0])
