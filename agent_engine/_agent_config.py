"""AgentConfig: the validated description of one conversational agent.

Validation reports every problem at once (an operator fixing a config file should not play
whack-a-mole), so the sub-models only check types and AgentConfig gathers all semantic
problems into one AgentConfigError.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ModelWrapValidatorHandler,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from agent_engine._errors import AgentConfigError

_SLUG = re.compile(r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$")

StateName = Annotated[str, StringConstraints(strip_whitespace=True)]


class _ConfigPart(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelSettings(_ConfigPart):
    """Which LLM a stage uses, with which system prompt and output budget."""

    model: str
    system_prompt: str
    max_tokens: int = 1024


class ToolConfig(_ConfigPart):
    """A tool the orchestrator may call."""

    name: str
    description: str = ""
    input_schema: dict[str, JsonValue] = Field(default_factory=dict)


class ConfidenceThresholds(_ConfigPart):
    """Intent-confidence cut-offs (0..100, strictly descending).

    At or above `proceed` the agent acts; at or above `reanalyze` it looks again; at or
    above `clarify` it asks the user; at or below `handoff` it hands over to a human.
    """

    proceed: float = 85
    reanalyze: float = 60
    clarify: float = 40
    handoff: float = 20


class AgentConfig(_ConfigPart):
    """A validated, immutable agent configuration.

    Raises AgentConfigError (never pydantic's ValidationError) listing every problem: an id
    that is not a slug, empty name or prompts, non-positive token budgets, an initial state
    that is not a state, transitions naming unknown states, thresholds out of 0..100 or not
    strictly descending, duplicate states or tool names.
    """

    id: str
    name: str
    description: str = ""
    intent_detector: ModelSettings
    orchestrator: ModelSettings
    tools: tuple[ToolConfig, ...] = ()
    states: tuple[StateName, ...]
    initial_state: StateName
    valid_transitions: dict[StateName, tuple[StateName, ...]] = Field(default_factory=dict)
    confidence_thresholds: ConfidenceThresholds = Field(default_factory=ConfidenceThresholds)
    token_budget: int = 50_000

    @model_validator(mode="wrap")
    @classmethod
    def _validate_all_at_once(
        cls,
        data: Any,
        handler: ModelWrapValidatorHandler[Self],
        # Unused. mypy 2.4 types every wrap validator of a run like the first one it meets,
        # so all of them take the same arguments as Settings', which needs `info`.
        info: ValidationInfo[Any],
    ) -> Self:
        agent_id = data.get("id") if isinstance(data, Mapping) else getattr(data, "id", None)
        agent_id = agent_id if isinstance(agent_id, str) else None
        try:
            config = handler(data)
        except ValidationError as error:
            problems = [
                f"{'.'.join(str(part) for part in item['loc']) or 'config'}: {item['msg']}"
                for item in error.errors()
            ]
            # Not a ValueError on purpose: pydantic lets it through unwrapped.
            raise AgentConfigError(agent_id, problems) from error
        problems = config.problems()
        if problems:
            raise AgentConfigError(config.id, problems)
        return config

    def problems(self) -> list[str]:
        """Every semantic problem of this configuration (empty when valid)."""
        problems: list[str] = []
        if not _SLUG.match(self.id):
            problems.append(f"id {self.id!r} must be a slug (lowercase letters, digits, - or _)")
        if not self.name.strip():
            problems.append("name must not be empty")
        for stage in ("intent_detector", "orchestrator"):
            settings: ModelSettings = getattr(self, stage)
            if not settings.model.strip():
                problems.append(f"{stage}.model must not be empty")
            if not settings.system_prompt.strip():
                problems.append(f"{stage}.system_prompt must not be empty")
            if settings.max_tokens <= 0:
                problems.append(f"{stage}.max_tokens must be positive, got {settings.max_tokens}")
        if self.token_budget <= 0:
            problems.append(f"token_budget must be positive, got {self.token_budget}")
        problems.extend(self._state_problems())
        problems.extend(self._threshold_problems())
        tool_names = [tool.name for tool in self.tools]
        if any(not name.strip() for name in tool_names):
            problems.append("every tool needs a name")
        if len(set(tool_names)) != len(tool_names):
            problems.append(f"tool names must be unique, got {tool_names}")
        return problems

    def _state_problems(self) -> list[str]:
        problems: list[str] = []
        if not self.states:
            problems.append("states must not be empty")
        if len(set(self.states)) != len(self.states):
            problems.append(f"states must be unique, got {list(self.states)}")
        problems.extend(
            f"state {state!r} must be a slug (lowercase letters, digits, - or _)"
            for state in self.states
            if not _SLUG.match(state)
        )
        known = set(self.states)
        if self.initial_state not in known:
            problems.append(f"initial_state {self.initial_state!r} is not one of the states")
        for source, targets in self.valid_transitions.items():
            if source not in known:
                problems.append(f"valid_transitions names unknown state {source!r}")
            problems.extend(
                f"valid_transitions[{source!r}] names unknown state {target!r}"
                for target in targets
                if target not in known
            )
        return problems

    def _threshold_problems(self) -> list[str]:
        thresholds = self.confidence_thresholds
        ordered = [
            ("proceed", thresholds.proceed),
            ("reanalyze", thresholds.reanalyze),
            ("clarify", thresholds.clarify),
            ("handoff", thresholds.handoff),
        ]
        problems = [
            f"confidence_thresholds.{name} must be within 0..100, got {value}"
            for name, value in ordered
            if not 0 <= value <= 100
        ]
        problems.extend(
            f"confidence_thresholds must be strictly descending: "
            f"{high_name} ({high}) must be above {low_name} ({low})"
            for (high_name, high), (low_name, low) in itertools.pairwise(ordered)
            if not high > low
        )
        return problems

    def allows_transition(self, from_mode: str, to_mode: str) -> bool:
        """Whether a session of this agent may move from `from_mode` to `to_mode`.

        Staying in the same mode is always allowed.
        """
        return from_mode == to_mode or to_mode in self.valid_transitions.get(from_mode, ())

    def modes_leading_to(self, to_mode: str) -> tuple[str, ...]:
        """The modes from which `to_mode` may be entered (itself included), empty if unknown."""
        if to_mode not in self.states:
            return ()
        return tuple(state for state in self.states if self.allows_transition(state, to_mode))
