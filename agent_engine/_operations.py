"""Every session operation, built once as data and concluded once from the answer.

An `Operation` is a request (see `_transport`), how to parse its JSON answer, and how to
explain a failure. Each builder below is named after the public method it serves, takes that
method's arguments and validates them (bad input raises ValueError before anything is
sent); the managers only run the operation through a transport, so the Supabase and the
direct transport, sync or async, share every rule, query, parser and error decision.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Generic, TypeAlias, TypeVar
from uuid import UUID

from pydantic import BaseModel, Field, JsonValue, Strict, TypeAdapter

from agent_engine import _schema as schema
from agent_engine._agent_config import AgentConfig
from agent_engine._error_mapping import ErrorScope, translate
from agent_engine._errors import (
    AgentEngineError,
    IdempotencyConflictError,
    InvalidTransitionError,
    SessionAlreadyActiveError,
    SessionError,
    VersionConflictError,
)
from agent_engine._lifecycle import may_change_status, statuses_leading_to
from agent_engine._models import (
    AgentMode,
    AgentSession,
    AgentSessionWithState,
    AgentTurn,
    CapturedDataChange,
    ContactScope,
    ConversationKey,
    NewIntent,
    NewSession,
    NewTemplate,
    NewTurn,
    NewTurns,
    Purge,
    RecentTurns,
    Retries,
    SessionChanges,
    SessionPage,
    SessionQuery,
    SessionScope,
    SessionState,
    SessionStatus,
    StateChanges,
    TurnPage,
    encode_cursor,
)
from agent_engine._registry import AgentRegistry
from agent_engine._transport import (
    JSON,
    NO_ROWS_CODE,
    AnyOf,
    Call,
    Condition,
    Embed,
    Equals,
    Failure,
    GreaterThan,
    JSONText,
    OneOf,
    Request,
    Select,
    TextArray,
    Update,
)

T = TypeVar("T")
R = TypeVar("R")

Id: TypeAlias = UUID | str
"""A session, workspace, conversation or contact id: a UUID, or its text."""

Fields: TypeAlias = Mapping[str, Any]
"""What mutate_session's change returns: the session fields to set, or None/{} for none."""

Change: TypeAlias = Callable[[AgentSessionWithState], Fields | None]
"""mutate_session's change on SessionManager: a plain function of the session read."""

AsyncChange: TypeAlias = Callable[[AgentSessionWithState], Fields | Awaitable[Fields | None] | None]
"""mutate_session's change on AsyncSessionManager: a plain or an async function."""

GUARDED_FIELDS = frozenset(SessionChanges.model_fields) - {"expected_version"}
"""What mutate_session's change may return: the fields update_session_with_version sets."""


@dataclass(frozen=True, slots=True)
class SecondLook:
    """A read that explains why a single-row write matched no row.

    PGRST116 on a guarded update means only "no row matched all the filters": the session
    may be missing, at another version, or in a mode/status the change may not leave. One
    more read of the row tells which.
    """

    request: Select
    explain: Callable[[JSON], AgentEngineError]


