"""The exception hierarchy of agent_engine, and nothing else.

Every error carries data (ids, versions, the PostgREST code or SQLSTATE) besides its
message, says whether retrying the same call may succeed (`retryable`), and renders itself
for structured logs with `to_dict()`. Secrets never reach an error: the transports only hand
over codes and the server's own message, details and hint.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID


class AgentEngineError(Exception):
    """Root of every error raised by agent_engine.

    `retryable` is True when the same call, repeated unchanged, may succeed (a network
    failure, an unavailable database, a lost optimistic-locking race).
    """

    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        """The error as a JSON-ready dict for structured logs (no secrets, ids as strings)."""
        fields = {
            name: str(value) if isinstance(value, UUID) else value
            for name, value in vars(self).items()
            if not name.startswith("_") and name != "retryable" and value is not None
        }
        return {"error": type(self).__name__, "retryable": self.retryable, **fields}


class ConfigError(AgentEngineError):
    """The environment or settings are unusable (missing URL, wrong kind of API key...)."""

    def __init__(self, message: str, *, variable: str | None = None) -> None:
        super().__init__(message)
        self.variable = variable


class MigrationError(AgentEngineError):
    """Migrations could not be applied (a failing statement, or an applied file that changed).

    Retryable when a retry may succeed: the SQLSTATE says so (55P03, a lock not granted in
    time; 57P01, the server ended the connection...), or the database could not be reached
    for a reason that may pass. A migration that failed applied nothing, so running them
    again is safe.
    """

    def __init__(
        self,
        message: str,
        *,
        migration: str | None = None,
        code: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.migration = migration
        self.code = code
        self.retryable = retryable


class AgentConfigError(AgentEngineError):
    """An agent configuration is invalid; `problems` lists every problem, not just the first."""

    def __init__(self, agent_id: str | None, problems: list[str]) -> None:
        subject = f"agent {agent_id!r}" if agent_id else "agent configuration"
        super().__init__(f"invalid {subject}: " + "; ".join(problems))
        self.agent_id = agent_id
        self.problems = list(problems)


class AgentNotFoundError(AgentEngineError):
    """No agent with this id is registered."""

    def __init__(self, agent_id: str) -> None:
        super().__init__(f"agent {agent_id!r} is not registered")
        self.agent_id = agent_id


class SessionError(AgentEngineError):
    """A session operation failed.

    Keeps what the server said: `code` (PostgREST code such as PGRST116, or a SQLSTATE such
    as 23505), `details` and `hint`; the underlying exception is chained as `__cause__`.
    Which codes are retryable is decided where errors are translated (error_mapping).
    """

    def __init__(
        self,
        message: str,
        *,
        session_id: UUID | None = None,
        workspace_id: UUID | None = None,
        code: str | None = None,
        details: str | None = None,
        hint: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.session_id = session_id
        self.workspace_id = workspace_id
        self.code = code
        self.details = details
        self.hint = hint
        self.retryable = retryable


class SessionNotFoundError(SessionError):
    """The session does not exist in this workspace (it may exist in another one: not said)."""

    def __init__(
        self, session_id: UUID | None, workspace_id: UUID, *, code: str | None = None
    ) -> None:
        super().__init__(
            f"session {session_id} not found in workspace {workspace_id}",
            session_id=session_id,
            workspace_id=workspace_id,
            code=code,
        )


class VersionConflictError(SessionError):
    """A version-guarded update lost the race: the session is now at `actual_version`.

    Retryable: re-read the session and apply the change again (see the README's
    concurrency model).
    """

    def __init__(
        self,
        session_id: UUID,
        workspace_id: UUID,
        expected_version: int,
        actual_version: int,
        *,
        code: str | None = None,
    ) -> None:
        super().__init__(
            f"session {session_id} in workspace {workspace_id} is at version "
            f"{actual_version}, not the expected {expected_version}",
            session_id=session_id,
            workspace_id=workspace_id,
            code=code,
            retryable=True,
        )
        self.expected_version = expected_version
        self.actual_version = actual_version


class IdempotencyConflictError(SessionError):
    """add_turn got an idempotency key already stored for a different turn.

    The same key with the same turn returns the stored turn; with a different role,
    content, tokens, tool calls, intent, confidence or explicit turn_number it is this error
    (the rule payment APIs follow): nothing was changed. Not retryable: a new message needs a
    new key. `stored_turn_number` is the number of the turn the key belongs to.
    """

    def __init__(
        self,
        session_id: UUID,
        workspace_id: UUID,
        *,
        idempotency_key: str | None,
        stored_turn_number: int | None,
        code: str | None = None,
        details: str | None = None,
    ) -> None:
        stored = f"turn {stored_turn_number}" if stored_turn_number is not None else "a turn"
        super().__init__(
            f"idempotency key {idempotency_key!r} is already stored for {stored} of session "
            f"{session_id} in workspace {workspace_id} with different values; a new message "
            "needs a new key",
            session_id=session_id,
            workspace_id=workspace_id,
            code=code,
            details=details,
        )
        self.idempotency_key = idempotency_key
        self.stored_turn_number = stored_turn_number


class SessionAlreadyActiveError(SessionError):
    """An active session already exists for this conversation and agent.

    Raised by create_session, and by a resume whose conversation got a new active session
    in the meantime (then `session_id` is the session being resumed).
    """

    def __init__(
        self,
        workspace_id: UUID,
        *,
        conversation_id: UUID | None = None,
        agent_id: str | None = None,
        session_id: UUID | None = None,
        code: str | None = None,
        details: str | None = None,
    ) -> None:
        if conversation_id is not None:
            subject = f"conversation {conversation_id} and agent {agent_id!r}"
        else:
            subject = f"the conversation of session {session_id}"
        super().__init__(
            f"an active session already exists for {subject} in workspace {workspace_id}",
            session_id=session_id,
            workspace_id=workspace_id,
            code=code,
            details=details,
        )
        self.conversation_id = conversation_id
        self.agent_id = agent_id


class InvalidTransitionError(SessionError):
    """A mode or status change that the agent's configuration or the session lifecycle forbids."""

    def __init__(
        self,
        message: str,
        *,
        session_id: UUID,
        workspace_id: UUID,
        from_value: str | None,
        to_value: str,
    ) -> None:
        super().__init__(message, session_id=session_id, workspace_id=workspace_id)
        self.from_value = from_value
        self.to_value = to_value
