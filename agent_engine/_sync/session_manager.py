# Generated from agent_engine/_async/session_manager.py by tools/unasync.py: do not edit.
# Change the async source, then run `python tools/unasync.py`.
"""SessionManager: the public API over agent sessions, their state and turns.

Each method builds one operation from its arguments (`_operations` validates them: nothing
is sent for bad input), runs it through the transport in one round trip, and returns a
parsed model or raises an AgentEngineError. Every method is scoped by `workspace_id`: a
session of another workspace is SessionNotFoundError, never data.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar
from uuid import UUID

from supabase import Client

from agent_engine import _operations as operations
from agent_engine._acompat import LoopOwner, resolved, sleep
from agent_engine._errors import VersionConflictError
from agent_engine._lifecycle import conflict_backoff
from agent_engine._models import (
    AgentSession,
    AgentSessionWithState,
    AgentTurn,
    SessionPage,
    SessionState,
    SessionStatus,
    StateChanges,
    ToolCallRecord,
    TurnRole,
)
from agent_engine._registry import AgentRegistry
from agent_engine._sync.postgrest_transport import PostgrestTransport
from agent_engine._transport import Transport, as_transport, foreign_loop_failure
from agent_engine.settings import (
    DEFAULT_POOL_SIZE,
    DEFAULT_TIMEOUT,
    Settings,
    create_admin_client,
)

T = TypeVar("T")

logger = logging.getLogger("agent_engine")


class SessionManager:
    """Agent sessions in Postgres, safe to share across threads.

    `client` is a supabase.Client built with the service-role (or secret) key, or any
    Transport. With a `registry`, sessions must belong to registered agents, the default
    mode is the agent's `initial_state`, and mode changes must follow its
    `valid_transitions`.
    """

    def __init__(self, client: Client | Transport, *, registry: AgentRegistry | None = None):
        """Raises ValueError for anything but a supabase.Client or a Transport,
        or a registry that is not an AgentRegistry: at construction, not at the first call."""
        self._transport: Transport = (
            PostgrestTransport(client) if isinstance(client, Client) else as_transport(client)
        )
        if registry is not None and not isinstance(registry, AgentRegistry):
            raise ValueError(
                f"registry must be an AgentRegistry or None, got {type(registry).__name__}"
            )
        self._registry = registry
        self._loop = LoopOwner()

    @classmethod
    def from_env(
        cls, *, registry: AgentRegistry | None = None, settings: Settings | None = None
    ) -> SessionManager:
        """A manager configured from the environment (or `settings`).

        With SUPABASE_URL and a service key: through the Supabase project. Otherwise with
        DATABASE_URL: directly on Postgres (see from_postgres). Raises ConfigError if neither
        is usable. Nothing connects yet. The manager owns its connections: `close()`
        releases them.
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
        prepare: bool = False,
    ) -> SessionManager:
        """A manager that talks to Postgres directly through a pool of psycopg 3 connections.

        `dsn`: the direct connection string or Supabase's pooler (Supavisor, transaction mode
        on port 6543 included: prepared statements are off by default). Same API, same SQL
        functions, same errors (SQLSTATE kept) as the Supabase path; one statement per
        operation. Nothing connects until the first call: each call that finds no idle
        connection opens one, up to `pool_size`. `timeout` bounds every call, lock waits
        included. A connection idle in the pool for `check_idle_after` seconds or more is
        pinged before use (0: every checkout, at one more round trip per operation).
        `prepare=True` uses server-side prepared statements: the server parses and plans
        each statement once per connection instead of on every call (reads gain most),
        still in one round trip, and the timeout still bounds every call (kept as the
        connection's session setting). Only for a direct connection or the pooler's session
        mode (port 5432): transaction mode (port 6543) shares server connections between
        clients, so neither a prepared statement nor a session setting stays with ours.
        Raises ConfigError for a malformed DSN (password masked), a bad number or a
        `prepare` that is not a bool. Use `with manager:` or call `close()` to close
        the pool. Needs the `postgres` extra.
        """
        from agent_engine._sync.postgres_transport import PostgresTransport

        transport = PostgresTransport.connect(
            dsn,
            pool_size=pool_size,
            timeout=timeout,
            check_idle_after=check_idle_after,
            prepare=prepare,
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
        if self._loop.is_foreign():
            return operation.conclude(foreign_loop_failure())
        outcome = self._transport.execute(operation.request)
        look_request = operation.second_look_request(outcome)
        look = None if look_request is None else self._transport.execute(look_request)
        return operation.conclude(outcome, look)

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
        fields = {
            "workspace_id": workspace_id,
            "agent_id": agent_id,
            "conversation_id": conversation_id,
            "contact_id": contact_id,
            "initial_mode": initial_mode,
            "initial_state": initial_state,
        }
        return self._run(operations.create_session(self._registry, fields))

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
        fields = {
            "workspace_id": workspace_id,
            "agent_id": agent_id,
            "conversation_id": conversation_id,
            "contact_id": contact_id,
            "initial_mode": initial_mode,
            "initial_state": initial_state,
        }
        return self._run(operations.get_or_create_session(self._registry, fields))

    def get_session(
        self, session_id: UUID | str, *, workspace_id: UUID | str
    ) -> AgentSessionWithState:
        """The session with its state, in one round trip.

        Raises SessionNotFoundError if it does not exist in this workspace.
        """
        return self._run(operations.get_session(session_id, workspace_id))

    def get_session_by_conversation(
        self, conversation_id: UUID | str, agent_id: str, *, workspace_id: UUID | str
    ) -> AgentSessionWithState | None:
        """The active session of this conversation and agent (with its state), or None."""
        return self._run(
            operations.get_session_by_conversation(conversation_id, agent_id, workspace_id)
        )

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
        fields = {
            "expected_version": expected_version,
            "current_mode": current_mode,
            "status": status,
            "last_activity_at": last_activity_at,
        }
        return self._run(
            operations.update_session_with_version(session_id, workspace_id, self._registry, fields)
        )

    def close_session(
        self, session_id: UUID | str, expected_version: int, *, workspace_id: UUID | str
    ) -> AgentSession:
        """Close the session (final); the conversation may then start a new one."""
        return self._run(
            operations.change_status(
                session_id, workspace_id, self._registry, expected_version, SessionStatus.CLOSED
            )
        )

    def handoff_session(
        self, session_id: UUID | str, expected_version: int, *, workspace_id: UUID | str
    ) -> AgentSession:
        """Hand the conversation over to a human (status `handed_off`)."""
        return self._run(
            operations.change_status(
                session_id, workspace_id, self._registry, expected_version, SessionStatus.HANDED_OFF
            )
        )

    def pause_session(
        self, session_id: UUID | str, expected_version: int, *, workspace_id: UUID | str
    ) -> AgentSession:
        """Pause an active session."""
        return self._run(
            operations.change_status(
                session_id, workspace_id, self._registry, expected_version, SessionStatus.PAUSED
            )
        )

    def resume_session(
        self, session_id: UUID | str, expected_version: int, *, workspace_id: UUID | str
    ) -> AgentSession:
        """Make a paused or handed-off session active again.

        Raises SessionAlreadyActiveError if the conversation got another active session.
        """
        return self._run(
            operations.change_status(
                session_id, workspace_id, self._registry, expected_version, SessionStatus.ACTIVE
            )
        )

    def mutate_session(
        self,
        session_id: UUID | str,
        change: operations.Change,
        *,
        workspace_id: UUID | str,
        attempts: int = 5,
    ) -> AgentSession:
        """Read the session, apply `change`, write it guarded; retry on version conflicts.

        `change(session)` returns the fields to set (`current_mode`, `status`,
        `last_activity_at`), or None/{} to leave the session as it is (then the read session
        is returned); a plain function (not async). On VersionConflictError it
        sleeps a jittered, growing backoff and starts over from
        a fresh read, at most `attempts` times in all, then re-raises the last conflict.
        `change` may run several times: keep it free of side effects.
        """
        tries = operations.mutation_attempts(attempts, change)
        for attempt in range(1, tries + 1):
            session = self.get_session(session_id, workspace_id=workspace_id)
            fields = resolved(change(session))
            if not fields:
                return session
            guarded = operations.guarded_fields(session, fields)
            try:
                return self.update_session_with_version(
                    session.id, workspace_id=workspace_id, **guarded
                )
            except VersionConflictError as conflict:
                if attempt == tries:
                    raise
                delay = conflict_backoff(attempt)
                logger.debug(
                    "mutate_session: version conflict on session %s (attempt %d of %d, "
                    "now at version %d); retrying in %.3f s",
                    conflict.session_id,
                    attempt,
                    tries,
                    conflict.actual_version,
                    delay,
                )
                sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")

    # State

    def get_state(self, session_id: UUID | str, *, workspace_id: UUID | str) -> SessionState:
        """The session's state, in one round trip."""
        return self._run(operations.get_state(session_id, workspace_id))

    def update_state(
        self, session_id: UUID | str, *, workspace_id: UUID | str, **fields: Any
    ) -> SessionState:
        """Replace whole state fields (`intents_seen`, `templates_sent`, `captured_data`).

        Last writer wins per field: to add to a field under concurrency use
        add_intent_seen, add_template_sent or update_captured_data instead.
        """
        return self._run(operations.update_state(session_id, workspace_id, fields))

    def add_intent_seen(
        self, session_id: UUID | str, intent: str, *, workspace_id: UUID | str
    ) -> SessionState:
        """Append an intent; the database numbers it (`order`), so none is lost or repeated."""
        return self._run(operations.add_intent_seen(session_id, workspace_id, intent))

    def add_template_sent(
        self, session_id: UUID | str, template_name: str, *, workspace_id: UUID | str
    ) -> SessionState:
        """Record a template as sent; recording it again changes nothing (safe to retry)."""
        return self._run(operations.add_template_sent(session_id, workspace_id, template_name))

    def update_captured_data(
        self, session_id: UUID | str, data: Mapping[str, Any], *, workspace_id: UUID | str
    ) -> SessionState:
        """Shallow-merge `data` into captured_data atomically (top-level keys replace)."""
        return self._run(operations.update_captured_data(session_id, workspace_id, data))

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
        metadata: Mapping[str, Any] | None = None,
    ) -> AgentTurn:
        """Store a turn and add it to the session's totals, in one round trip.

        Without `turn_number` the database assigns the next one. A taken `turn_number`
        raises SessionError with code 23505. With an `idempotency_key` (say, the inbound
        message id) a repeated call returns the stored turn and changes nothing, so the call
        is safe to retry after a timeout or a redelivered webhook; the same key with other
        values (metadata included) raises IdempotencyConflictError. `metadata`: a JSON object
        of your own (the raw model message, channel ids), stored and returned exactly.
        """
        fields = {
            "role": role,
            "content": content,
            "turn_number": turn_number,
            "intent_detected": intent_detected,
            "confidence": confidence,
            "tools_called": tools_called,
            "tokens_used": tokens_used,
            "idempotency_key": idempotency_key,
            "metadata": metadata,
        }
        return self._run(operations.add_turn(session_id, workspace_id, fields))

    def get_turns(
        self,
        session_id: UUID | str,
        *,
        workspace_id: UUID | str,
        limit: int | None = None,
        after_turn: int | None = None,
        before_turn: int | None = None,
    ) -> list[AgentTurn]:
        """Turns ordered by turn_number: after `after_turn` (exclusive), at most `limit`.

        With `before_turn` it pages backwards instead: the newest `limit` turns (a limit is
        then required, at most 1,000) numbered below it, oldest first, as get_recent_turns
        reads them. One round trip; raises SessionNotFoundError (not an empty list) for a
        session that is not in this workspace.
        """
        return self._run(
            operations.get_turns(session_id, workspace_id, limit, after_turn, before_turn)
        )

    def get_total_tokens_used(self, session_id: UUID | str, *, workspace_id: UUID | str) -> int:
        """The session's running token total (kept by add_turn; no turn is read)."""
        return self._run(operations.get_total_tokens_used(session_id, workspace_id))

    def get_turn_count(self, session_id: UUID | str, *, workspace_id: UUID | str) -> int:
        """The session's running turn count (kept by add_turn; no turn is read)."""
        return self._run(operations.get_turn_count(session_id, workspace_id))

    def add_turns(
        self,
        session_id: UUID | str,
        turns: Sequence[Mapping[str, Any]],
        *,
        workspace_id: UUID | str,
    ) -> list[AgentTurn]:
        """Store several turns in one round trip and one transaction, all or nothing.

        Each turn is a mapping of add_turn's keyword arguments (no `turn_number`: the
        database numbers the batch consecutively); at most 1,000. The totals are updated
        once. A turn whose `idempotency_key` is already stored with the same values is
        returned as stored and not counted again (a redelivered batch changes nothing); a
        stored key with other values, or one key twice in the batch with different values,
        raises IdempotencyConflictError and stores nothing. Returns the turns in the order
        given.
        """
        return self._run(operations.add_turns(session_id, workspace_id, turns))

    def get_recent_turns(
        self,
        session_id: UUID | str,
        *,
        workspace_id: UUID | str,
        limit: int,
        before_turn: int | None = None,
    ) -> list[AgentTurn]:
        """The newest `limit` turns (at most 1,000), oldest first, in one round trip.

        With `before_turn`, the newest `limit` of those numbered below it: pass the first
        turn of a page to read the page before. The cost does not grow with the session's
        length. Raises SessionNotFoundError for a session that is not in this workspace.
        """
        return self._run(operations.get_recent_turns(session_id, workspace_id, limit, before_turn))

    def pop_turn(self, session_id: UUID | str, *, workspace_id: UUID | str) -> AgentTurn | None:
        """Remove the newest turn and take it off the totals; None if there is none.

        One round trip, serialized with add_turn on the session: the next add_turn reuses
        the number, and no gap or duplicate number appears under concurrent writers.
        """
        return self._run(operations.pop_turn(session_id, workspace_id))

    def clear_turns(self, session_id: UUID | str, *, workspace_id: UUID | str) -> int:
        """Remove every turn of the session and zero its totals; how many were removed."""
        return self._run(operations.clear_turns(session_id, workspace_id))

    # Data lifecycle

    def delete_session(self, session_id: UUID | str, *, workspace_id: UUID | str) -> None:
        """Delete the session with its state and turns, in one round trip.

        Raises SessionNotFoundError if it is not in this workspace.
        """
        self._run(operations.delete_session(session_id, workspace_id))

    def delete_contact_data(self, contact_id: UUID | str, *, workspace_id: UUID | str) -> int:
        """Delete every session of this contact in the workspace, in any status, with their
        state and turns, in one round trip (an erasure request); how many sessions."""
        return self._run(operations.delete_contact_data(contact_id, workspace_id))

    def list_sessions(
        self,
        *,
        workspace_id: UUID | str,
        status: SessionStatus | str | None = None,
        agent_id: str | None = None,
        contact_id: UUID | str | None = None,
        conversation_id: UUID | str | None = None,
        active_after: datetime | None = None,
        active_before: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> SessionPage:
        """A page of the workspace's sessions (with their state), newest activity first.

        Filters combine; `active_after <= last_activity_at < active_before`. `limit` is at
        most 1,000. Pass the page's `next_cursor` as `cursor` for the next page (None: this
        was the last page; a full last page is followed by an empty one). Keyset pagination
        on an index that leads with workspace_id: a page costs the same however many
        sessions the workspace has. One round trip.
        """
        fields = {
            "workspace_id": workspace_id,
            "status": status,
            "agent_id": agent_id,
            "contact_id": contact_id,
            "conversation_id": conversation_id,
            "active_after": active_after,
            "active_before": active_before,
            "limit": limit,
            "cursor": cursor,
        }
        return self._run(operations.list_sessions(fields))

    def purge_sessions(
        self,
        *,
        older_than: timedelta | datetime,
        statuses: Sequence[SessionStatus | str] = (SessionStatus.CLOSED,),
        workspace_id: UUID | str | None = None,
        batch_size: int = 1000,
    ) -> int:
        """Retention: delete sessions in `statuses` idle since before `older_than` (a
        duration back from now, or an aware datetime), with their state and turns.

        Across every workspace unless `workspace_id` is given. Works in batches of
        `batch_size` (at most 10,000), each its own transaction and round trip, skipping
        sessions locked by a writer, so it is safe while traffic flows; returns how many
        sessions were removed. The SQL procedure `agent_engine_purge_sessions` does the same
        from pg_cron.
        """
        purge = operations.purge(
            {
                "older_than": older_than,
                "statuses": tuple(statuses),
                "workspace_id": workspace_id,
                "batch_size": batch_size,
            }
        )
        cutoff = purge.cutoff(datetime.now(UTC))
        removed = 0
        while True:
            batch = self._run(operations.purge_sessions_batch(purge, cutoff))
            removed += batch
            if batch < purge.batch_size:
                return removed
