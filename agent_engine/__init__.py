"""agent_engine: agent configurations and concurrency-safe agent sessions on Supabase.

The public API is what this module exports; everything else is internal.
"""

from agent_engine.agent_config import (
    AgentConfig,
    ConfidenceThresholds,
    ModelSettings,
    ToolConfig,
)
from agent_engine.config import Settings, create_admin_client
from agent_engine.errors import (
    AgentConfigError,
    AgentEngineError,
    AgentNotFoundError,
    ConfigError,
    IdempotencyConflictError,
    InvalidTransitionError,
    SessionAlreadyActiveError,
    SessionError,
    SessionNotFoundError,
    VersionConflictError,
)
from agent_engine.models import (
    AgentSession,
    AgentSessionWithState,
    AgentTurn,
    IntentRecord,
    SessionState,
    SessionStatus,
    ToolCallRecord,
    TurnRole,
)
from agent_engine.registry import AgentRegistry, agent_registry
from agent_engine.session_manager import SessionManager

__all__ = [
    "AgentConfig",
    "AgentConfigError",
    "AgentEngineError",
    "AgentNotFoundError",
    "AgentRegistry",
    "AgentSession",
    "AgentSessionWithState",
    "AgentTurn",
    "ConfidenceThresholds",
    "ConfigError",
    "IdempotencyConflictError",
    "IntentRecord",
    "InvalidTransitionError",
    "ModelSettings",
    "SessionAlreadyActiveError",
    "SessionError",
    "SessionManager",
    "SessionNotFoundError",
    "SessionState",
    "SessionStatus",
    "Settings",
    "ToolCallRecord",
    "ToolConfig",
    "TurnRole",
    "VersionConflictError",
    "agent_registry",
    "create_admin_client",
]
