"""The Supabase path on the real test database: supabase-py clients over the PostgREST emulator.

The clients are built the way `create_admin_client` and `create_async_admin_client` build
theirs (an injected HTTP/1.1 httpx client with a finite timeout, the same `_ADMIN_OPTIONS`),
except that the httpx client's transport is a `PostgrestEmulator` on the strict-regime
database: the managers, their Supabase transports, postgrest-py and httpx all run as in
production, and only the socket is replaced. The fixtures are re-exported by
tests/db/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest
from supabase import AsyncClient, AsyncClientOptions, Client, ClientOptions, create_client

from agent_engine import AgentRegistry, AsyncSessionManager, SessionManager
from agent_engine.settings import _ADMIN_OPTIONS, DEFAULT_TIMEOUT
from tests.managers import Managers
from tests.postgrest_emulator import PostgrestEmulator

if TYPE_CHECKING:
    from tests.db.conftest import Database

PROJECT_URL = "https://emulated-project.supabase.co"
"""Never contacted: the emulator answers every request before it would leave httpx."""
SERVICE_KEY = "sb_secret_emulated-project"
"""Made up; shaped like a secret key so that the client and the settings accept it."""


def supabase_client(emulator: PostgrestEmulator) -> Client:
    """A service-role supabase.Client whose HTTP requests the emulator answers."""
    http_client = httpx.Client(
        transport=emulator, http2=False, timeout=httpx.Timeout(DEFAULT_TIMEOUT)
    )
    return create_client(
        PROJECT_URL, SERVICE_KEY, ClientOptions(httpx_client=http_client, **_ADMIN_OPTIONS)
    )


def async_supabase_client(emulator: PostgrestEmulator) -> AsyncClient:
    """A service-role supabase.AsyncClient whose HTTP requests the emulator answers."""
    http_client = httpx.AsyncClient(
        transport=emulator, http2=False, timeout=httpx.Timeout(DEFAULT_TIMEOUT)
    )
    options = AsyncClientOptions(httpx_client=http_client, **_ADMIN_OPTIONS)
    return AsyncClient(PROJECT_URL, SERVICE_KEY, options)


def supabase_manager(
    managers: Managers, emulator: PostgrestEmulator, *, registry: AgentRegistry | None = None
) -> SessionManager:
    """A manager of the flavour over a client of the emulator; it owns its HTTP client.

    Closing it (`close()`, or `aclose()` for the async one) closes the httpx client, whose
    closing closes the emulator's idle connections.
    """
    from agent_engine._async.postgrest_transport import AsyncPostgrestTransport
    from agent_engine._sync.postgrest_transport import PostgrestTransport

    if managers.is_async:
        transport = AsyncPostgrestTransport(async_supabase_client(emulator), owns_client=True)
        return managers.driven(AsyncSessionManager(transport, registry=registry))
    return SessionManager(
        PostgrestTransport(supabase_client(emulator), owns_client=True), registry=registry
    )


@pytest.fixture
def emulator(database: Database) -> Iterator[PostgrestEmulator]:
    """PostgREST, emulated in process on the strict-regime database, as service_role."""
    emulated = PostgrestEmulator(database.dsn)
    try:
        yield emulated
    finally:
        emulated.close()


@pytest.fixture
def supabase_path(managers: Managers, emulator: PostgrestEmulator) -> Iterator[SessionManager]:
    """SessionManager or AsyncSessionManager (per `flavour`) on the Supabase path."""
    manager = supabase_manager(managers, emulator)
    try:
        yield manager
    finally:
        manager.close()


@pytest.fixture
def direct_path(managers: Managers, database: Database) -> Iterator[SessionManager]:
    """The same flavour of manager on the direct transport (`from_postgres`)."""
    manager = managers.from_postgres(database.dsn)
    try:
        yield manager
    finally:
        manager.close()
