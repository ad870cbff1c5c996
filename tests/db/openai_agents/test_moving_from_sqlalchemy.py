"""README's way from the SDK's SQLAlchemySession to AgentEngineSession, on one database: the
SDK's tables renamed, agent_engine's migrations applied beside them, the history copied."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from agents import Runner
from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agent_engine import AsyncSessionManager
from agent_engine.integrations.openai_agents import AgentEngineSession
from tests.db.conftest import Database, DatabaseFactory, apply_migrations
from tests.db.openai_agents.scripted_model import RUN_CONFIG, ScriptedModel, shoe_agent

pytestmark = [pytest.mark.db, pytest.mark.anyio]

RENAME_SDK_TABLES = """
alter table public.agent_sessions rename to sdk_agent_sessions;
alter table public.agent_messages rename to sdk_agent_messages;
"""
"""The README's statements, run before agent_engine's migrations."""


@pytest.fixture
def sdk_database(databases: DatabaseFactory) -> Database:
    """A Supabase project that used SQLAlchemySession and not yet agent_engine."""
    return databases.create("strict", migrate=False)


@pytest.fixture
async def engine(sdk_database: Database) -> AsyncIterator[AsyncEngine]:
    async def connect() -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(sdk_database.dsn)

    # The test server's DSN may be in key=value form: SQLAlchemy gets connections from psycopg.
    engine = create_async_engine("postgresql+psycopg://", async_creator=connect)
    yield engine
    await engine.dispose()


async def test_the_sdk_tables_renamed_live_beside_agent_engine_and_the_history_moves(
    sdk_database: Database, engine: AsyncEngine
) -> None:
    before = SQLAlchemySession("+5511999990003", engine=engine, create_tables=True)
    await Runner.run(shoe_agent(ScriptedModel()), "Size 42?", session=before, run_config=RUN_CONFIG)
    history = await before.get_items()

    with psycopg.connect(sdk_database.dsn, autocommit=True) as connection:
        with connection.transaction():
            connection.execute(RENAME_SDK_TABLES.encode())
        apply_migrations(connection)

    workspace_id = uuid.uuid4()
    old = SQLAlchemySession(
        "+5511999990003",
        engine=engine,
        sessions_table="sdk_agent_sessions",
        messages_table="sdk_agent_messages",
    )
    async with AsyncSessionManager.from_postgres(sdk_database.dsn) as sessions:
        new = AgentEngineSession("+5511999990003", sessions, workspace_id=workspace_id)
        if not await new.get_items(limit=1):
            await new.add_items(await old.get_items())

        assert await old.get_items() == history  # the SDK's store still works
        assert await new.get_items() == history
        await Runner.run(shoe_agent(ScriptedModel()), "Thanks", session=new, run_config=RUN_CONFIG)
        assert (await new.get_items())[: len(history)] == history
