"""An AsyncSessionManager on the test database for the OpenAI Agents SDK adapter's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agent_engine import AsyncSessionManager
from tests.db.conftest import Database

RUNS = 8


@pytest.fixture
async def manager(database: Database) -> AsyncIterator[AsyncSessionManager]:
    """A manager without a registry, one connection per concurrent run."""
    async with AsyncSessionManager.from_postgres(database.dsn, pool_size=RUNS) as manager:
        yield manager
