"""The OpenAI Agents SDK's own Runner drives AgentEngineSession: what a run stores, what the
next run sees, limits, undo, tenancy and concurrent runs on one conversation."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from agents import Runner, SessionSettings

from agent_engine import AgentSessionWithState, AsyncSessionManager, TurnRole
from agent_engine.integrations.openai_agents import (
    DEFAULT_AGENT_ID,
    AgentEngineSession,
    conversation_id_of,
)
from tests.db.conftest import Database
from tests.db.openai_agents.conftest import RUNS
from tests.db.openai_agents.scripted_model import (
    RUN_CONFIG,
    TOKENS_PER_CALL,
    ScriptedModel,
    call_id_for,
    reply_id_for,
    shoe_agent,
)

pytestmark = [pytest.mark.db, pytest.mark.anyio]


@dataclass
class Tenant:
    """A run context, as an app passes it to Runner.run(context=...)."""

    workspace_id: uuid.UUID


async def stored_session(
    manager: AsyncSessionManager, session_id: str, workspace_id: uuid.UUID
) -> AgentSessionWithState:
    """The agent_engine session row behind an SDK session id."""
    stored = await manager.get_session_by_conversation(
        conversation_id_of(session_id), DEFAULT_AGENT_ID, workspace_id=workspace_id
    )
    assert stored is not None
    return stored


def item_kinds(items: list[Any]) -> list[str]:
    return [item.get("type", "message") + ":" + item.get("role", "-") for item in items]


async def test_a_conversation_with_a_tool_call_is_stored_and_given_to_the_next_run(
    manager: AsyncSessionManager, workspace_id: uuid.UUID
) -> None:
    model = ScriptedModel()
    session = AgentEngineSession("whatsapp:+5511999990001", manager, workspace_id=workspace_id)

    first = await Runner.run(
        shoe_agent(model), "Do you have size 42?", session=session, run_config=RUN_CONFIG
    )
    second = await Runner.run(shoe_agent(model), "Thanks!", session=session, run_config=RUN_CONFIG)

    assert first.final_output == "We have 3 pairs in size 42."
    assert second.final_output == "We have 3 pairs in size 42."
    items = await session.get_items()
    assert (
        item_kinds(items)
        == [
            "message:user",
            "function_call:-",
            "function_call_output:-",
            "message:assistant",
        ]
        * 2
    )
    # The second run's model saw the whole first conversation, then the new message.
    assert model.inputs[2] == [*items[:4], {"content": "Thanks!", "role": "user"}]
    stored = await stored_session(manager, session.session_id, workspace_id)
    turns = await manager.get_turns(stored.id, workspace_id=workspace_id)
    assert [(turn.role, turn.content) for turn in turns[:4]] == [
        (TurnRole.USER, "Do you have size 42?"),
        (TurnRole.ASSISTANT, 'stock({"size": 42})'),
        (TurnRole.TOOL, "3 pairs in size 42"),
        (TurnRole.ASSISTANT, "We have 3 pairs in size 42."),
    ]
    # Four model calls, 15 tokens each, charged to the model's own items.
    assert stored.tokens_used == 4 * TOKENS_PER_CALL
    assert [turn.tokens_used for turn in turns[:4]] == [0, TOKENS_PER_CALL, 0, TOKENS_PER_CALL]


async def test_another_process_sees_the_same_history(
    manager: AsyncSessionManager, database: Database, workspace_id: uuid.UUID
) -> None:
    session = AgentEngineSession("thread-7", manager, workspace_id=workspace_id)
    await Runner.run(
        shoe_agent(ScriptedModel()), "Size 42?", session=session, run_config=RUN_CONFIG
    )

    program = (
        "import asyncio, json, sys\n"
        "from agent_engine import AsyncSessionManager\n"
        "from agent_engine.integrations.openai_agents import AgentEngineSession\n"
        "async def main():\n"
        "    async with AsyncSessionManager.from_postgres(sys.argv[1]) as manager:\n"
        "        session = AgentEngineSession('thread-7', manager, workspace_id=sys.argv[2])\n"
        "        print(json.dumps(await session.get_items()))\n"
        "asyncio.run(main())\n"
    )
    completed = subprocess.run(  # noqa: S603 (this interpreter, fixed program)
        [sys.executable, "-c", program, database.dsn, str(workspace_id)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )

    assert json.loads(completed.stdout) == await session.get_items()


async def test_get_items_limit_and_the_session_settings_limit_give_the_newest_items(
    manager: AsyncSessionManager, workspace_id: uuid.UUID
) -> None:
    model = ScriptedModel()
    session = AgentEngineSession("limits", manager, workspace_id=workspace_id)
    await Runner.run(shoe_agent(model), "Size 42?", session=session, run_config=RUN_CONFIG)
    everything = await session.get_items()

    assert await session.get_items(limit=2) == everything[-2:]
    assert await session.get_items(limit=0) == []
    assert await session.get_items(limit=1_500) == everything

    limited = AgentEngineSession(
        "limits", manager, workspace_id=workspace_id, session_settings=SessionSettings(limit=1)
    )
    await Runner.run(shoe_agent(model), "And 43?", session=limited, run_config=RUN_CONFIG)
    # The run's first model call saw the one newest stored item, then the new message.
    assert model.inputs[2] == [everything[-1], {"content": "And 43?", "role": "user"}]


async def test_pop_item_returns_the_stored_item_exactly_and_clear_session_empties_it(
    manager: AsyncSessionManager, workspace_id: uuid.UUID
) -> None:
    session = AgentEngineSession("undo", manager, workspace_id=workspace_id)
    await Runner.run(
        shoe_agent(ScriptedModel()), "Size 42?", session=session, run_config=RUN_CONFIG
    )
    before = await session.get_items()

    popped = await session.pop_item()

    assert popped == before[-1]
    assert await session.get_items() == before[:-1]
    await session.clear_session()
    assert await session.get_items() == []
    assert await session.pop_item() is None


async def test_two_tenants_with_the_same_session_id_never_see_each_other(
    manager: AsyncSessionManager,
) -> None:
    model = ScriptedModel()
    session = AgentEngineSession(
        "+5511999990002", manager, workspace_from_context=lambda context: context.workspace_id
    )
    alice, bob = Tenant(uuid.uuid4()), Tenant(uuid.uuid4())

    await Runner.run(
        shoe_agent(model), "Alice: size 37?", session=session, context=alice, run_config=RUN_CONFIG
    )
    await Runner.run(
        shoe_agent(model), "Bob: size 44?", session=session, context=bob, run_config=RUN_CONFIG
    )

    # Bob's first model call saw only his own message.
    assert model.inputs[2] == [{"content": "Bob: size 44?", "role": "user"}]
    alice_items = AgentEngineSession("+5511999990002", manager, workspace_id=alice.workspace_id)
    bob_items = AgentEngineSession("+5511999990002", manager, workspace_id=bob.workspace_id)
    assert (await alice_items.get_items())[0]["content"] == "Alice: size 37?"  # type: ignore[typeddict-item]
    assert (await bob_items.get_items())[0]["content"] == "Bob: size 44?"  # type: ignore[typeddict-item]
    assert len(await alice_items.get_items()) == len(await bob_items.get_items()) == 4


async def test_a_session_from_the_run_context_refuses_a_call_without_one(
    manager: AsyncSessionManager,
) -> None:
    session = AgentEngineSession(
        "no-context", manager, workspace_from_context=lambda context: context.workspace_id
    )

    with pytest.raises(ValueError, match="run context"):
        await session.get_items()


async def test_8_concurrent_runs_on_one_conversation_store_every_item_once_in_turn_order(
    manager: AsyncSessionManager, workspace_id: uuid.UUID
) -> None:
    model = ScriptedModel()

    async def run(index: int) -> None:
        # A session object per request, as a webhook handler builds it.
        session = AgentEngineSession("busy", manager, workspace_id=workspace_id)
        await Runner.run(
            shoe_agent(model), f"message {index}", session=session, run_config=RUN_CONFIG
        )

    await asyncio.gather(*(run(index) for index in range(RUNS)))

    session = AgentEngineSession("busy", manager, workspace_id=workspace_id)
    items = await session.get_items()
    stored = await stored_session(manager, "busy", workspace_id)
    turns = await manager.get_turns(stored.id, workspace_id=workspace_id)
    assert len(items) == RUNS * 4
    assert [turn.turn_number for turn in turns] == list(range(1, RUNS * 4 + 1))
    assert items == [turn.metadata["openai_agents_item"] for turn in turns]
    fingerprints = [json.dumps(item, sort_keys=True) for item in items]
    assert len(set(fingerprints)) == len(fingerprints)  # every item stored once
    for index in range(RUNS):
        # Each run's items, in the run's order: its message, the call, the output, the reply.
        message = f"message {index}"
        own = [
            item
            for item in items
            if item.get("content") == message
            or item.get("call_id") == call_id_for(message)
            or item.get("id") == reply_id_for(message)
        ]
        assert item_kinds(own) == [
            "message:user",
            "function_call:-",
            "function_call_output:-",
            "message:assistant",
        ]
    assert stored.tokens_used == RUNS * 2 * TOKENS_PER_CALL