@dataclass(slots=True)
class Operation(Generic[T]):
    """One round trip (two only on a guarded update's no-match path) and its meaning.

    Not frozen, like the ErrorScope it holds: one is built on every call, and a frozen
    dataclass's __init__ costs twice as much (client CPU is what this library adds to the
    driver's). Nothing changes one after it is built.

    `parse` reads the decoded answer; `parse_text`, when given, reads an answer a transport
    left in JSON text (JSONText) directly, and must mean the same as `parse`.
    """

    request: Request
    parse: Callable[[JSON], T]
    scope: ErrorScope
    second_look: SecondLook | None = None
    parse_text: Callable[[bytes], T] | None = None

    def second_look_request(self, outcome: JSON | Failure) -> Select | None:
        """The follow-up read to send, if the first answer needs explaining."""
        if (
            self.second_look is not None
            and isinstance(outcome, Failure)
            and outcome.code == NO_ROWS_CODE
        ):
            return self.second_look.request
        return None

    def conclude(self, outcome: JSON | Failure, look: JSON | Failure | None = None) -> T:
        """Parse the answer, or raise the error it means (with the cause chained)."""
        if isinstance(outcome, Failure):
            if self.second_look is not None and look is not None:
                if isinstance(look, Failure):
                    raise translate(look, self.scope) from look.cause
                raise self._read(self.second_look.explain, look) from outcome.cause
            raise translate(outcome, self.scope) from outcome.cause
        if isinstance(outcome, JSONText) and self.parse_text is not None:
            return self._read(self.parse_text, outcome.text)
        return self._read(self.parse, outcome)

    def _read(self, read: Callable[[Any], R], answer: Any) -> R:
        # An answer of another shape than the operation's (a proxy's, a newer schema's) is a
        # typed error, never a raw KeyError or pydantic's ValidationError (a ValueError).
        try:
            if isinstance(answer, JSONText):
                answer = answer.decoded()
            return read(answer)
        except (ValueError, KeyError, TypeError, IndexError) as error:
            raise SessionError(
                f"{self.scope.operation} got an answer it could not read",
                session_id=self.scope.session_id,
                workspace_id=self.scope.workspace_id,
            ) from error


def _scope(session_id: Id, workspace_id: Id) -> SessionScope:
    return SessionScope(session_id, workspace_id)


def _of_session(scope: SessionScope, id_column: str = "id") -> tuple[Condition, ...]:
    return (Equals(id_column, scope.session), Equals("workspace_id", scope.workspace))


def _session_arguments(scope: SessionScope) -> dict[str, Any]:
    return {"p_session_id": scope.session, "p_workspace_id": scope.workspace}


_STATE_EMBED = Embed(schema.STATE_TABLE, many=False)


def _session_with_state(row: JSON) -> AgentSessionWithState:
    return AgentSessionWithState.model_validate(row)


def _new_session_operation(
    operation: str, function: str, new: NewSession
) -> Operation[AgentSessionWithState]:
    state = new.initial_state

    def already_active(failure: Failure) -> AgentEngineError:
        return SessionAlreadyActiveError(
            new.workspace_id,
            conversation_id=new.conversation_id,
            agent_id=new.agent_id,
            code=failure.code,
            details=failure.details,
        )

    return Operation(
        request=Call(
            function,
            {
                "p_workspace_id": str(new.workspace_id),
                "p_agent_id": new.agent_id,
                "p_conversation_id": str(new.conversation_id),
                "p_current_mode": new.current_mode,
                "p_contact_id": str(new.contact_id) if new.contact_id else None,
                "p_intents_seen": [
                    intent.model_dump(mode="json") for intent in state.intents_seen or ()
                ],
                "p_templates_sent": list(state.templates_sent or ()),
                "p_captured_data": dict(state.captured_data or {}),
            },
        ),
        parse=_session_with_state,
        parse_text=AgentSessionWithState.model_validate_json,
        scope=ErrorScope(operation, new.workspace_id, by_code={"23505": already_active}),
    )


def create_session(
    registry: AgentRegistry | None, fields: Mapping[str, Any]
) -> Operation[AgentSessionWithState]:
    """Insert a session and its state in one transaction; 23505 means one is already active.

    `fields`: create_session's keyword arguments (see `new_session`).
    """
    return _new_session_operation(
        "create_session", schema.CREATE_SESSION_FUNCTION, new_session(registry, fields)
    )


def get_or_create_session(
    registry: AgentRegistry | None, fields: Mapping[str, Any]
) -> Operation[AgentSessionWithState]:
    """The active session for the conversation and agent, created if there is none."""
    return _new_session_operation(
        "get_or_create_session",
        schema.GET_OR_CREATE_SESSION_FUNCTION,
        new_session(registry, fields),
    )


