"""AgentEngineSession without a database: the SDK protocol, how items become turns, how
session ids become conversation ids, and what is refused before any request."""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import Any

import pytest
from agents.memory import Session

from agent_engine import AsyncSessionManager, TurnRole
from agent_engine.integrations._openai_items import describe, is_model_output, item_of, turn_of
from agent_engine.integrations.openai_agents import (
    SESSION_ID_NAMESPACE,
    AgentEngineSession,
    conversation_id_of,
)


class NoWire:
    """An async transport that fails the test if anything reaches it."""

    async def execute(self, request: Any) -> Any:
        raise AssertionError(f"a request reached the transport: {request}")

    async def aclose(self) -> None:
        return None


@pytest.fixture
def manager() -> AsyncSessionManager:
    return AsyncSessionManager(NoWire())


def test_it_is_an_sdk_session(manager: AsyncSessionManager) -> None:
    session: Session = AgentEngineSession("s", manager, workspace_id=uuid.uuid4())

    assert isinstance(session, Session)
    assert session.session_id == "s"
    assert session.session_settings is None


@pytest.mark.parametrize(
    ("item", "role", "content"),
    [
        ({"role": "user", "content": "Olá"}, TurnRole.USER, "Olá"),
        ({"role": "developer", "content": "Be brief."}, TurnRole.SYSTEM, "Be brief."),
        (
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Hi", "annotations": []}],
            },
            TurnRole.ASSISTANT,
            "Hi",
        ),
        (
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "This one?"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                ],
            },
            TurnRole.USER,
            "This one?\n[image]",
        ),
        (
            {"type": "function_call", "name": "stock", "arguments": '{"size": 42}', "call_id": "c"},
            TurnRole.ASSISTANT,
            'stock({"size": 42})',
        ),
        (
            {"type": "function_call_output", "call_id": "c", "output": "3 pairs"},
            TurnRole.TOOL,
            "3 pairs",
        ),
        ({"type": "reasoning", "id": "r", "summary": []}, TurnRole.ASSISTANT, "[reasoning]"),
        ({"type": "web_search_call", "id": "w"}, TurnRole.ASSISTANT, "[web_search_call]"),
        ({"role": "user", "content": "   "}, TurnRole.USER, "[message]"),
    ],
    ids=[
        "user text",
        "developer",
        "assistant parts",
        "image",
        "tool call",
        "tool output",
        "reasoning",
        "hosted tool",
        "blank",
    ],
)
def test_an_item_becomes_a_turn_with_a_readable_role_and_text_and_itself_in_metadata(
    item: dict[str, Any], role: TurnRole, content: str
) -> None:
    assert describe(item) == (role, content)
    turn = turn_of(item)
    assert turn["metadata"] == {"openai_agents_item": item}
    assert item_of(role, content, turn["metadata"]) == item


def test_a_turn_the_app_wrote_itself_comes_back_as_a_message() -> None:
    assert item_of(TurnRole.USER, "hi", {}) == {"role": "user", "content": "hi"}
    assert item_of(TurnRole.TOOL, "ok", {"channel": "x"}) == {"role": "assistant", "content": "ok"}


def test_tokens_go_to_what_a_model_produced() -> None:
    assert is_model_output({"type": "function_call", "name": "f"})
    assert is_model_output({"type": "message", "role": "assistant", "content": []})
    assert is_model_output({"type": "file_search_call", "id": "f"})
    assert not is_model_output({"role": "user", "content": "hi"})
    assert not is_model_output({"type": "function_call_output", "output": "x"})


def test_a_uuid_session_id_is_the_conversation_id_and_any_other_string_a_stable_uuid5() -> None:
    known = uuid.uuid4()

    assert conversation_id_of(str(known)) == known
    assert conversation_id_of(known.hex.upper()) == known
    assert conversation_id_of("whatsapp:+5511999990000") == uuid.uuid5(
        SESSION_ID_NAMESPACE, "whatsapp:+5511999990000"
    )
    # Fixed forever: stored conversations are found by it.
    assert conversation_id_of("whatsapp:+5511999990000") == uuid.UUID(
        "841d218a-e62b-570b-aa03-54ac7384f7e8"
    )


@pytest.mark.parametrize(
    "arguments",
    [
        {"session_id": "", "workspace_id": uuid.uuid4()},
        {"session_id": "s"},
        {"session_id": "s", "workspace_id": uuid.uuid4(), "workspace_from_context": str},
        {"session_id": "s", "workspace_id": "not-a-uuid"},
    ],
    ids=["blank id", "no workspace", "two workspaces", "bad workspace"],
)
def test_a_bad_session_is_refused_when_built(
    manager: AsyncSessionManager, arguments: dict[str, Any]
) -> None:
    session_id = arguments.pop("session_id")

    with pytest.raises(ValueError, match=r"session_id|workspace"):
        AgentEngineSession(session_id, manager, **arguments)


def test_a_manager_that_is_not_async_is_refused() -> None:
    with pytest.raises(ValueError, match="AsyncSessionManager"):
        AgentEngineSession("s", object(), workspace_id=uuid.uuid4())  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_an_item_postgres_cannot_store_is_refused_before_any_request(
    manager: AsyncSessionManager,
) -> None:
    session = AgentEngineSession("s", manager, workspace_id=uuid.uuid4())

    with pytest.raises(ValueError, match="U\\+0000"):
        await session.add_items([{"role": "user", "content": "nul \x00 here"}])
    assert await session.get_items(limit=0) == []


def run_python(program: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (this interpreter, fixed program)
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_core_never_imports_the_sdk() -> None:
    completed = run_python(
        "import sys, agent_engine\n"
        "from agent_engine import AsyncSessionManager, SessionManager\n"
        "assert 'agents' not in sys.modules, 'the core imported the SDK'\n"
    )

    assert completed.returncode == 0, completed.stderr


def test_without_the_sdk_the_adapter_says_which_extra_to_install() -> None:
    completed = run_python(
        "import sys\n"
        "sys.modules['agents'] = None  # as if openai-agents were not installed\n"
        "import agent_engine.integrations.openai_agents\n"
    )

    assert completed.returncode == 1
    assert 'pip install "agent_engine[openai-agents]"' in completed.stderr
