"""Fixtures for the SessionManager unit tests: a real supabase client over respx, no network.

The manager is built the way users build it (`create_admin_client(Settings(...))`), so the
requests under test are the ones supabase-py really sends. Responses are shaped like real
PostgREST's (see /work/shared/postgrest-notes.md): rows as Postgres `to_jsonb` renders them
(uuids as strings, timestamptz with microseconds and offset), errors as
`{"code", "message", "details", "hint"}` with PostgREST's HTTP status.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
import respx
from anyio.from_thread import BlockingPortal
from supabase import AsyncClient, Client

from agent_engine import (
    AgentRegistry,
    AsyncSessionManager,
    SessionManager,
    Settings,
    create_admin_client,
    create_async_admin_client,
)
from tests.managers import Managers
from tests.postgrest_responses import error_response

PROJECT_URL = "https://abcdefghijklmnopqrst.supabase.co"
REST_URL = f"{PROJECT_URL}/rest/v1"


def _base64url(claims: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()


LEGACY_SERVICE_ROLE_KEY = ".".join(
    (
        _base64url({"alg": "HS256", "typ": "JWT"}),
        _base64url(
            {"iss": "supabase", "ref": "abcdefghijklmnopqrst", "role": "service_role", "iat": 1}
        ),
        "c2VydmljZS1yb2xlLXNpZ25hdHVyZS1ub3QtY2hlY2tlZC1ieS10aGUtY2xpZW50",
    )
)
"""A legacy JWT key whose payload has role service_role (the client never checks the signature)."""

SECRET_KEY = "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz"
"""A new-style opaque secret key, which acts as service_role."""

OBJECT_MEDIA_TYPE = "application/vnd.pgrst.object+json"
"""The Accept header that makes PostgREST answer one object (or PGRST116)."""

AGENT_ID = "support-bot"
OTHER_AGENT_ID = "sales-bot"

TIMESTAMP = "2026-11-24T10:15:30.123456+00:00"
TIMESTAMP_VALUE = datetime(2026, 11, 24, 10, 15, 30, 123456, tzinfo=UTC)
LATER_TIMESTAMP = "2026-11-24T10:16:02.654321+00:00"
LATER_TIMESTAMP_VALUE = datetime(2026, 11, 24, 10, 16, 2, 654321, tzinfo=UTC)

JSONRow = dict[str, Any]


# Clients and managers


def build_client(key: str = LEGACY_SERVICE_ROLE_KEY) -> Client:
    """A service-role client exactly as users build it (GET retry off, own httpx client)."""
    return create_admin_client(Settings(supabase_url=PROJECT_URL, supabase_service_role_key=key))


def sample_registry() -> AgentRegistry:
    """Two agents: the support bot (states with valid_transitions) and a sales bot."""
    registry = AgentRegistry()
    prompts = {"model": "gpt-4o-mini", "system_prompt": "You classify the user's intent."}
    registry.register(
        {
            "id": AGENT_ID,
            "name": "Support bot",
            "intent_detector": prompts,
            "orchestrator": {**prompts, "system_prompt": "You help customers."},
            "states": ["greeting", "qualifying", "scheduling", "closing"],
            "initial_state": "greeting",
            "valid_transitions": {
                "greeting": ["qualifying"],
                "qualifying": ["greeting", "scheduling"],
                "scheduling": ["closing"],
            },
        }
    )
    registry.register(
        {
            "id": OTHER_AGENT_ID,
            "name": "Sales bot",
            "intent_detector": prompts,
            "orchestrator": {**prompts, "system_prompt": "You sell things."},
            "states": ["pitching", "scheduling"],
            "initial_state": "pitching",
            "valid_transitions": {"pitching": ["scheduling"]},
        }
    )
    return registry


@pytest.fixture(scope="session")
def shared_client() -> Iterator[Client]:
    """One client for the managers of every test (building one costs ~50 ms); never closed by
    them, since a manager leaves a client passed in open."""
    supabase_client = build_client()
    yield supabase_client
    supabase_client.postgrest.session.close()


@pytest.fixture
def client() -> Iterator[Client]:
    """A client of this test alone, for tests that close it."""
    supabase_client = build_client()
    yield supabase_client
    supabase_client.postgrest.session.close()


def build_async_client(key: str = LEGACY_SERVICE_ROLE_KEY) -> AsyncClient:
    """The async twin of build_client (create_async_admin_client)."""
    return create_async_admin_client(
        Settings(supabase_url=PROJECT_URL, supabase_service_role_key=key)
    )


@pytest.fixture(scope="session")
def shared_async_client(portal: BlockingPortal) -> Iterator[AsyncClient]:
    """One async client for the async managers of every test; its HTTP connections belong to
    the portal's event loop, where every async manager runs."""
    supabase_client = build_async_client()
    yield supabase_client
    portal.call(supabase_client.postgrest.session.aclose)


def manager_over_client(
    managers: Managers,
    shared_client: Client,
    shared_async_client: AsyncClient,
    registry: AgentRegistry | None = None,
) -> SessionManager:
    """A manager of the flavour under test over the shared client of that flavour."""
    if managers.is_async:
        return managers.driven(AsyncSessionManager(shared_async_client, registry=registry))
    return SessionManager(shared_client, registry=registry)


@pytest.fixture
def manager(
    managers: Managers, shared_client: Client, shared_async_client: AsyncClient
) -> SessionManager:
    """A manager without registry, over a client passed in (the manager does not own it);
    once as SessionManager and once as AsyncSessionManager."""
    return manager_over_client(managers, shared_client, shared_async_client)


@pytest.fixture
def registry() -> AgentRegistry:
    return sample_registry()