def new_session(registry: AgentRegistry | None, fields: Mapping[str, Any]) -> NewSession:
    """A new session's validated values: with a registry the agent must be registered and the
    mode one of its states (its initial_state by default); without one a mode is required."""
    agent_id, mode = fields["agent_id"], fields["initial_mode"]
    if registry is not None:
        # The agent id and mode are checked first, so the registry is asked about a
        # well-formed id only.
        chosen = AgentMode.model_validate({"agent_id": agent_id, "initial_mode": mode})
        agent = registry.get(chosen.agent_id)
        mode = agent.initial_state if chosen.initial_mode is None else chosen.initial_mode
        if mode not in agent.states:
            raise ValueError(f"initial_mode {mode!r} is not a state of agent {chosen.agent_id!r}")
    elif mode is None:
        raise ValueError("initial_mode is required when the manager has no registry")
    initial_state = fields["initial_state"]
    return NewSession.model_validate(
        {
            **fields,
            "initial_mode": mode,
            "initial_state": initial_state if initial_state is not None else {},
        }
    )


def get_session(session_id: Id, workspace_id: Id) -> Operation[AgentSessionWithState]:
    """The session with its state embedded, in one read."""
    scope = _scope(session_id, workspace_id)
    return Operation(
        request=Select(schema.SESSIONS_TABLE, _of_session(scope), embeds=(_STATE_EMBED,)),
        parse=_session_with_state,
        parse_text=AgentSessionWithState.model_validate_json,
        scope=ErrorScope("get_session", scope.workspace, scope.session),
    )


def get_session_by_conversation(
    conversation_id: Id, agent_id: str, workspace_id: Id
) -> Operation[AgentSessionWithState | None]:
    """The active session of a conversation and agent, or None."""
    key = ConversationKey.model_validate(
        {"workspace_id": workspace_id, "conversation_id": conversation_id, "agent_id": agent_id}
    )

    def first_or_none(rows: JSON) -> AgentSessionWithState | None:
        return _session_with_state(rows[0]) if rows else None

    return Operation(
        request=Select(
            schema.SESSIONS_TABLE,
            (
                Equals("workspace_id", str(key.workspace_id)),
                Equals("conversation_id", str(key.conversation_id)),
                Equals("agent_id", key.agent_id),
                Equals("status", SessionStatus.ACTIVE.value),
            ),
            embeds=(_STATE_EMBED,),
            single=False,
            limit=1,
        ),
        parse=first_or_none,
        scope=ErrorScope("get_session_by_conversation", key.workspace_id),
    )


@dataclass(frozen=True, slots=True)
class GuardedChange:
    """A version-guarded change of a session, with the rules it must satisfy atomically."""

    scope: SessionScope
    changes: SessionChanges
    agents: dict[str, AgentConfig] | None = field(default=None)
    """With a registry: the registered agents, whose valid_transitions guard a mode change."""


def update_session_with_version(
    session_id: Id,
    workspace_id: Id,
    registry: AgentRegistry | None,
    fields: Mapping[str, Any],
    *,
    operation: str = "update_session_with_version",
) -> Operation[AgentSession]:
    """PATCH the session where id, workspace_id and version match (and the change is allowed).

    `fields`: expected_version and the fields to set (None: unchanged); at least one must
    change. The transition rules are conditions of the same UPDATE, so they are checked
    against the row as it is when written, not as it was read. No match: a second read says
    why. `operation`: the public method its errors name (see `change_status`). Raises
    InvalidTransitionError at once when no registered agent has the target mode.
    """
    changes = SessionChanges.model_validate(fields)
    if not changes.as_row():
        raise ValueError("update_session_with_version needs at least one field to change")
    change = GuardedChange(_scope(session_id, workspace_id), changes, _agents_of(registry))
    scope = change.scope
    conditions: list[Condition] = [
        *_of_session(scope),
        Equals("version", changes.expected_version),
    ]
    if changes.status is not None:
        conditions.append(OneOf("status", statuses_leading_to(changes.status)))
    if changes.current_mode is not None and change.agents is not None:
        conditions.append(_mode_guard(change, change.agents, changes.current_mode))
    return Operation(
        request=Update(
            schema.SESSIONS_TABLE,
            {**changes.as_row(), "version": changes.expected_version + 1},
            tuple(conditions),
        ),
        parse=AgentSession.model_validate,
        parse_text=AgentSession.model_validate_json,
        scope=ErrorScope(
            operation,
            scope.workspace,
            scope.session,
            by_code={"23505": lambda failure: _another_active(scope, failure)},
        ),
        second_look=SecondLook(
            Select(
                schema.SESSIONS_TABLE,
                _of_session(scope),
                columns=("version", "status", "current_mode", "agent_id"),
            ),
            lambda row: _why_no_match(change, row),
        ),
    )


