"""AgentRegistry: the process's agent configurations, registered at start-up, fetched by id."""

from __future__ import annotations

import builtins
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from agent_engine._agent_config import AgentConfig
from agent_engine._errors import AgentConfigError, AgentNotFoundError


class AgentRegistry:
    """A thread-safe map from agent id to its validated AgentConfig.

    Registration validates (a mapping is parsed into an AgentConfig); configs are immutable,
    so a fetched config can be shared freely across threads.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._agents: dict[str, AgentConfig] = {}

    def register(
        self, config: AgentConfig | Mapping[str, Any], *, replace: bool = False
    ) -> AgentConfig:
        """Validate and register a configuration; returns the stored AgentConfig.

        Raises AgentConfigError if the configuration is invalid, or if an agent with the same
        id is already registered and `replace` is False.
        """
        validated = (
            config if isinstance(config, AgentConfig) else AgentConfig.model_validate(config)
        )
        with self._lock:
            if not replace and validated.id in self._agents:
                raise AgentConfigError(
                    validated.id,
                    [f"agent {validated.id!r} is already registered (pass replace=True)"],
                )
            self._agents[validated.id] = validated
        return validated

    def get(self, agent_id: str) -> AgentConfig:
        """The configuration of `agent_id`; raises AgentNotFoundError if it is not registered."""
        with self._lock:
            config = self._agents.get(agent_id)
        if config is None:
            raise AgentNotFoundError(agent_id)
        return config

    def has(self, agent_id: str) -> bool:
        """Whether `agent_id` is registered."""
        with self._lock:
            return agent_id in self._agents

    def list(self) -> list[AgentConfig]:
        """All registered configurations, ordered by id."""
        with self._lock:
            return [self._agents[agent_id] for agent_id in sorted(self._agents)]

    def list_ids(self) -> builtins.list[str]:
        """All registered agent ids, sorted."""
        with self._lock:
            return sorted(self._agents)

    def unregister(self, agent_id: str) -> bool:
        """Remove `agent_id`; returns whether it was registered."""
        with self._lock:
            return self._agents.pop(agent_id, None) is not None

    def clear(self) -> None:
        """Remove every agent (tests use this between cases)."""
        with self._lock:
            self._agents.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._agents)

    def __contains__(self, agent_id: object) -> bool:
        with self._lock:
            return agent_id in self._agents

    def __iter__(self) -> Iterator[AgentConfig]:
        return iter(self.list())


agent_registry = AgentRegistry()
"""The process-wide registry: register agents at start-up, fetch them anywhere."""
