"""Every session operation, built once as data and concluded once from the answer.

An `Operation` is a request (see `transport`), how to parse its JSON answer, and how to
explain a failure. Managers only run operations through a transport (`run_operation` below
for sync code), so the Supabase and the direct transport, sync or async, share every query,
every parser and every error decision.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import JsonValue

from agent_engine import schema
from agent_engine.agent_config import AgentConfig
from agent_engine.error_mapping import ErrorScope, translate
from agent_engine.errors import (
    AgentEngineError,
    IdempotencyConflictError,
    InvalidTransitionError,
    SessionAlreadyActiveError,
    SessionError,
    VersionConflictError,
)
from agent_engine.lifecycle import may_change_status, statuses_leading_to
from agent_engine.models import (
    AgentSession,
    AgentSessionWithState,
    AgentTurn,
    CapturedDataChange,
    ConversationKey,
    NewIntent,
    NewSession,
    NewTemplate,
    NewTurn,
    SessionChanges,
    SessionScope,
    SessionState,
    SessionStatus,
    StateChanges,
    TurnPage,
)
from agent_engine.registry import AgentRegistry
from agent_engine.transport import (
    JSON,
    NO_ROWS_CODE,
    AnyOf,
    Call,
    Condition,
    Embed,
    Equals,
    Failure,
    GreaterThan,
    OneOf,
    Request,
    Select,
    Transport,
    Update,
)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class SecondLook:
    """A read that explains why a single-row write matched no row.

    PGRST116 on a guarded update means only "no row matched all the filters": the session
    may be missing, at another version, or in a mode/status the change may not leave. One
    more read of the row tells which.
    """

    request: Select
    explain: Callable[[JSON], AgentEngineError]


@dataclass(frozen=True, slots=True)
class Operation(Generic[T]):
    """One round trip (two only on a guarded update's no-match path) and its meaning."""

    request: Request
    parse: Callable[[JSON], T]
    scope: ErrorScope
    second_look: SecondLook | None = None

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
        return self._read(self.parse, outcome)

    def _read(self, read: Callable[[JSON], R], answer: JSON) -> R:
        # An answer of another shape than the operation's (a proxy's, a newer schema's) is a
        # typed error, never a raw KeyError or pydantic's ValidationError (a ValueError).
        try:
            return read(answer)
        except (ValueError, KeyError, TypeError, IndexError) as error:
            raise SessionError(
                f"{self.scope.operation} got an answer it could not read",
                session_id=self.scope.session_id,
                workspace_id=self.scope.workspace_id,
            ) from error


def run_operation(transport: Transport, operation: Operation[T]) -> T:
    """Run `operation` on a synchronous transport."""
    outcome = transport.execute(operation.request)
    look_request = operation.second_look_request(outcome)
    look = transport.execute(look_request) if look_request is not None else None
    return operation.conclude(outcome, look)


def _of_session(scope: SessionScope, id_column: str = "id") -> tuple[Condition, ...]:
    return (
        Equals(id_column, str(scope.session_id)),
        Equals("workspace_id", str(scope.workspace_id)),
    )


def _session_arguments(scope: SessionScope) -> dict[str, Any]:
    return {"p_session_id": str(scope.session_id), "p_workspace_id": str(scope.workspace_id)}


_STATE_EMBED = Embed(schema.STATE_TABLE, many=False)


def _session_with_state(row: JSON) -> AgentSessionWithState:
    return AgentSessionWithState.model_validate(row)


def _new_session_operation(function: str, new: NewSession) -> Operation[AgentSessionWithState]:
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
        scope=ErrorScope(function, new.workspace_id, by_code={"23505": already_active}),
    )


def create_session(new: NewSession) -> Operation[AgentSessionWithState]:
    """Insert a session and its state in one transaction; 23505 means one is already active."""
    return _new_session_operation(schema.CREATE_SESSION_FUNCTION, new)


def get_or_create_session(new: NewSession) -> Operation[AgentSessionWithState]:
    """The active session for the conversation and agent, created if there is none."""
    return _new_session_operation(schema.GET_OR_CREATE_SESSION_FUNCTION, new)


def get_session(scope: SessionScope) -> Operation[AgentSessionWithState]:
    """The session with its state embedded, in one read."""
    return Operation(
        request=Select(schema.SESSIONS_TABLE, _of_session(scope), embeds=(_STATE_EMBED,)),
        parse=_session_with_state,
        scope=ErrorScope("get_session", scope.workspace_id, scope.session_id),
    )


def get_session_by_conversation(key: ConversationKey) -> Operation[AgentSessionWithState | None]:
    """The active session of a conversation and agent, or None."""

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


