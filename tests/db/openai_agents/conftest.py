"""An AsyncSessionManager on the test database for the OpenAI Agents SDK adapter's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agent_engine import AsyncSessionManager
from agent_engine._async.postgrest_transport import AsyncPostgrestTransport
from tests.db.conftest import Database
from tests.db.supabase_path import async_supabase_client
from tests.postgrest_emulator import PostgrestEmulator

RUNS = 8


@pytest.fixture(params=["direct", "supabase"])
async def manager(
    request: pytest.FixtureRequest, database: Database
) -> AsyncIterator[AsyncSessionManager]:
    """A manager without a registry, one connection per concurrent run: on the direct
    transport, or on the Supabase path (a supabase.AsyncClient over the PostgREST emulator)."""
    if request.param == "direct":
        async with AsyncSessionManager.from_postgres(database.dsn, pool_size=RUNS) as manager:
            yield manager
        return
    emulator = PostgrestEmulator(database.dsn, max_idle=RUNS)
    transport = AsyncPostgrestTransport(async_supabase_client(emulator), owns_client=True)
    try:
        async with AsyncSessionManager(transport) as manager:
            yield manager
    finally:
        emulator.close()
