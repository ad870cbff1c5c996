"""SessionManager: the public, synchronous API over agent sessions, their state and turns.

Each method validates its arguments (nothing is sent for bad input), builds one operation
(`operations`), runs it through the transport in one round trip, and returns a parsed
model or raises an AgentEngineError. Every method is scoped by `workspace_id`: a session of
another workspace is SessionNotFoundError, never data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar
from uuid import UUID

from supabase import AsyncClient, Client

from agent_engine import operations
from agent_engine.config import DEFAULT_POOL_SIZE, DEFAULT_TIMEOUT, Settings, create_admin_client
from agent_engine.errors import VersionConflictError
from agent_engine.lifecycle import conflict_backoff
from agent_engine.models import (
    AgentMode,
    AgentSession,
    AgentSessionWithState,
    AgentTurn,
    CapturedDataChange,
    ConversationKey,
    NewIntent,
    NewSession,
    NewTemplate,
    NewTurn,
    Retries,
    SessionChanges,
    SessionScope,
    SessionState,
    SessionStatus,
    StateChanges,
    ToolCallRecord,
    TurnPage,
    TurnRole,
)
from agent_engine.postgrest_transport import PostgrestTransport
from agent_engine.registry import AgentRegistry
from agent_engine.transport import Transport

T = TypeVar("T")

logger = logging.getLogger("agent_engine")

_GUARDED_FIELDS = frozenset(SessionChanges.model_fields) - {"expected_version"}
"""What mutate_session's change may return: the fields update_session_with_version sets."""