_STATUS_METHODS = {
    SessionStatus.CLOSED: "close_session",
    SessionStatus.HANDED_OFF: "handoff_session",
    SessionStatus.PAUSED: "pause_session",
    SessionStatus.ACTIVE: "resume_session",
}
"""The public method that sets each status alone (see `change_status`)."""


def change_status(
    session_id: Id,
    workspace_id: Id,
    registry: AgentRegistry | None,
    expected_version: int,
    status: SessionStatus,
) -> Operation[AgentSession]:
    """close_session, handoff_session, pause_session or resume_session: the guarded update
    of the status alone, its errors named after the method that sets `status`."""
    fields = {"expected_version": expected_version, "status": status}
    return update_session_with_version(
        session_id, workspace_id, registry, fields, operation=_STATUS_METHODS[status]
    )


def _mode_guard(change: GuardedChange, agents: dict[str, AgentConfig], target: str) -> AnyOf:
    branches = tuple(
        (Equals("agent_id", agent_id), OneOf("current_mode", config.modes_leading_to(target)))
        for agent_id, config in sorted(agents.items())
        if target in config.states
    )
    if not branches:
        raise InvalidTransitionError(
            f"mode {target!r} is not a state of any registered agent",
            session_id=change.scope.session_id,
            workspace_id=change.scope.workspace_id,
            from_value=None,
            to_value=target,
        )
    return AnyOf(branches)


def _another_active(scope: SessionScope, failure: Failure) -> AgentEngineError:
    return SessionAlreadyActiveError(
        scope.workspace_id, session_id=scope.session_id, code=failure.code, details=failure.details
    )


def _why_no_match(change: GuardedChange, row: JSON) -> AgentEngineError:
    scope, target = change.scope, change.changes
    version, status = int(row["version"]), SessionStatus(row["status"])
    if version == target.expected_version:
        if target.status is not None and not may_change_status(status, target.status):
            return InvalidTransitionError(
                f"session {scope.session_id} cannot go from status {status.value!r} "
                f"to {target.status.value!r}",
                session_id=scope.session_id,
                workspace_id=scope.workspace_id,
                from_value=status.value,
                to_value=target.status.value,
            )
        if target.current_mode is not None and change.agents is not None:
            mode_error = _mode_error(
                change, change.agents, target.current_mode, row["agent_id"], row["current_mode"]
            )
            if mode_error is not None:
                return mode_error
    # Versions only grow, so a match on version means a guard failed that has since
    # changed back; report the race as a conflict, which is safe to retry.
    return VersionConflictError(
        scope.session_id,
        scope.workspace_id,
        target.expected_version,
        version,
        code=NO_ROWS_CODE,
    )


def _mode_error(
    change: GuardedChange,
    agents: dict[str, AgentConfig],
    target: str,
    agent_id: str,
    current_mode: str,
) -> AgentEngineError | None:
    config = agents.get(agent_id)
    if config is None:
        reason = f"its agent {agent_id!r} is not registered"
    elif not config.allows_transition(current_mode, target):
        reason = f"agent {agent_id!r} does not allow {current_mode!r} -> {target!r}"
    else:
        return None
    return InvalidTransitionError(
        f"session {change.scope.session_id} cannot change mode to {target!r}: {reason}",
        session_id=change.scope.session_id,
        workspace_id=change.scope.workspace_id,
        from_value=current_mode,
        to_value=target,
    )


