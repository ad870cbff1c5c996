"""Translate a transport Failure into the public error it means: the one place for that.

Errors are matched on the code only (PostgREST code or SQLSTATE): message and details
texts differ between PostgREST and Postgres versions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from uuid import UUID

from agent_engine._errors import AgentEngineError, SessionError, SessionNotFoundError
from agent_engine._schema import SESSION_NOT_FOUND_SQLSTATE
from agent_engine._transport import NO_ROWS_CODE, Failure

_RETRYABLE_CODES = frozenset(
    {
        "PGRST000",  # database unreachable
        "PGRST001",  # database client error
        "PGRST002",  # schema cache not loaded yet
        "PGRST003",  # pool acquisition timeout
        "40001",  # serialization failure
        "40P01",  # deadlock detected
        "55P03",  # lock not available
        "57014",  # statement timeout / query cancelled
        "57P01",  # server shut down (admin)
        "57P02",  # crash shutdown
        "57P03",  # cannot connect now (starting up)
    }
)
"""Codes the server sent. An HTTP status without a code (a gateway's page, for which
postgrest-py makes the status the code) is judged by the transport, in Failure.retryable."""
_RETRYABLE_CLASSES = ("08", "53")  # connection exceptions, insufficient resources


def is_retryable(failure: Failure) -> bool:
    """Whether repeating the same request unchanged may succeed."""
    if failure.retryable is not None:
        return failure.retryable
    if failure.unreachable:
        return True
    return is_retryable_code(failure.code)


def is_retryable_code(code: str | None) -> bool:
    """Whether the server's code (PostgREST's, or a SQLSTATE) says a retry may succeed."""
    code = code or ""
    return code in _RETRYABLE_CODES or code.startswith(_RETRYABLE_CLASSES)


ErrorFactory = Callable[[Failure], AgentEngineError]


@dataclass(slots=True)  # built on every call: see Operation on why not frozen
class ErrorScope:
    """What an operation was doing and for which session/workspace, to name it in errors.

    `by_code` maps the codes this operation gives a specific meaning (for example 23505 on
    create_session means "already active") to the error they become.
    """

    operation: str
    workspace: UUID | str | None
    """The workspace's id, or its canonical text (SessionScope's, which makes no UUID on
    the way out: most calls never fail); None for an operation across workspaces
    (purge_sessions without one)."""
    session: UUID | str | None = None
    by_code: Mapping[str, ErrorFactory] = field(default_factory=dict)

    @property
    def workspace_id(self) -> UUID | None:
        """The workspace the error names."""
        return _as_uuid(self.workspace)

    @property
    def session_id(self) -> UUID | None:
        """The session the error names."""
        return _as_uuid(self.session)


def _as_uuid(value: UUID | str | None) -> UUID | None:
    return value if value is None or isinstance(value, UUID) else UUID(value)


def translate(failure: Failure, scope: ErrorScope) -> AgentEngineError:
    """The public error for `failure` in `scope` (the caller chains the cause)."""
    if failure.code is not None and failure.code in scope.by_code:
        return scope.by_code[failure.code](failure)
    session_id, workspace_id = scope.session_id, scope.workspace_id
    if failure.code in (NO_ROWS_CODE, SESSION_NOT_FOUND_SQLSTATE) and workspace_id:
        return SessionNotFoundError(session_id, workspace_id, code=failure.code)
    subject = f"session {session_id}" if session_id else "a session"
    where = f"workspace {workspace_id}" if workspace_id else "any workspace"
    what = f"code {failure.code}" if failure.code else "no code"
    return SessionError(
        f"{scope.operation} failed for {subject} in {where} ({what}): {failure.message}",
        session_id=session_id,
        workspace_id=workspace_id,
        code=failure.code,
        details=failure.details,
        hint=failure.hint,
        retryable=is_retryable(failure),
    )
