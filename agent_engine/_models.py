"""Pydantic records for sessions, their state and turns, and the validated inputs that build them.

Records parse the JSON rows that both transports return (PostgREST renders rows with
Postgres's own JSON functions, and the direct transport asks Postgres for the same JSON), so
one model per record serves every transport. Inputs are validated before any request is
sent, each rule once, here: whatever an input model accepts, Postgres stores and returns
exactly (text without U+0000 or lone surrogates, JSON numbers that survive the round trip,
integers inside their column's range, identifiers short enough for their indexes, aware
datetimes); whatever it refuses raises pydantic's ValidationError (a ValueError) naming the
field, and nothing reaches the wire.
"""

from __future__ import annotations

import base64
import json
import math
import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from pydantic import (
    AfterValidator,
    AliasChoices,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainValidator,
    Strict,
    StringConstraints,
    field_validator,
)

IDENTIFIER_MAX_LENGTH = 255
"""Characters in an agent id, mode, intent, template or tool name, intent_detected or
idempotency key: at most 1,020 bytes of UTF-8, well inside a btree index entry (about 2,700
bytes), and the limit payment APIs put on idempotency keys."""

POSTGRES_INTEGER_MAX = 2_147_483_647
"""turn_number, version and a turn's tokens_used are Postgres `integer` columns."""

MAX_EXPLICIT_TURN_NUMBER = 1_000_000_000
"""The highest turn_number a caller may choose. Automatic numbering continues after the
highest stored number, so a caller-chosen 2**31 - 1 would make every later add_turn fail
(integer out of range); this bound leaves over a billion numbers after it. The SQL function
enforces the same bound for other callers."""

JSON_SAFE_INTEGER = 2**53 - 1
"""The largest magnitude a JSON number may have (I-JSON, RFC 7493): JavaScript readers
(supabase-js, Realtime) lose precision beyond it, and a larger float would come back from
Postgres's exact numeric as a different integer."""

JSON_MAX_DEPTH = 32
"""How many arrays and objects deep a JSON value (captured data, a tool's input or result)
may nest, the outermost one included."""

_SURROGATE = re.compile("[\ud800-\udfff]")


def _storable_text(value: str) -> str:
    """Refuse text that Postgres text and jsonb cannot hold (U+0000, lone surrogates)."""
    if "\x00" in value:
        raise ValueError("contains U+0000 (NUL), which Postgres text and jsonb cannot store")
    if not value.isascii() and _SURROGATE.search(value):
        raise ValueError("contains a lone surrogate (U+D800..U+DFFF), which is not valid Unicode")
    return value


def _storable_nonblank_text(value: str) -> str:
    # One callback for both rules: add_turn runs it twice per call (content, key).
    if not value.strip():
        raise ValueError("must contain text, not only whitespace")
    return _storable_text(value)


