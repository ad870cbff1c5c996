"""What AgentEngineSession costs on the wire: one request per SDK call once the manager knows
the conversation's session row, and one get-or-create before the first."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from agents import Runner

from agent_engine import AsyncSessionManager, Call, Select
from agent_engine._async.postgres_transport import AsyncPostgresTransport
from agent_engine.integrations.openai_agents import AgentEngineSession
from tests.db.conftest import Database
from tests.db.openai_agents.scripted_model import RUN_CONFIG, ScriptedModel, shoe_agent
from tests.managers import _AsyncSpy

pytestmark = [pytest.mark.db, pytest.mark.anyio]

USER_MESSAGE = {"role": "user", "content": "Size 42?"}


@pytest.fixture
async def spy(database: Database) -> AsyncIterator[_AsyncSpy]:
    spy = _AsyncSpy(AsyncPostgresTransport.connect(database.dsn, pool_size=2))
    yield spy
    await spy.aclose()


@pytest.fixture
def spied(spy: _AsyncSpy) -> AsyncSessionManager:
    return AsyncSessionManager(spy)


def called(spy: _AsyncSpy) -> list[str]:
    """What each request did: the SQL function called, or the table read."""
    names = [
        request.function if isinstance(request, Call) else f"select {request.table}"
        for request in spy.requests
        if isinstance(request, Call | Select)
    ]
    assert len(names) == len(spy.requests)
    spy.requests.clear()
    return names


async def test_each_sdk_call_is_one_request_after_the_first_finds_the_session(
    spied: AsyncSessionManager, spy: _AsyncSpy, workspace_id: uuid.UUID
) -> None:
    session = AgentEngineSession("costs", spied, workspace_id=workspace_id)

    await session.add_items([USER_MESSAGE])  # type: ignore[list-item]
    assert called(spy) == ["agent_engine_get_or_create_session", "agent_engine_add_turns"]

    await session.add_items([USER_MESSAGE, USER_MESSAGE])  # type: ignore[list-item]
    assert called(spy) == ["agent_engine_add_turns"]
    await session.get_items(limit=2)
    assert called(spy) == ["agent_engine_get_recent_turns"]
    await session.get_items()
    assert called(spy) == ["select agent_sessions"]
    await session.pop_item()
    assert called(spy) == ["agent_engine_pop_turn"]
    await session.clear_session()
    assert called(spy) == ["agent_engine_clear_turns"]

    # A session object per request: the manager remembers the conversation's row.
    await AgentEngineSession("costs", spied, workspace_id=workspace_id).get_items(limit=5)
    assert called(spy) == ["agent_engine_get_recent_turns"]


async def test_a_run_reads_once_and_writes_once_per_batch_the_sdk_saves(
    spied: AsyncSessionManager, spy: _AsyncSpy, workspace_id: uuid.UUID
) -> None:
    session = AgentEngineSession("a run", spied, workspace_id=workspace_id)
    await session.get_items(limit=1)
    called(spy)

    await Runner.run(
        shoe_agent(ScriptedModel()), "Size 42?", session=session, run_config=RUN_CONFIG
    )

    # The history, then the input, the tool call with its output, and the reply.
    assert called(spy) == ["select agent_sessions"] + ["agent_engine_add_turns"] * 3


async def test_a_session_deleted_since_is_created_anew_and_the_call_goes_there(
    spied: AsyncSessionManager, spy: _AsyncSpy, workspace_id: uuid.UUID
) -> None:
    session = AgentEngineSession("erased", spied, workspace_id=workspace_id)
    await session.add_items([USER_MESSAGE])  # type: ignore[list-item]
    items = await session.get_items()
    stored = await spied.list_sessions(workspace_id=workspace_id)
    await spied.delete_session(stored.sessions[0].id, workspace_id=workspace_id)
    called(spy)

    await session.add_items([USER_MESSAGE])  # type: ignore[list-item]

    assert called(spy) == [
        "agent_engine_add_turns",  # on the deleted row: not found, nothing stored
        "agent_engine_get_or_create_session",
        "agent_engine_add_turns",
    ]
    assert await session.get_items() == items
