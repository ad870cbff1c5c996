"""agent_engine: agent configurations and concurrency-safe agent sessions on Supabase.

The public API is what this module exports; everything else is internal.
"""

from agent_engine._agent_config import (
    AgentConfig,
    ConfidenceThresholds,
    ModelSettings,
    ToolConfig,
)
from agent_engine._async.session_manager import AsyncSessionManager
from agent_engine._errors import (
    AgentConfigError,
    AgentEngineError,
    AgentNotFoundError,
    ConfigError,
    IdempotencyConflictError,
    InvalidTransitionError,
    MigrationError,
    SessionAlreadyActiveError,
    SessionError,
    SessionNotFoundError,
    VersionConflictError,
)
from agent_engine._models import (
    AgentSession,
    AgentSessionWithState,
    AgentTurn,
    IntentRecord,
    SessionPage,
    SessionState,
    SessionStatus,
    ToolCallRecord,
    TurnRole,
)
from agent_engine._registry import AgentRegistry, agent_registry
from agent_engine._sync.session_manager import SessionManager
from agent_engine._transport import (
    JSON,
    AnyOf,
    AsyncTransport,
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
from agent_engine.settings import Settings, create_admin_client, create_async_admin_client

__all__ = [
    "JSON",
    "AgentConfig",
    "AgentConfigError",
    "AgentEngineError",
    "AgentNotFoundError",
    "AgentRegistry",
    "AgentSession",
    "AgentSessionWithState",
    "AgentTurn",
    "AnyOf",
    "AsyncSessionManager",
    "AsyncTransport",
    "Call",
    "Condition",
    "ConfidenceThresholds",
    "ConfigError",
    "Embed",
    "Equals",
    "Failure",
    "GreaterThan",
    "IdempotencyConflictError",
    "IntentRecord",
    "InvalidTransitionError",
    "MigrationError",
    "ModelSettings",
    "OneOf",
    "Request",
    "Select",
    "SessionAlreadyActiveError",
    "SessionError",
    "SessionManager",
    "SessionNotFoundError",
    "SessionPage",
    "SessionState",
    "SessionStatus",
    "Settings",
    "ToolCallRecord",
    "ToolConfig",
    "Transport",
    "TurnRole",
    "Update",
    "VersionConflictError",
    "agent_registry",
    "create_admin_client",
    "create_async_admin_client",
]
