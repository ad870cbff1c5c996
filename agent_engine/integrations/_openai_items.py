"""One OpenAI Agents SDK item as one turn, and back.

The raw item is what the SDK needs again (its runner fingerprints the items it pops and
compares them), so it is stored whole in the turn's metadata and given back from there. The
turn's role and content are derived from it for people reading the turns (a dashboard, SQL,
a support agent taking over); nothing reads them back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent_engine._models import TurnRole

ITEM_KEY = "openai_agents_item"
"""The metadata key holding the SDK item of a turn the adapter wrote."""

_MESSAGE_ROLES = {
    "user": TurnRole.USER,
    "assistant": TurnRole.ASSISTANT,
    "system": TurnRole.SYSTEM,
    "developer": TurnRole.SYSTEM,
}

_PLACEHOLDERS = {
    "input_image": "[image]",
    "input_file": "[file]",
    "input_audio": "[audio]",
}


def turn_of(item: Mapping[str, Any]) -> dict[str, Any]:
    """add_turns' mapping for one SDK item: derived role and content, the item in metadata."""
    role, content = describe(item)
    return {"role": role, "content": content, "metadata": {ITEM_KEY: dict(item)}}


def item_of(role: TurnRole, content: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The SDK item of a stored turn: the one the adapter stored, or for a turn written
    another way (add_turn from the app), a message with its text."""
    stored = metadata.get(ITEM_KEY)
    if isinstance(stored, dict):
        return stored
    message_role = "assistant" if role is TurnRole.TOOL else role.value
    return {"role": message_role, "content": content}


def is_model_output(item: Mapping[str, Any]) -> bool:
    """Whether a model call produced this item (an assistant message, reasoning, any tool
    call), as opposed to the user's input or a tool's output: the turn that carries the
    tokens a model call reported."""
    kind = str(item.get("type", "message"))
    if kind == "message":
        return item.get("role") == "assistant"
    return kind == "reasoning" or kind.endswith("_call")


def describe(item: Mapping[str, Any]) -> tuple[TurnRole, str]:
    """A turn's role and readable text for an SDK item (never blank: a turn needs text)."""
    kind = item.get("type", "message")
    if not isinstance(kind, str):
        raise ValueError(f"an item's type must be a string, got {type(kind).__name__}")
    if kind == "message":
        role = _MESSAGE_ROLES.get(item.get("role"), TurnRole.ASSISTANT)  # type: ignore[arg-type]
        text = _text(item.get("content"))
    elif kind == "function_call":
        role, text = TurnRole.ASSISTANT, f"{item.get('name')}({item.get('arguments', '')})"
    elif kind.endswith("_output"):
        role, text = TurnRole.TOOL, _text(item.get("output"))
    elif kind == "reasoning":
        role, text = TurnRole.ASSISTANT, _text(item.get("summary"))
    else:
        role, text = TurnRole.ASSISTANT, ""
    return role, text if text.strip() else f"[{kind}]"


def _text(content: Any) -> str:
    """The text of a message's content: a string, or a list of parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, Mapping):
            kind = part.get("type")
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part.get("refusal"), str):
                texts.append(part["refusal"])
            elif isinstance(kind, str):
                texts.append(_PLACEHOLDERS.get(kind, f"[{kind}]"))
    return "\n".join(texts)