class SessionManager:
    """Agent sessions in Postgres, safe to share across threads.

    `client` is a supabase.Client built with the service-role (or secret) key, or any
    Transport. With a `registry`, sessions must belong to registered agents, the default
    mode is the agent's `initial_state`, and mode changes must follow its
    `valid_transitions`.
    """

    def __init__(self, client: Client | Transport, *, registry: AgentRegistry | None = None):
        """Raises ValueError for anything but a supabase.Client or a Transport, or a registry
        that is not an AgentRegistry: at construction, not at the first call."""
        self._transport: Transport = _transport_of(client)
        if registry is not None and not isinstance(registry, AgentRegistry):
            raise ValueError(
                f"registry must be an AgentRegistry or None, got {type(registry).__name__}"
            )
        self._registry = registry

    @classmethod
    def from_env(
        cls, *, registry: AgentRegistry | None = None, settings: Settings | None = None
    ) -> SessionManager:
        """A manager configured from the environment (or `settings`).

        With SUPABASE_URL and a service key: through the Supabase project. Otherwise with
        DATABASE_URL: directly on Postgres (see from_postgres). Raises ConfigError if neither
        is usable. The manager owns its connections: `close()` releases them.
        """
        settings = settings if settings is not None else Settings.from_env()
        if settings.supabase_url is None and settings.database_url is not None:
            return cls.from_postgres(
                settings.database_url.get_secret_value(),
                registry=registry,
                pool_size=settings.pool_size,
                timeout=settings.timeout,
            )
        client = create_admin_client(settings)
        return cls(PostgrestTransport(client, owns_client=True), registry=registry)

    @classmethod
    def from_postgres(
        cls,
        dsn: str,
        *,
        registry: AgentRegistry | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
        timeout: float = DEFAULT_TIMEOUT,
        check_idle_after: float = 1.0,
    ) -> SessionManager:
        """A manager that talks to Postgres directly through a pool of psycopg 3 connections.

        `dsn`: the direct connection string or Supabase's pooler (Supavisor, transaction mode
        on port 6543 included: prepared statements are off). Same API, same SQL functions,
        same errors (SQLSTATE kept) as the Supabase path; one statement per operation.
        Nothing connects until the first call. `timeout` bounds every call, lock waits
        included. A connection idle in the pool for `check_idle_after` seconds or more is
        pinged before use (0: every checkout, at one more round trip per operation). Raises
        ConfigError for a malformed DSN (password masked) or a bad number. Use the manager
        as a context manager or call `close()` to close the pool. Needs the `postgres` extra.
        """
        from agent_engine.postgres_transport import PostgresTransport

        transport = PostgresTransport.connect(
            dsn, pool_size=pool_size, timeout=timeout, check_idle_after=check_idle_after
        )
        return cls(transport, registry=registry)

    @property
    def registry(self) -> AgentRegistry | None:
        """The registry that validates agents and mode transitions, if any."""
        return self._registry

    def close(self) -> None:
        """Release the connections this manager owns (a client passed in stays open)."""
        self._transport.close()

    def __enter__(self) -> SessionManager:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self, operation: operations.Operation[T]) -> T:
        return operations.run_operation(self._transport, operation)

    # Sessions

    def create_session(
        self,
        *,
        workspace_id: UUID | str,
        agent_id: str,
        conversation_id: UUID | str,
        contact_id: UUID | str | None = None,
        initial_mode: str | None = None,
        initial_state: StateChanges | Mapping[str, Any] | None = None,
    ) -> AgentSessionWithState:
        """Create an active session and its state in one round trip (one transaction).

        `initial_state` may preset `captured_data`, `templates_sent` and `intents_seen`.
        Raises SessionAlreadyActiveError if the conversation already has an active session
        with this agent; with a registry, AgentNotFoundError for an unknown agent.
        """
        return self._run(
            operations.create_session(
                self._new_session(
                    workspace_id, agent_id, conversation_id, contact_id, initial_mode, initial_state
                )
            )
        )

    def get_or_create_session(
        self,
        *,
        workspace_id: UUID | str,
        agent_id: str,
        conversation_id: UUID | str,
        contact_id: UUID | str | None = None,
        initial_mode: str | None = None,
        initial_state: StateChanges | Mapping[str, Any] | None = None,
    ) -> AgentSessionWithState:
        """The conversation's active session with this agent, created if there is none.

        Atomic in one round trip: callers racing for the same conversation all get the
        same session. The initial values apply only when a session is created.
        """
        return self._run(
            operations.get_or_create_session(
                self._new_session(
                    workspace_id, agent_id, conversation_id, contact_id, initial_mode, initial_state
                )
            )
        )

    def get_session(
        self, session_id: UUID | str, *, workspace_id: UUID | str
    ) -> AgentSessionWithState:
        """The session with its state, in one round trip.

        Raises SessionNotFoundError if it does not exist in this workspace.
        """
        return self._run(operations.get_session(_scope(session_id, workspace_id)))

    def get_session_by_conversation(
        self, conversation_id: UUID | str, agent_id: str, *, workspace_id: UUID | str
    ) -> AgentSessionWithState | None:
        """The active session of this conversation and agent (with its state), or None."""
        key = ConversationKey.model_validate(
            {"workspace_id": workspace_id, "conversation_id": conversation_id, "agent_id": agent_id}
        )
        return self._run(operations.get_session_by_conversation(key))

    def update_session_with_version(
        self,
        session_id: UUID | str,
        expected_version: int,
        *,
        workspace_id: UUID | str,
        current_mode: str | None = None,
        status: SessionStatus | str | None = None,
        last_activity_at: datetime | None = None,
    ) -> AgentSession:
        """Change the session only if it is still at `expected_version`; version + 1 on success.

        One round trip; on no match a second read tells why: VersionConflictError (with the
        actual version; retryable), SessionNotFoundError, or InvalidTransitionError (a status
        change the lifecycle forbids, or, with a registry, a mode change the agent's
        valid_transitions forbid, checked against the row as it is when written). A mode
        that no registered agent has raises InvalidTransitionError before any request.
        """
        changes = SessionChanges.model_validate(
            {
                "expected_version": expected_version,
                "current_mode": current_mode,
                "status": status,
                "last_activity_at": last_activity_at,
            }
        )
        if not changes.as_row():
            raise ValueError("update_session_with_version needs at least one field to change")
        return self._run(
            operations.update_session_with_version(
                operations.GuardedChange(
                    _scope(session_id, workspace_id),
                    changes,
                    operations.registered_agents(self._registry),
                )
            )
        )

    def close_session(
        self, session_id: UUID | str, expected_version: int, *, workspace_id: UUID | str
    ) -> AgentSession:
        """Close the session (final); the conversation may then start a new one."""
        return self.update_session_with_version(
            session_id, expected_version, workspace_id=workspace_id, status=SessionStatus.CLOSED
        )

    def handoff_session(
        self, session_id: UUID | str, expected_version: int, *, workspace_id: UUID | str
    ) -> AgentSession:
        """Hand the conversation over to a human (status `handed_off`)."""
        return self.update_session_with_version(
            session_id,
            expected_version,
            workspace_id=workspace_id,
            status=SessionStatus.HANDED_OFF,
        )

    def pause_session(
        self, session_id: UUID | str, expected_version: int, *, workspace_id: UUID | str
    ) -> AgentSession:
        """Pause an active session."""
        return self.update_session_with_version(
            session_id, expected_version, workspace_id=workspace_id, status=SessionStatus.PAUSED
        )

    def resume_session(
        self, session_id: UUID | str, expected_version: int, *, workspace_id: UUID | str
    ) -> AgentSession:
        """Make a paused or handed-off session active again.

        Raises SessionAlreadyActiveError if the conversation got another active session.
        """
        return self.update_session_with_version(
            session_id, expected_version, workspace_id=workspace_id, status=SessionStatus.ACTIVE
        )

    def mutate_session(
        self,
        session_id: UUID | str,
        change: Callable[[AgentSessionWithState], Mapping[str, Any] | None],
        *,
        workspace_id: UUID | str,
        attempts: int = 5,
    ) -> AgentSession:
        """Read the session, apply `change`, write it guarded; retry on version conflicts.

        `change(session)` returns the fields to set (`current_mode`, `status`,
        `last_activity_at`), or None/{} to leave the session as it is (then the read session
        is returned). On VersionConflictError it sleeps a jittered, growing backoff and
        starts over from a fresh read, at most `attempts` times in all, then re-raises the
        last conflict. `change` may run several times: keep it free of side effects.
        """
        retries = Retries(attempts=attempts)
        if not callable(change):
            raise ValueError(f"change must be a callable, got {type(change).__name__}")
        for attempt in range(1, retries.attempts + 1):
            session = self.get_session(session_id, workspace_id=workspace_id)
            fields = change(session)
            if not fields:
                return session
            unknown = set(fields) - _GUARDED_FIELDS
            if unknown:
                raise ValueError(
                    f"change returned fields mutate_session cannot set: {sorted(unknown)} "
                    f"(allowed: {sorted(_GUARDED_FIELDS)})"
                )
            try:
                return self.update_session_with_version(
                    session.id, session.version, workspace_id=workspace_id, **fields
                )
            except VersionConflictError as conflict:
                if attempt == retries.attempts:
                    raise
                delay = conflict_backoff(attempt)
                logger.debug(
                    "mutate_session: version conflict on session %s (attempt %d of %d, "
                    "now at version %d); retrying in %.3f s",
                    conflict.session_id,
                    attempt,
                    retries.attempts,
                    conflict.actual_version,
                    delay,
                )
                time.sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")

    # State

    def get_state(self, session_id: UUID | str, *, workspace_id: UUID | str) -> SessionState:
        """The session's state, in one round trip."""
        return self._run(operations.get_state(_scope(session_id, workspace_id)))

    def update_state(
        self, session_id: UUID | str, *, workspace_id: UUID | str, **fields: Any
    ) -> SessionState:
        """Replace whole state fields (`intents_seen`, `templates_sent`, `captured_data`).

        Last writer wins per field: to add to a field under concurrency use
        add_intent_seen, add_template_sent or update_captured_data instead.
        """
        changes = StateChanges.model_validate(fields)
        if not changes.model_fields_set:
            raise ValueError("update_state needs at least one of the state fields")
        return self._run(operations.update_state(_scope(session_id, workspace_id), changes))

    def add_intent_seen(
        self, session_id: UUID | str, intent: str, *, workspace_id: UUID | str
    ) -> SessionState:
        """Append an intent; the database numbers it (`order`), so none is lost or repeated."""
        return self._run(
            operations.add_intent_seen(
                _scope(session_id, workspace_id), NewIntent.model_validate({"intent": intent})
            )
        )

    def add_template_sent(
        self, session_id: UUID | str, template_name: str, *, workspace_id: UUID | str
    ) -> SessionState:
        """Record a template as sent; recording it again changes nothing (safe to retry)."""
        return self._run(
            operations.add_template_sent(
                _scope(session_id, workspace_id),
                NewTemplate.model_validate({"template_name": template_name}),
            )
        )

    def update_captured_data(
        self, session_id: UUID | str, data: Mapping[str, Any], *, workspace_id: UUID | str
    ) -> SessionState:
        """Shallow-merge `data` into captured_data atomically (top-level keys replace)."""
        change = CapturedDataChange.model_validate(
            {"data": dict(data) if isinstance(data, Mapping) else data}
        )
        return self._run(operations.update_captured_data(_scope(session_id, workspace_id), change))

    # Turns

    def add_turn(
        self,
        session_id: UUID | str,
        *,
        workspace_id: UUID | str,
        role: TurnRole | str,
        content: str,
        turn_number: int | None = None,
        intent_detected: str | None = None,
        confidence: float | None = None,
        tools_called: Sequence[ToolCallRecord | Mapping[str, Any]] = (),
        tokens_used: int = 0,
        idempotency_key: str | None = None,
    ) -> AgentTurn:
        """Store a turn and add it to the session's totals, in one round trip.

        Without `turn_number` the database assigns the next one. A taken `turn_number`
        raises SessionError with code 23505. With an `idempotency_key` (say, the inbound
        message id) a repeated call returns the stored turn and changes nothing, so the call
        is safe to retry after a timeout or a redelivered webhook.
        """
        turn = NewTurn.model_validate(
            {
                "role": role,
                "content": content,
                "turn_number": turn_number,
                "intent_detected": intent_detected,
                "confidence": confidence,
                "tools_called": tools_called,
                "tokens_used": tokens_used,
                "idempotency_key": idempotency_key,
            }
        )
        return self._run(operations.add_turn(_scope(session_id, workspace_id), turn))

    def get_turns(
        self,
        session_id: UUID | str,
        *,
        workspace_id: UUID | str,
        limit: int | None = None,
        after_turn: int | None = None,
    ) -> list[AgentTurn]:
        """Turns ordered by turn_number: after `after_turn` (exclusive), at most `limit`.

        One round trip; raises SessionNotFoundError (not an empty list) for a session that
        is not in this workspace.
        """
        page = TurnPage(limit=limit, after_turn=after_turn)
        return self._run(operations.get_turns(_scope(session_id, workspace_id), page))

    def get_total_tokens_used(self, session_id: UUID | str, *, workspace_id: UUID | str) -> int:
        """The session's running token total (kept by add_turn; no turn is read)."""
        return self._run(operations.get_total_tokens_used(_scope(session_id, workspace_id)))

    def get_turn_count(self, session_id: UUID | str, *, workspace_id: UUID | str) -> int:
        """The session's running turn count (kept by add_turn; no turn is read)."""
        return self._run(operations.get_turn_count(_scope(session_id, workspace_id)))

    # Validation shared by the methods above

    def _new_session(
        self,
        workspace_id: UUID | str,
        agent_id: str,
        conversation_id: UUID | str,
        contact_id: UUID | str | None,
        initial_mode: str | None,
        initial_state: StateChanges | Mapping[str, Any] | None,
    ) -> NewSession:
        mode = initial_mode
        if self._registry is not None:
            # The agent id and mode are checked first, so the registry is asked about a
            # well-formed id only.
            chosen = AgentMode.model_validate({"agent_id": agent_id, "initial_mode": initial_mode})
            agent = self._registry.get(chosen.agent_id)
            mode = agent.initial_state if chosen.initial_mode is None else chosen.initial_mode
            if mode not in agent.states:
                raise ValueError(
                    f"initial_mode {mode!r} is not a state of agent {chosen.agent_id!r}"
                )
        elif initial_mode is None:
            raise ValueError("initial_mode is required when the manager has no registry")
        return NewSession.model_validate(
            {
                "workspace_id": workspace_id,
                "agent_id": agent_id,
                "conversation_id": conversation_id,
                "contact_id": contact_id,
                "initial_mode": mode,
                "initial_state": initial_state if initial_state is not None else {},
            }
        )


def _transport_of(client: object) -> Transport:
    if isinstance(client, Client):
        return PostgrestTransport(client)
    if isinstance(client, AsyncClient):
        raise ValueError(
            "client is a supabase.AsyncClient; SessionManager needs a supabase.Client "
            "(create_admin_client) or a Transport"
        )
    if callable(getattr(client, "execute", None)) and callable(getattr(client, "close", None)):
        return client  # type: ignore[return-value]
    hint = (
        " (to connect with a URL or DSN, use SessionManager.from_env, from_postgres or "
        "create_admin_client)"
        if isinstance(client, str)
        else ""
    )
    raise ValueError(
        f"client must be a supabase.Client built with the service key or a Transport, "
        f"got {type(client).__name__}{hint}"
    )


def _scope(session_id: UUID | str, workspace_id: UUID | str) -> SessionScope:
    return SessionScope.model_validate({"session_id": session_id, "workspace_id": workspace_id})