def _json_value(value: Any, path: str = "$", depth: int = 0) -> Any:
    """Check a JSON value in place: types, text, finite numbers in the safe range, depth."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return _storable_text(value)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{path}: {value} is not a JSON number")
        if abs(value) > JSON_SAFE_INTEGER:
            raise ValueError(
                f"{path}: {value} is outside the JSON safe range +/-{JSON_SAFE_INTEGER} "
                "(store larger numbers as strings)"
            )
        return value
    if depth >= JSON_MAX_DEPTH:
        raise ValueError(f"{path}: nested deeper than {JSON_MAX_DEPTH} levels")
    if isinstance(value, list):
        for index, item in enumerate(value):
            _json_value(item, f"{path}[{index}]", depth + 1)
        return value
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{path}: object key {key!r} is not a string")
            try:
                _storable_text(key)
            except ValueError as error:
                raise ValueError(f"{path}: object key {key!r} {error}") from None
            _json_value(item, f"{path}.{key}", depth + 1)
        return value
    raise ValueError(f"{path}: a {type(value).__name__} is not a JSON value")


def _json_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping (a JSON object), got {type(value).__name__}")
    checked: dict[str, Any] = _json_value(value)
    return checked


def _unique(values: list[str]) -> list[str]:
    # A template list has set semantics, like add_template_sent: the first sighting counts.
    return list(dict.fromkeys(values))


StorableText = Annotated[str, Strict(), AfterValidator(_storable_text)]
NonEmptyText = Annotated[str, Strict(), AfterValidator(_storable_nonblank_text)]
"""Text kept exactly as given (a message's spacing matters) that must not be blank."""
Identifier = Annotated[
    str,
    Strict(),
    StringConstraints(strip_whitespace=True, min_length=1, max_length=IDENTIFIER_MAX_LENGTH),
    AfterValidator(_storable_text),
]
"""A name (agent, mode, intent, template, tool): surrounding whitespace removed, not blank."""
IdempotencyKey = Annotated[
    str,
    Strict(),
    StringConstraints(min_length=1, max_length=IDENTIFIER_MAX_LENGTH),
    AfterValidator(_storable_nonblank_text),
]
"""A caller's idempotency key, kept exactly as given: keys differing by a space are two keys."""
JsonData = Annotated[JsonValue, PlainValidator(_json_value)]
"""Any JSON value that round-trips exactly (see `_json_value`)."""
JsonObject = Annotated[dict[str, JsonValue], PlainValidator(_json_object)]
"""A JSON object that round-trips exactly."""
TemplateNames = Annotated[list[Identifier], AfterValidator(_unique)]
"""Template names, each once, in the order first given."""
TokenCount = Annotated[int, Strict(), Field(ge=0, le=POSTGRES_INTEGER_MAX)]
TurnNumber = Annotated[int, Strict(), Field(ge=1, le=MAX_EXPLICIT_TURN_NUMBER)]
MAX_PAGE_SIZE = 1000
"""The most rows one read returns: PostgREST's usual max-rows, past which it truncates."""
ExpectedVersion = Annotated[int, Strict(), Field(ge=1, le=POSTGRES_INTEGER_MAX - 1)]
"""A version a guarded update may expect: it writes version + 1, which must fit the column."""
Confidence = Annotated[float, Strict(), Field(ge=0, le=100, allow_inf_nan=False)]


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
    # A table row: columns a later migration adds must not break an older library.
    model_config = ConfigDict(frozen=True, extra="ignore")


class _Element(BaseModel):
    # An element of a JSON array the library writes itself: an unknown key is a caller's
    # mistake (a typo would be dropped silently), never a newer schema.
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Input(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _record_as_mapping(value: Any) -> Any:
    # A record given back as input (say, a ToolCallRecord) is checked like a mapping.
    return value.model_dump() if isinstance(value, _Element) else value


class IntentRecord(_Element):
    """One intent seen in a session; `order` is 1, 2, 3... in the order the database stored them."""

    intent: str
    order: int
    seen_at: datetime


class ToolCallRecord(_Element):
    """One tool call made during a turn: its name, the input it got and the result it gave."""

    name: str
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
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    """App-defined JSON (the raw model message, channel ids...), returned exactly as stored."""
    created_at: datetime


# Inputs


class NewIntentRecord(_Input):
    """An intent record given whole (update_state, initial_state)."""

    intent: Identifier
    order: Annotated[int, Strict(), Field(ge=1, le=JSON_SAFE_INTEGER)]
    seen_at: AwareDatetime


class NewToolCall(_Input):
    """A tool call given to add_turn (a mapping or a ToolCallRecord): no other keys."""

    name: Identifier
    input: JsonData = None
    result: JsonData = None


class _SessionIds(_Input):
    """What SessionScope accepts: each id a UUID, or text pydantic reads as one."""

    session_id: UUID
    workspace_id: UUID


_UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
"""A UUID's canonical text (str(UUID)), as callers pass ids read from JSON or a webhook."""


def _canonical_uuid(value: object) -> str | None:
    """`value`'s canonical UUID text if it is a UUID or already that text; else None."""
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, str) and _UUID_TEXT.fullmatch(value):
        return value
    return None


class SessionScope:
    """The pair every session operation is filtered by: a session inside a workspace.

    It keeps each id's canonical text, which is what every request sends, and makes the
    UUIDs an error names only when asked. One is built on every call, so the usual inputs (a
    UUID, or its canonical text) are taken without a pydantic model; anything else goes
    through `_SessionIds`, which accepts what pydantic reads as a UUID (upper case, no
    hyphens...) and raises its ValidationError, naming the field, for the rest.
    """

    __slots__ = ("session", "workspace")

    session: str
    workspace: str

    def __init__(self, session_id: UUID | str, workspace_id: UUID | str) -> None:
        session, workspace = _canonical_uuid(session_id), _canonical_uuid(workspace_id)
        if session is None or workspace is None:
            ids = _SessionIds.model_validate(
                {"session_id": session_id, "workspace_id": workspace_id}
            )
            session, workspace = str(ids.session_id), str(ids.workspace_id)
        self.session = session
        self.workspace = workspace

    @property
    def session_id(self) -> UUID:
        """The session's id."""
        return UUID(self.session)

    @property
    def workspace_id(self) -> UUID:
        """The workspace's id."""
        return UUID(self.workspace)


class ConversationKey(_Input):
    """A conversation with one agent inside a workspace: what identifies its active session."""

    workspace_id: UUID
    conversation_id: UUID
    agent_id: Identifier


class StateChanges(_Input):
    """Whole-field replacements for a session's state; only the fields given are written."""

    intents_seen: list[Annotated[NewIntentRecord, BeforeValidator(_record_as_mapping)]] = Field(
        default_factory=list
    )
    templates_sent: TemplateNames = Field(default_factory=list)
    captured_data: JsonObject = Field(default_factory=dict)

    def as_row(self) -> dict[str, Any]:
        """The given fields as JSON-ready column values."""
        if not self.model_fields_set:
            return {}
        return self.model_dump(mode="json", include=self.model_fields_set)


class AgentMode(_Input):
    """An agent and, optionally, the mode a new session of it starts in."""

    agent_id: Identifier
    initial_mode: Identifier | None = None


class NewSession(_Input):
    """The validated arguments of create_session and get_or_create_session."""

    workspace_id: UUID
    agent_id: Identifier
    conversation_id: UUID
    contact_id: UUID | None = None
    current_mode: Identifier = Field(validation_alias="initial_mode")
    initial_state: StateChanges


class SessionChanges(_Input):
    """A version-guarded update: the version read, and at least one field to change."""

    expected_version: ExpectedVersion
    current_mode: Identifier | None = None
    status: SessionStatus | None = None
    last_activity_at: AwareDatetime | None = None

    def as_row(self) -> dict[str, Any]:
        """The fields to change as JSON-ready column values (the version is not one)."""
        return self.model_dump(mode="json", exclude_none=True, exclude={"expected_version"})


class NewIntent(_Input):
    """The argument of add_intent_seen."""

    intent: Identifier


class NewTemplate(_Input):
    """The argument of add_template_sent."""

    template_name: Identifier


class CapturedDataChange(_Input):
    """The argument of update_captured_data: top-level keys to set."""

    data: JsonObject


def _json_object_or_empty(value: object) -> dict[str, Any]:
    # None reads as no metadata; one callback, where a BeforeValidator would add a second.
    return {} if value is None else _json_object(value)


class NewTurn(_Input):
    """The validated arguments of add_turn."""

    role: TurnRole
    content: NonEmptyText
    turn_number: TurnNumber | None = None
    intent_detected: Identifier | None = None
    confidence: Confidence | None = None
    tools_called: tuple[Annotated[NewToolCall, BeforeValidator(_record_as_mapping)], ...] = ()
    tokens_used: TokenCount = 0
    idempotency_key: IdempotencyKey | None = None
    metadata: Annotated[dict[str, JsonValue], PlainValidator(_json_object_or_empty)] = Field(
        default_factory=dict
    )


class RecentTurns(_Input):
    """Which turns get_recent_turns reads: the newest `limit`, before `before_turn` if given."""

    limit: Annotated[int, Strict(), Field(ge=1, le=MAX_PAGE_SIZE)]
    before_turn: Annotated[int, Strict(), Field(ge=1, le=POSTGRES_INTEGER_MAX)] | None = None


class ContactScope(_Input):
    """A contact of a workspace (delete_contact_data)."""

    contact_id: UUID
    workspace_id: UUID


class NewTurns(_Input):
    """The validated turns of add_turns: at most 1,000, none with an explicit number."""

    turns: Annotated[list[NewTurn], Field(max_length=MAX_PAGE_SIZE)]

    @field_validator("turns")
    @classmethod
    def _numbered_by_the_database(cls, turns: list[NewTurn]) -> list[NewTurn]:
        if any(turn.turn_number is not None for turn in turns):
            raise ValueError("add_turns numbers its turns itself: leave turn_number out")
        return turns

    def as_json(self) -> list[dict[str, Any]]:
        """The turns as the SQL function reads them (no turn_number key)."""
        return [turn.model_dump(mode="json", exclude={"turn_number"}) for turn in self.turns]


class SessionPage(BaseModel):
    """A page of list_sessions: newest activity first, and where the next page starts."""

    sessions: list[AgentSessionWithState]
    next_cursor: str | None
    """Pass it as `cursor` for the next page; None when this page was the last."""


class SessionQuery(_Input):
    """The validated arguments of list_sessions (the cursor decoded)."""

    workspace_id: UUID
    status: SessionStatus | None = None
    agent_id: Identifier | None = None
    contact_id: UUID | None = None
    conversation_id: UUID | None = None
    active_after: AwareDatetime | None = None
    active_before: AwareDatetime | None = None
    limit: Annotated[int, Strict(), Field(ge=1, le=MAX_PAGE_SIZE)] = 50
    cursor: Annotated[str, Field(max_length=200)] | None = None

    def position(self) -> tuple[datetime, UUID] | None:
        """(last_activity_at, id) of the last session of the previous page, if any."""
        return None if self.cursor is None else decode_cursor(self.cursor)


def encode_cursor(session: AgentSession) -> str:
    """An opaque cursor after `session` in list_sessions' order."""
    position = json.dumps([session.last_activity_at.isoformat(), str(session.id)])
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """The position a cursor of encode_cursor stands for; ValueError for anything else."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, session_id = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        position = (datetime.fromisoformat(at), UUID(session_id))
    except (ValueError, TypeError, UnicodeError) as error:
        raise ValueError("cursor is not one that list_sessions returned") from error
    if position[0].tzinfo is None:
        raise ValueError("cursor is not one that list_sessions returned")
    return position


class Purge(_Input):
    """The validated arguments of purge_sessions."""

    older_than: AwareDatetime | timedelta
    statuses: Annotated[tuple[SessionStatus, ...], Field(min_length=1)] = (SessionStatus.CLOSED,)
    workspace_id: UUID | None = None
    batch_size: Annotated[int, Strict(), Field(ge=1, le=10_000)] = 1000

    @field_validator("older_than")
    @classmethod
    def _positive(cls, older_than: datetime | timedelta) -> datetime | timedelta:
        if isinstance(older_than, timedelta) and older_than <= timedelta(0):
            raise ValueError("older_than must be a positive duration or an aware datetime")
        return older_than

    def cutoff(self, now: datetime) -> datetime:
        """The last-activity time before which sessions go."""
        if isinstance(self.older_than, timedelta):
            return now - self.older_than
        return self.older_than


class TurnPage(_Input):
    """Which turns get_turns reads: after `after_turn` (exclusive), at most `limit`."""

    limit: Annotated[int, Strict(), Field(ge=1, le=POSTGRES_INTEGER_MAX)] | None = None
    after_turn: Annotated[int, Strict(), Field(ge=0, le=POSTGRES_INTEGER_MAX)] | None = None


class Retries(_Input):
    """How many times mutate_session may read and write before giving up."""

    attempts: Annotated[int, Strict(), Field(ge=1)]