def get_state(session_id: Id, workspace_id: Id) -> Operation[SessionState]:
    """The session's state row."""
    scope = _scope(session_id, workspace_id)
    return Operation(
        request=Select(schema.STATE_TABLE, _of_session(scope, "session_id")),
        parse=SessionState.model_validate,
        parse_text=SessionState.model_validate_json,
        scope=ErrorScope("get_state", scope.workspace, scope.session),
    )


def update_state(
    session_id: Id, workspace_id: Id, fields: Mapping[str, Any]
) -> Operation[SessionState]:
    """Replace the given state fields in one UPDATE (last writer wins per field)."""
    scope = _scope(session_id, workspace_id)
    changes = StateChanges.model_validate(fields)
    if not changes.model_fields_set:
        raise ValueError("update_state needs at least one of the state fields")
    return Operation(
        request=Update(schema.STATE_TABLE, changes.as_row(), _of_session(scope, "session_id")),
        parse=SessionState.model_validate,
        parse_text=SessionState.model_validate_json,
        scope=ErrorScope("update_state", scope.workspace, scope.session),
    )


def _session_function(
    operation: str,
    function: str,
    scope: SessionScope,
    answer: TypeAdapter[T],
    **arguments: JsonValue,
) -> Operation[T]:
    """A call of a function taking the session's ids (and `arguments`), read as `answer`."""
    return Operation(
        request=Call(function, {**_session_arguments(scope), **arguments}),
        parse=answer.validate_python,
        parse_text=answer.validate_json,
        scope=ErrorScope(operation, scope.workspace, scope.session),
    )


def add_intent_seen(session_id: Id, workspace_id: Id, intent: str) -> Operation[SessionState]:
    """Append an intent; the database assigns its order in the same statement."""
    scope = _scope(session_id, workspace_id)
    new = NewIntent.model_validate({"intent": intent})
    return _session_function(
        "add_intent_seen", schema.APPEND_INTENT_FUNCTION, scope, _STATE, p_intent=new.intent
    )


def add_template_sent(
    session_id: Id, workspace_id: Id, template_name: str
) -> Operation[SessionState]:
    """Record a template as sent (once: sending it again changes nothing)."""
    scope = _scope(session_id, workspace_id)
    new = NewTemplate.model_validate({"template_name": template_name})
    return _session_function(
        "add_template_sent",
        schema.APPEND_TEMPLATE_FUNCTION,
        scope,
        _STATE,
        p_template_name=new.template_name,
    )


def update_captured_data(
    session_id: Id, workspace_id: Id, data: Mapping[str, Any]
) -> Operation[SessionState]:
    """Shallow-merge the data into captured_data in one statement."""
    scope = _scope(session_id, workspace_id)
    change = CapturedDataChange.model_validate(
        {"data": dict(data) if isinstance(data, Mapping) else data}
    )
    return _session_function(
        "update_captured_data",
        schema.MERGE_CAPTURED_DATA_FUNCTION,
        scope,
        _STATE,
        p_data=change.data,
    )


