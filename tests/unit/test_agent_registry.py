"""AgentConfig validation and the AgentRegistry."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from agent_engine import (
    AgentConfig,
    AgentConfigError,
    AgentNotFoundError,
    AgentRegistry,
    agent_registry,
)


def sales_agent(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "id": "whatsapp-sales",
        "name": "WhatsApp sales",
        "intent_detector": {"model": "gpt-4o-mini", "system_prompt": "Detect the intent."},
        "orchestrator": {"model": "gpt-4o", "system_prompt": "Sell politely.", "max_tokens": 800},
        "tools": [{"name": "quote", "description": "Price a product"}],
        "states": ["greeting", "qualifying", "closing"],
        "initial_state": "greeting",
        "valid_transitions": {"greeting": ["qualifying"], "qualifying": ["closing", "greeting"]},
    }
    config.update(overrides)
    return config


def test_a_valid_config_gets_the_documented_defaults() -> None:
    config = AgentConfig.model_validate(sales_agent())

    assert config.token_budget == 50_000
    thresholds = config.confidence_thresholds
    assert (thresholds.proceed, thresholds.reanalyze, thresholds.clarify) == (85, 60, 40)
    assert thresholds.handoff < thresholds.clarify


def test_an_invalid_config_lists_every_problem_at_once() -> None:
    with pytest.raises(AgentConfigError) as raised:
        AgentConfig.model_validate(
            sales_agent(
                initial_state="nowhere",
                valid_transitions={"greeting": ["limbo"], "void": ["closing"]},
                confidence_thresholds={"proceed": 50, "reanalyze": 60, "clarify": 140},
                orchestrator={"model": "gpt-4o", "system_prompt": "  "},
                token_budget=0,
            )
        )

    problems = " | ".join(raised.value.problems)
    assert raised.value.agent_id == "whatsapp-sales"
    assert "initial_state 'nowhere'" in problems
    assert "unknown state 'limbo'" in problems
    assert "unknown state 'void'" in problems
    assert "clarify must be within 0..100" in problems
    assert "proceed (50.0) must be above reanalyze (60.0)" in problems
    assert "orchestrator.system_prompt must not be empty" in problems
    assert "token_budget must be positive" in problems
    assert len(raised.value.problems) == 8  # clarify also breaks the descending order


def test_type_errors_are_reported_as_agent_config_errors_too() -> None:
    with pytest.raises(AgentConfigError) as raised:
        AgentConfig.model_validate(sales_agent(token_budget="lots", states="greeting"))

    assert any(problem.startswith("token_budget") for problem in raised.value.problems)
    assert any(problem.startswith("states") for problem in raised.value.problems)


@pytest.mark.parametrize("bad_id", ["Sales Bot", "", "-sales", "sales!"])
def test_an_id_must_be_a_slug(bad_id: str) -> None:
    with pytest.raises(AgentConfigError, match="slug"):
        AgentConfig.model_validate(sales_agent(id=bad_id))


def test_duplicate_states_and_tool_names_are_problems() -> None:
    with pytest.raises(AgentConfigError) as raised:
        AgentConfig.model_validate(
            sales_agent(
                states=["greeting", "greeting", "closing"],
                tools=[{"name": "quote"}, {"name": "quote"}],
                valid_transitions={},
            )
        )

    problems = " | ".join(raised.value.problems)
    assert "states must be unique" in problems
    assert "tool names must be unique" in problems


def test_transitions_allow_listed_moves_and_staying_put_only() -> None:
    config = AgentConfig.model_validate(sales_agent())

    assert config.allows_transition("greeting", "qualifying")
    assert config.allows_transition("closing", "closing")
    assert not config.allows_transition("greeting", "closing")
    assert config.modes_leading_to("closing") == ("qualifying", "closing")
    assert config.modes_leading_to("unknown") == ()


def test_configs_are_immutable() -> None:
    config = AgentConfig.model_validate(sales_agent())

    with pytest.raises(ValueError, match="frozen"):
        config.name = "changed"  # type: ignore[misc]


def test_register_validates_mappings_and_get_returns_the_config() -> None:
    registry = AgentRegistry()

    stored = registry.register(sales_agent())

    assert registry.get("whatsapp-sales") is stored
    assert registry.has("whatsapp-sales")
    assert "whatsapp-sales" in registry
    assert len(registry) == 1


def test_registering_an_id_twice_needs_replace() -> None:
    registry = AgentRegistry()
    registry.register(sales_agent())

    with pytest.raises(AgentConfigError, match="already registered"):
        registry.register(sales_agent(name="Other"))
    replaced = registry.register(sales_agent(name="Other"), replace=True)

    assert registry.get("whatsapp-sales") is replaced
    assert replaced.name == "Other"


def test_an_invalid_config_is_not_registered() -> None:
    registry = AgentRegistry()

    with pytest.raises(AgentConfigError):
        registry.register(sales_agent(initial_state="nowhere"))

    assert len(registry) == 0


def test_get_of_an_unknown_agent_raises_agent_not_found() -> None:
    with pytest.raises(AgentNotFoundError) as raised:
        AgentRegistry().get("ghost")

    assert raised.value.agent_id == "ghost"
    assert raised.value.to_dict() == {
        "error": "AgentNotFoundError",
        "retryable": False,
        "message": "agent 'ghost' is not registered",
        "agent_id": "ghost",
    }


def test_list_unregister_and_clear() -> None:
    registry = AgentRegistry()
    registry.register(sales_agent(id="b-agent"))
    registry.register(sales_agent(id="a-agent"))

    assert registry.list_ids() == ["a-agent", "b-agent"]
    assert [config.id for config in registry.list()] == ["a-agent", "b-agent"]
    assert registry.unregister("a-agent") is True
    assert registry.unregister("a-agent") is False
    registry.clear()
    assert len(registry) == 0


def test_concurrent_registration_keeps_every_agent() -> None:
    registry = AgentRegistry()
    start = threading.Barrier(8)

    def register_many(worker: int) -> None:
        start.wait()
        for index in range(50):
            registry.register(sales_agent(id=f"agent-{worker}-{index}"))

    threads = [threading.Thread(target=register_many, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(registry) == 400


def test_the_module_level_registry_is_one_shared_instance() -> None:
    from agent_engine._registry import agent_registry as same

    assert isinstance(agent_registry, AgentRegistry)
    assert same is agent_registry