@pytest.fixture
def registry_manager(
    managers: Managers,
    shared_client: Client,
    shared_async_client: AsyncClient,
    registry: AgentRegistry,
) -> SessionManager:
    """A manager whose registry validates agents and mode transitions (both flavours)."""
    return manager_over_client(managers, shared_client, shared_async_client, registry)


# The mocked PostgREST


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    """PostgREST under respx: every route declared must be called, nothing else is allowed."""
    with respx.mock(base_url=REST_URL, assert_all_called=True) as router:
        yield router


@pytest.fixture
def offline() -> Iterator[respx.MockRouter]:
    """PostgREST under respx answering anything with 500, so a test can assert zero requests."""
    with respx.mock(base_url=REST_URL, assert_all_called=False) as router:
        router.route().respond(
            500, json={"code": "XX000", "message": "unexpected", "details": None, "hint": None}
        )
        yield router


def object_response(row: JSONRow, status: int = 200) -> httpx.Response:
    """PostgREST's answer to a request with `Accept: application/vnd.pgrst.object+json`."""
    return httpx.Response(
        status,
        json=row,
        headers={
            "Content-Type": f"{OBJECT_MEDIA_TYPE}; charset=utf-8",
            "Content-Range": "0-0/*",
        },
    )


def array_response(rows: list[JSONRow]) -> httpx.Response:
    """PostgREST's answer to a plain read: a JSON array and the range it covers."""
    content_range = f"0-{len(rows) - 1}/*" if rows else "*/0"
    return httpx.Response(
        200,
        json=rows,
        headers={"Content-Type": "application/json; charset=utf-8", "Content-Range": content_range},
    )


def rpc_response(result: JSONRow) -> httpx.Response:
    """PostgREST's answer to `POST /rpc/fn` for a function returning json: the value itself."""
    return httpx.Response(
        200, json=result, headers={"Content-Type": "application/json; charset=utf-8"}
    )


def no_rows_response() -> httpx.Response:
    """406 PGRST116: an object was requested and zero rows matched (a write is rolled back)."""
    return error_response(
        406,
        "PGRST116",
        "Cannot coerce the result to a single JSON object",
        "The result contains 0 rows",
    )


def session_not_found_response(session_id: UUID, workspace_id: UUID) -> httpx.Response:
    """A function raising SQLSTATE PT404 for a session missing from the workspace."""
    return error_response(
        404, "PT404", f"session {session_id} not found in workspace {workspace_id}"
    )


# Requests as recorded by respx


def query_items(request: httpx.Request) -> list[tuple[str, str]]:
    """The parsed query string, sorted: comparing these ignores parameter order only."""
    return sorted(request.url.params.multi_items())


def json_body(request: httpx.Request) -> Any:
    return json.loads(request.content)


def assert_service_key_sent(request: httpx.Request, key: str = LEGACY_SERVICE_ROLE_KEY) -> None:
    assert request.headers["apikey"] == key
    assert request.headers["authorization"] == f"Bearer {key}"


# Ids and rows


@dataclass(frozen=True)
class Ids:
    """The identifiers one test works with (fresh for every test)."""

    workspace_id: UUID
    session_id: UUID
    conversation_id: UUID
    contact_id: UUID
    turn_id: UUID


@pytest.fixture
def ids() -> Ids:
    return Ids(uuid4(), uuid4(), uuid4(), uuid4(), uuid4())


class Rows:
    """Rows as the SQL functions and PostgREST render them with to_jsonb."""

    def __init__(self, ids: Ids) -> None:
        self.ids = ids

    def session(self, **overrides: Any) -> JSONRow:
        """An agent_sessions row."""
        row: JSONRow = {
            "id": str(self.ids.session_id),
            "workspace_id": str(self.ids.workspace_id),
            "agent_id": AGENT_ID,
            "conversation_id": str(self.ids.conversation_id),
            "contact_id": str(self.ids.contact_id),
            "version": 3,
            "status": "active",
            "current_mode": "qualifying",
            "turn_count": 4,
            "tokens_used": 812,
            "created_at": TIMESTAMP,
            "updated_at": LATER_TIMESTAMP,
            "last_activity_at": LATER_TIMESTAMP,
        }
        return {**row, **overrides}

    def state(self, **overrides: Any) -> JSONRow:
        """A session_state row."""
        row: JSONRow = {
            "session_id": str(self.ids.session_id),
            "workspace_id": str(self.ids.workspace_id),
            "intents_seen": [
                {"intent": "greeting", "order": 1, "seen_at": TIMESTAMP},
                {"intent": "pricing", "order": 2, "seen_at": LATER_TIMESTAMP},
            ],
            "templates_sent": ["welcome_v2"],
            "captured_data": {"name": "Ana", "budget": 1500.5, "tags": ["vip"], "email": None},
            "updated_at": LATER_TIMESTAMP,
        }
        return {**row, **overrides}

    def session_with_state(self, state: JSONRow | None = None, **overrides: Any) -> JSONRow:
        """A session with its state under `session_state` (embedded or built by a function)."""
        return {**self.session(**overrides), "session_state": state or self.state()}

    def turn(self, turn_number: int = 1, **overrides: Any) -> JSONRow:
        """An agent_turns row."""
        row: JSONRow = {
            "id": str(self.ids.turn_id) if turn_number == 1 else str(uuid4()),
            "session_id": str(self.ids.session_id),
            "workspace_id": str(self.ids.workspace_id),
            "turn_number": turn_number,
            "role": "user",
            "content": f"message {turn_number}",
            "intent_detected": "pricing",
            "confidence": 92.5,
            "tools_called": [],
            "tokens_used": 120,
            "idempotency_key": None,
            "metadata": {},
            "created_at": TIMESTAMP,
        }
        return {**row, **overrides}


@pytest.fixture
def rows(ids: Ids) -> Rows:
    return Rows(ids)