def update_session_with_version(change: GuardedChange) -> Operation[AgentSession]:
    """PATCH the session where id, workspace_id and version match (and the change is allowed).

    The transition rules are conditions of the same UPDATE, so they are checked against the
    row as it is when written, not as it was read. No match: a second read says why.
    Raises InvalidTransitionError at once when no registered agent has the target mode.
    """
    scope, changes = change.scope, change.changes
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
        scope=ErrorScope(
            "update_session_with_version",
            scope.workspace_id,
            scope.session_id,
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


def get_state(scope: SessionScope) -> Operation[SessionState]:
    """The session's state row."""
    return Operation(
        request=Select(schema.STATE_TABLE, _of_session(scope, "session_id")),
        parse=SessionState.model_validate,
        scope=ErrorScope("get_state", scope.workspace_id, scope.session_id),
    )


def update_state(scope: SessionScope, changes: StateChanges) -> Operation[SessionState]:
    """Replace the given state fields in one UPDATE (last writer wins per field)."""
    return Operation(
        request=Update(schema.STATE_TABLE, changes.as_row(), _of_session(scope, "session_id")),
        parse=SessionState.model_validate,
        scope=ErrorScope("update_state", scope.workspace_id, scope.session_id),
    )


def _state_function(
    operation: str, function: str, scope: SessionScope, **arguments: JsonValue
) -> Operation[SessionState]:
    return Operation(
        request=Call(function, {**_session_arguments(scope), **arguments}),
        parse=SessionState.model_validate,
        scope=ErrorScope(operation, scope.workspace_id, scope.session_id),
    )


def add_intent_seen(scope: SessionScope, new: NewIntent) -> Operation[SessionState]:
    """Append an intent; the database assigns its order in the same statement."""
    return _state_function(
        "add_intent_seen", schema.APPEND_INTENT_FUNCTION, scope, p_intent=new.intent
    )


def add_template_sent(scope: SessionScope, new: NewTemplate) -> Operation[SessionState]:
    """Record a template as sent (once: sending it again changes nothing)."""
    return _state_function(
        "add_template_sent",
        schema.APPEND_TEMPLATE_FUNCTION,
        scope,
        p_template_name=new.template_name,
    )


def update_captured_data(
    scope: SessionScope, change: CapturedDataChange
) -> Operation[SessionState]:
    """Shallow-merge the data into captured_data in one statement."""
    return _state_function(
        "update_captured_data",
        schema.MERGE_CAPTURED_DATA_FUNCTION,
        scope,
        p_data=change.data,
    )


def add_turn(scope: SessionScope, turn: NewTurn) -> Operation[AgentTurn]:
    """Store a turn and update the session's totals in one transaction (idempotent by key)."""

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
            },
        ),
        parse=AgentTurn.model_validate,
        scope=ErrorScope(
            "add_turn",
            scope.workspace_id,
            scope.session_id,
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


def get_turns(scope: SessionScope, page: TurnPage) -> Operation[list[AgentTurn]]:
    """Turns ordered by turn_number, embedded under the session so a missing one is an error."""
    after = (GreaterThan("turn_number", page.after_turn),) if page.after_turn is not None else ()
    embed = Embed(
        schema.TURNS_TABLE, many=True, conditions=after, order_by="turn_number", limit=page.limit
    )
    return Operation(
        request=Select(schema.SESSIONS_TABLE, _of_session(scope), columns=("id",), embeds=(embed,)),
        parse=lambda row: [AgentTurn.model_validate(turn) for turn in row[schema.TURNS_TABLE]],
        scope=ErrorScope("get_turns", scope.workspace_id, scope.session_id),
    )


def get_total_tokens_used(scope: SessionScope) -> Operation[int]:
    """The session's running token total, never summing turns."""
    return _session_total("get_total_tokens_used", scope, "tokens_used")


def get_turn_count(scope: SessionScope) -> Operation[int]:
    """The session's running turn count, never counting turns."""
    return _session_total("get_turn_count", scope, "turn_count")


def _session_total(operation: str, scope: SessionScope, column: str) -> Operation[int]:
    return Operation(
        request=Select(schema.SESSIONS_TABLE, _of_session(scope), columns=(column,)),
        parse=lambda row: int(row[column]),
        scope=ErrorScope(operation, scope.workspace_id, scope.session_id),
    )


def registered_agents(registry: AgentRegistry | None) -> dict[str, AgentConfig] | None:
    """A snapshot of the registry for transition guards (None: no registry, no guard)."""
    return None if registry is None else {config.id: config for config in registry.list()}
