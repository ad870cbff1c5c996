"""Pydantic records for sessions, their state and turns, and the validated inputs that build them.

Records parse the JSON rows that both transports return (PostgREST renders rows with
Postgres's own JSON functions, and the direct transport asks Postgres for the same JSON), so
one model per record serves every transport. Inputs are validated before any request is
sent: a bad UUID, a negative token count or an empty turn never reaches the database.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
)


def _has_text(value: str) -> str:
    if not value.strip():
        raise ValueError("must contain text, not only whitespace")
    return value


NonEmptyText = Annotated[str, AfterValidator(_has_text)]
"""Text kept as given (a message's spacing matters) that must not be blank."""
NonEmptyName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class SessionStatus(StrEnum):
    """Lifecycle of a session. At most one `active` session per conversation and agent."""

    ACTIVE = "active"
    PAUSED = "paused"
    CLOSED = "closed"
    HANDED_OFF = "handed_off"


class TurnRole(StrEnum):
    """Who produced a turn."""

    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"
    TOOL = "tool"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class _Input(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class IntentRecord(_Record):
    """One intent seen in a session; `order` is 1, 2, 3... in the order the database stored them."""

    intent: NonEmptyName
    order: int = Field(ge=1)
    seen_at: datetime


class ToolCallRecord(_Record):
    """One tool call made during a turn: its name, the input it got and the result it gave."""

    name: NonEmptyName
    input: JsonValue = None
    result: JsonValue = None


class SessionState(_Record):
    """The per-session memory: intents seen, templates sent and data captured so far."""

    session_id: UUID
    workspace_id: UUID
    intents_seen: list[IntentRecord] = Field(default_factory=list)
    templates_sent: list[str] = Field(default_factory=list)
    captured_data: dict[str, JsonValue] = Field(default_factory=dict)
    updated_at: datetime


class AgentSession(_Record):
    """A session row. `version` guards `current_mode`, `status` and `last_activity_at`.

    `turn_count` and `tokens_used` are running totals kept by the database as turns are
    added; adding a turn does not change `version`.
    """

    id: UUID
    workspace_id: UUID
    agent_id: str
    conversation_id: UUID
    contact_id: UUID | None = None
    version: int
    status: SessionStatus
    current_mode: str
    turn_count: int
    tokens_used: int
    created_at: datetime
    updated_at: datetime
    last_activity_at: datetime


class AgentSessionWithState(AgentSession):
    """A session together with its state, as read in one round trip."""

    state: SessionState = Field(validation_alias=AliasChoices("session_state", "state"))


class AgentTurn(_Record):
    """One message of the conversation, with what the agent detected and what it cost."""

    id: UUID
    session_id: UUID
    workspace_id: UUID
    turn_number: int
    role: TurnRole
    content: str
    intent_detected: str | None = None
    confidence: float | None = None
    tools_called: list[ToolCallRecord] = Field(default_factory=list)
    tokens_used: int
    idempotency_key: str | None = None
    created_at: datetime


class SessionScope(_Input):
    """The pair every session operation is filtered by: a session inside a workspace."""

    session_id: UUID
    workspace_id: UUID


class ConversationKey(_Input):
    """A conversation with one agent inside a workspace: what identifies its active session."""

    workspace_id: UUID
    conversation_id: UUID
    agent_id: NonEmptyName


class NewSession(_Input):
    """The validated arguments of create_session and get_or_create_session."""

    workspace_id: UUID
    agent_id: NonEmptyName
    conversation_id: UUID
    contact_id: UUID | None = None
    current_mode: NonEmptyName
    initial_state: StateChanges


class StateChanges(_Input):
    """Whole-field replacements for a session's state; fields left out are not touched."""

    intents_seen: list[IntentRecord] | None = None
    templates_sent: list[NonEmptyName] | None = None
    captured_data: dict[str, JsonValue] | None = None

    def as_row(self) -> dict[str, Any]:
        """The given fields as JSON-ready column values."""
        return self.model_dump(mode="json", exclude_none=True)


class SessionChanges(_Input):
    """The fields a version-guarded update may change; at least one must be given."""

    current_mode: NonEmptyName | None = None
    status: SessionStatus | None = None
    last_activity_at: datetime | None = None

    def as_row(self) -> dict[str, Any]:
        """The given fields as JSON-ready column values."""
        return self.model_dump(mode="json", exclude_none=True)


POSTGRES_INTEGER_MAX = 2_147_483_647
"""turn_number and a turn's tokens_used are Postgres `integer` columns."""


class NewTurn(_Input):
    """The validated arguments of add_turn."""

    role: TurnRole
    content: NonEmptyText
    turn_number: int | None = Field(default=None, ge=1, le=POSTGRES_INTEGER_MAX)
    intent_detected: NonEmptyName | None = None
    confidence: float | None = Field(default=None, ge=0, le=100, allow_inf_nan=False)
    tools_called: tuple[ToolCallRecord, ...] = ()
    tokens_used: int = Field(default=0, ge=0, le=POSTGRES_INTEGER_MAX)
    idempotency_key: NonEmptyName | None = None


class TurnPage(_Input):
    """Which turns get_turns reads: after `after_turn` (exclusive), at most `limit`."""

    limit: int | None = Field(default=None, ge=1)
    after_turn: int | None = Field(default=None, ge=0)


NewSession.model_rebuild()
