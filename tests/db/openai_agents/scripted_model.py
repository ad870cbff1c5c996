"""A model for the OpenAI Agents SDK's Runner that answers from a script, without network.

It is stateless, so any number of concurrent runs can share it: to a user message it
answers with a call of the `stock` tool (a call id unique to that message), to the tool's
output with a text message that quotes it. Every call reports the same usage.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any, cast

from agents import Agent, ModelResponse, ModelSettings, RunConfig, Usage, function_tool
from agents.items import TResponseInputItem, TResponseStreamEvent
from agents.models.interface import Model
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

TOKENS_PER_CALL = 15
RUN_CONFIG = RunConfig(tracing_disabled=True)
"""No trace export: these runs have no API key and no network."""


@function_tool
def stock(size: int) -> str:
    """How many pairs of shoes are in stock in a size."""
    return f"3 pairs in size {size}"


class ScriptedModel(Model):
    """Answers a user message with a `stock` call, and the tool's output with a reply."""

    def __init__(self) -> None:
        self.inputs: list[list[TResponseInputItem]] = []
        """What each call was given, in call order (the history the runner sent)."""

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Any],
        output_schema: Any,
        handoffs: list[Any],
        tracing: Any,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: Any,
    ) -> ModelResponse:
        items = [{"role": "user", "content": input}] if isinstance(input, str) else input
        self.inputs.append(cast(list[TResponseInputItem], list(items)))
        last = cast(dict[str, Any], items[-1])
        usage = Usage(requests=1, input_tokens=10, output_tokens=5, total_tokens=TOKENS_PER_CALL)
        if last.get("type") == "function_call_output":
            reply = f"We have {last['output']}."
            return ModelResponse(
                output=[_message(reply, last["call_id"])], usage=usage, response_id=None
            )
        call_id = call_id_for(str(last.get("content")))
        call = ResponseFunctionToolCall(
            id="fc_" + call_id.removeprefix("call_"),
            type="function_call",
            name="stock",
            arguments='{"size": 42}',
            call_id=call_id,
            status="completed",
        )
        return ModelResponse(output=[call], usage=usage, response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[TResponseStreamEvent]:
        raise NotImplementedError("these tests do not stream")


def call_id_for(message: str) -> str:
    """The call id of the `stock` call answering a user message (the reply's id follows)."""
    return "call_" + hashlib.sha256(message.encode()).hexdigest()[:16]


def reply_id_for(message: str) -> str:
    """The id of the text reply that ends the exchange a user message started."""
    return "msg_" + call_id_for(message).removeprefix("call_")


def _message(text: str, call_id: str) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        id="msg_" + call_id.removeprefix("call_"),
        type="message",
        role="assistant",
        status="completed",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
    )


def shoe_agent(model: ScriptedModel) -> Agent[Any]:
    """A sales agent on the scripted model, with the stock tool."""
    return Agent(name="shoe sales", instructions="Sell shoes.", model=model, tools=[stock])