def add_turn(session_id: Id, workspace_id: Id, fields: Mapping[str, Any]) -> Operation[AgentTurn]:
    """Store a turn and update the session's totals in one transaction (idempotent by key).

    `fields`: add_turn's keyword arguments (role, content, tokens_used...).
    """
    scope = _scope(session_id, workspace_id)
    turn = NewTurn.model_validate(fields)

    def number_taken(failure: Failure) -> AgentEngineError:
        return SessionError(
            f"turn number {turn.turn_number} is already taken in session {scope.session_id} "
            f"of workspace {scope.workspace_id}",
            session_id=scope.session_id,
            workspace_id=scope.workspace_id,
            code=failure.code,
            details=failure.details,
            hint=failure.hint,
        )

    def key_reused(failure: Failure) -> AgentEngineError:
        return IdempotencyConflictError(
            scope.session_id,
            scope.workspace_id,
            idempotency_key=turn.idempotency_key,
            stored_turn_number=_stored_turn_number(failure.details),
            code=failure.code,
            details=failure.details,
        )

    return Operation(
        request=Call(
            schema.ADD_TURN_FUNCTION,
            {
                **_session_arguments(scope),
                "p_role": turn.role.value,
                "p_content": turn.content,
                "p_turn_number": turn.turn_number,
                "p_intent_detected": turn.intent_detected,
                "p_confidence": turn.confidence,
                "p_tools_called": [call.model_dump(mode="json") for call in turn.tools_called],
                "p_tokens_used": turn.tokens_used,
                "p_idempotency_key": turn.idempotency_key,
                "p_metadata": turn.metadata,
            },
        ),
        parse=AgentTurn.model_validate,
        parse_text=AgentTurn.model_validate_json,
        scope=ErrorScope(
            "add_turn",
            scope.workspace,
            scope.session,
            by_code={
                "23505": number_taken,
                schema.IDEMPOTENCY_CONFLICT_SQLSTATE: key_reused,
            },
        ),
    )


def _stored_turn_number(details: str | None) -> int | None:
    # The function puts {"turn_number": N} in the error's DETAIL; a proxy may drop it.
    try:
        number = json.loads(details or "")["turn_number"]
    except (ValueError, TypeError, KeyError):
        return None
    return number if isinstance(number, int) and not isinstance(number, bool) else None


def get_turns(
    session_id: Id,
    workspace_id: Id,
    limit: int | None,
    after_turn: int | None,
    before_turn: int | None = None,
) -> Operation[list[AgentTurn]]:
    """Turns ordered by turn_number, embedded under the session so a missing one is an error.

    With `before_turn`: a page backwards, which is get_recent_turns' read (`limit` required,
    `after_turn` not allowed with it).
    """
    if before_turn is not None:
        if after_turn is not None:
            raise ValueError("get_turns takes after_turn or before_turn, not both")
        if limit is None:
            raise ValueError("get_turns with before_turn needs a limit (at most 1,000)")
        return _recent_turns("get_turns", session_id, workspace_id, limit, before_turn)
    scope = _scope(session_id, workspace_id)
    page = TurnPage(limit=limit, after_turn=after_turn)
    after = (GreaterThan("turn_number", page.after_turn),) if page.after_turn is not None else ()
    embed = Embed(
        schema.TURNS_TABLE, many=True, conditions=after, order_by="turn_number", limit=page.limit
    )
    return Operation(
        request=Select(schema.SESSIONS_TABLE, _of_session(scope), columns=("id",), embeds=(embed,)),
        parse=lambda row: _TurnsOfSession.model_validate(row).turns,
        parse_text=lambda text: _TurnsOfSession.model_validate_json(text).turns,
        scope=ErrorScope("get_turns", scope.workspace, scope.session),
    )


def get_recent_turns(
    session_id: Id, workspace_id: Id, limit: int, before_turn: int | None
) -> Operation[list[AgentTurn]]:
    """The newest `limit` turns (before `before_turn`), oldest first, by the turn index."""
    return _recent_turns("get_recent_turns", session_id, workspace_id, limit, before_turn)


def _recent_turns(
    operation: str, session_id: Id, workspace_id: Id, limit: int, before_turn: int | None
) -> Operation[list[AgentTurn]]:
    scope = _scope(session_id, workspace_id)
    page = RecentTurns(limit=limit, before_turn=before_turn)
    return _session_function(
        operation,
        schema.GET_RECENT_TURNS_FUNCTION,
        scope,
        _TURNS,
        p_limit=page.limit,
        p_before_turn=page.before_turn,
    )


def pop_turn(session_id: Id, workspace_id: Id) -> Operation[AgentTurn | None]:
    """Remove the newest turn and take it off the totals; None when there is none."""
    scope = _scope(session_id, workspace_id)
    return _session_function("pop_turn", schema.POP_TURN_FUNCTION, scope, _MAYBE_TURN)


def clear_turns(session_id: Id, workspace_id: Id) -> Operation[int]:
    """Remove every turn, totals to zero; how many were removed."""
    scope = _scope(session_id, workspace_id)
    return _session_function("clear_turns", schema.CLEAR_TURNS_FUNCTION, scope, _COUNT)


def delete_session(session_id: Id, workspace_id: Id) -> Operation[None]:
    """Delete the session with its state and turns (PT404 if not in the workspace)."""
    scope = _scope(session_id, workspace_id)
    return Operation(
        request=Call(schema.DELETE_SESSION_FUNCTION, _session_arguments(scope)),
        parse=_nothing,
        parse_text=_nothing,
        scope=ErrorScope("delete_session", scope.workspace, scope.session),
    )


def delete_contact_data(contact_id: Id, workspace_id: Id) -> Operation[int]:
    """Delete every session of a contact in the workspace, any status; how many."""
    contact = ContactScope.model_validate({"contact_id": contact_id, "workspace_id": workspace_id})
    return Operation(
        request=Call(
            schema.DELETE_CONTACT_DATA_FUNCTION,
            {"p_contact_id": str(contact.contact_id), "p_workspace_id": str(contact.workspace_id)},
        ),
        parse=_COUNT.validate_python,
        parse_text=_COUNT.validate_json,
        scope=ErrorScope("delete_contact_data", contact.workspace_id),
    )


def add_turns(
    session_id: Id, workspace_id: Id, turns: Sequence[Mapping[str, Any]]
) -> Operation[list[AgentTurn]]:
    """Store several turns in one transaction, numbered consecutively; all or nothing."""
    scope = _scope(session_id, workspace_id)
    if isinstance(turns, str | bytes | Mapping) or not isinstance(turns, Sequence):
        raise ValueError(f"turns must be a list of turns, got {type(turns).__name__}")
    batch = NewTurns.model_validate({"turns": [dict(turn) for turn in turns]})

    def key_reused(failure: Failure) -> AgentEngineError:
        return IdempotencyConflictError(
            scope.session_id,
            scope.workspace_id,
            idempotency_key=None,
            stored_turn_number=_stored_turn_number(failure.details),
            code=failure.code,
            details=failure.details,
        )

    return Operation(
        request=Call(
            schema.ADD_TURNS_FUNCTION, {**_session_arguments(scope), "p_turns": batch.as_json()}
        ),
        parse=_TURNS.validate_python,
        parse_text=_TURNS.validate_json,
        scope=ErrorScope(
            "add_turns",
            scope.workspace,
            scope.session,
            by_code={schema.IDEMPOTENCY_CONFLICT_SQLSTATE: key_reused},
        ),
    )


def list_sessions(fields: Mapping[str, Any]) -> Operation[SessionPage]:
    """A page of a workspace's sessions, newest activity first, after the cursor's position.

    `fields`: list_sessions' keyword arguments.
    """
    query = SessionQuery.model_validate(fields)
    position = query.position()

    def page(sessions: list[AgentSessionWithState]) -> SessionPage:
        full = len(sessions) == query.limit
        return SessionPage(
            sessions=sessions, next_cursor=encode_cursor(sessions[-1]) if full else None
        )

    return Operation(
        request=Call(
            schema.LIST_SESSIONS_FUNCTION,
            {
                "p_workspace_id": str(query.workspace_id),
                "p_status": None if query.status is None else query.status.value,
                "p_agent_id": query.agent_id,
                "p_contact_id": None if query.contact_id is None else str(query.contact_id),
                "p_conversation_id": (
                    None if query.conversation_id is None else str(query.conversation_id)
                ),
                "p_active_after": _timestamp(query.active_after),
                "p_active_before": _timestamp(query.active_before),
                "p_limit": query.limit,
                "p_after_activity": None if position is None else position[0].isoformat(),
                "p_after_id": None if position is None else str(position[1]),
            },
        ),
        parse=lambda rows: page(_SESSIONS.validate_python(rows)),
        parse_text=lambda text: page(_SESSIONS.validate_json(text)),
        scope=ErrorScope("list_sessions", query.workspace_id),
    )


def purge_sessions_batch(purge: Purge, cutoff: datetime) -> Operation[int]:
    """Delete at most one batch of sessions idle since before `cutoff`; how many."""
    return Operation(
        request=Call(
            schema.PURGE_SESSIONS_BATCH_FUNCTION,
            {
                "p_older_than": cutoff.isoformat(),
                "p_statuses": TextArray(status.value for status in purge.statuses),
                "p_workspace_id": None if purge.workspace_id is None else str(purge.workspace_id),
                "p_batch_size": purge.batch_size,
            },
        ),
        parse=_COUNT.validate_python,
        parse_text=_COUNT.validate_json,
        scope=ErrorScope("purge_sessions", purge.workspace_id),
    )


def purge(fields: Mapping[str, Any]) -> Purge:
    """purge_sessions' validated arguments (ValueError before anything is sent)."""
    return Purge.model_validate(fields)


def _timestamp(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _nothing(answer: JSON) -> None:
    # A void function: PostgREST answers 204 (None here); Postgres renders void as ''.
    if answer not in (None, b"", b"null"):
        raise ValueError(f"expected no answer, got {type(answer).__name__}")


_STATE = TypeAdapter(SessionState)
_TURNS = TypeAdapter(list[AgentTurn])
_SESSIONS = TypeAdapter(list[AgentSessionWithState])
_MAYBE_TURN = TypeAdapter(AgentTurn | None)
_COUNT = TypeAdapter(Annotated[int, Strict()])


class _TurnsOfSession(BaseModel):
    """get_turns' answer: the session's id with its turns embedded (read in one pass)."""

    turns: list[AgentTurn] = Field(validation_alias=schema.TURNS_TABLE)


def get_total_tokens_used(session_id: Id, workspace_id: Id) -> Operation[int]:
    """The session's running token total, never summing turns."""
    return _session_total("get_total_tokens_used", session_id, workspace_id, "tokens_used")


def get_turn_count(session_id: Id, workspace_id: Id) -> Operation[int]:
    """The session's running turn count, never counting turns."""
    return _session_total("get_turn_count", session_id, workspace_id, "turn_count")


def _session_total(operation: str, session_id: Id, workspace_id: Id, column: str) -> Operation[int]:
    scope = _scope(session_id, workspace_id)
    return Operation(
        request=Select(schema.SESSIONS_TABLE, _of_session(scope), columns=(column,)),
        parse=lambda row: int(row[column]),
        scope=ErrorScope(operation, scope.workspace, scope.session),
    )


def _agents_of(registry: AgentRegistry | None) -> dict[str, AgentConfig] | None:
    """A snapshot of the registry for transition guards (None: no registry, no guard)."""
    return None if registry is None else {config.id: config for config in registry.list()}


# mutate_session: its loop (reads, writes, sleeps) runs in the managers; its rules live here.


def mutation_attempts(attempts: int, change: object) -> int:
    """How many times mutate_session may try: ValueError for a bad count or a change that
    is not callable, before anything is read."""
    retries = Retries(attempts=attempts)
    if not callable(change):
        raise ValueError(f"change must be a callable, got {type(change).__name__}")
    return retries.attempts


def guarded_fields(session: AgentSession, fields: Fields) -> dict[str, Any]:
    """update_session_with_version's fields for what a change returned, guarded by the
    version read; ValueError for a field mutate_session cannot set."""
    unknown = set(fields) - GUARDED_FIELDS
    if unknown:
        raise ValueError(
            f"change returned fields mutate_session cannot set: {sorted(unknown)} "
            f"(allowed: {sorted(GUARDED_FIELDS)})"
        )
    unset = dict.fromkeys(GUARDED_FIELDS)
    return {**unset, **fields, "expected_version": session.version}
