"""The direct transport's statement cache: the SQL of a request shape is rendered once.

A cached statement must be exactly what compile_request builds for the request at hand (the
same text, the same parameters in the same order), for every shape the operations build and
whatever the values; and the cache grows with the shapes, never with the calls.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_engine import AgentRegistry
from agent_engine import _operations as operations
from agent_engine._postgres_sql import StatementCache, compile_request
from agent_engine._transport import (
    AnyOf,
    Call,
    Embed,
    Equals,
    GreaterThan,
    OneOf,
    Request,
    Select,
    Update,
)
from tests.strategies import json_values, texts
from tests.unit.conftest import AGENT_ID, OTHER_AGENT_ID

BOUND = b"set local statement_timeout = %s; "

Build = Callable[[int, AgentRegistry], Request]
"""Builds call number n of one shape: same structure each time, other values."""


def _ids(number: int) -> tuple[UUID, UUID]:
    return UUID(int=2 * number + 1), UUID(int=2 * number + 2)


def _session_request(number: int, registry: AgentRegistry | None, **changes: Any) -> Request:
    session_id, workspace_id = _ids(number)
    fields = {
        "expected_version": number + 1,
        "current_mode": None,
        "status": None,
        "last_activity_at": None,
        **changes,
    }
    operation = operations.update_session_with_version(session_id, workspace_id, registry, fields)
    return operation.request


def _second_look(number: int, registry: AgentRegistry) -> Request:
    session_id, workspace_id = _ids(number)
    fields = {"expected_version": 1, "current_mode": None, "status": "paused"}
    look = operations.update_session_with_version(
        session_id, workspace_id, None, fields
    ).second_look
    assert look is not None
    return look.request


def _new_session(number: int, registry: AgentRegistry, **changes: Any) -> Request:
    fields = {
        "workspace_id": _ids(number)[1],
        "agent_id": AGENT_ID,
        "conversation_id": uuid4(),
        "contact_id": None,
        "initial_mode": None,
        "initial_state": None,
        **changes,
    }
    return operations.create_session(registry, fields).request


def _add_turn(number: int, registry: AgentRegistry, **changes: Any) -> Request:
    fields = {
        "role": "user",
        "content": f"message {number}: it's 100% 'quoted' \\ and $1",
        "turn_number": None,
        "intent_detected": None,
        "confidence": None,
        "tools_called": (),
        "tokens_used": number,
        "idempotency_key": f"key-{number}",
        **changes,
    }
    return operations.add_turn(*_ids(number), fields).request


OPERATION_SHAPES: dict[str, Build] = {
    "create_session": _new_session,
    "create_session with contact and initial state": lambda n, registry: _new_session(
        n,
        registry,
        contact_id=uuid4(),
        initial_mode="qualifying",
        initial_state={
            "captured_data": {"size": 42, "n": n},
            "templates_sent": ["welcome"],
            "intents_seen": [
                {"intent": "pricing", "order": 1, "seen_at": datetime(2026, 1, 1, tzinfo=UTC)}
            ],
        },
    ),
    "get_or_create_session": lambda n, registry: (
        operations.get_or_create_session(
            None,
            {
                "workspace_id": _ids(n)[1],
                "agent_id": f"agent-{n}",
                "conversation_id": uuid4(),
                "contact_id": None,
                "initial_mode": "greeting",
                "initial_state": None,
            },
        ).request
    ),
    "get_session": lambda n, registry: operations.get_session(*_ids(n)).request,
    "get_session_by_conversation": lambda n, registry: (
        operations.get_session_by_conversation(uuid4(), f"agent-{n}", _ids(n)[1]).request
    ),
    "update_session_with_version (mode)": lambda n, registry: _session_request(
        n, None, current_mode=f"mode-{n}"
    ),
    "update_session_with_version (status: OneOf)": lambda n, registry: _session_request(
        n, None, status=("paused", "closed")[n % 2]
    ),
    "update_session_with_version (mode guarded: AnyOf)": lambda n, registry: _session_request(
        n, registry, current_mode="scheduling"
    ),
    "update_session_with_version (everything)": lambda n, registry: _session_request(
        n,
        registry,
        current_mode="scheduling",
        status="active",
        last_activity_at=datetime(2026, 1, 1 + n % 28, tzinfo=UTC),
    ),
    "update_session_with_version's second look": _second_look,
    "get_state": lambda n, registry: operations.get_state(*_ids(n)).request,
    "update_state (one field)": lambda n, registry: (
        operations.update_state(*_ids(n), {"captured_data": {"n": n}}).request
    ),
    "update_state (every field)": lambda n, registry: (
        operations.update_state(
            *_ids(n),
            {
                "captured_data": {"n": n, "nested": {"list": [1, 2.5, None, True]}},
                "templates_sent": [f"template-{n}"],
                "intents_seen": [
                    {
                        "intent": "pricing",
                        "order": n + 1,
                        "seen_at": datetime(2026, 1, 1, tzinfo=UTC),
                    }
                ],
            },
        ).request
    ),
    "add_intent_seen": lambda n, registry: (
        operations.add_intent_seen(*_ids(n), f"intent-{n}").request
    ),
    "add_template_sent": lambda n, registry: (
        operations.add_template_sent(*_ids(n), f"template-{n}").request
    ),
    "update_captured_data": lambda n, registry: (
        operations.update_captured_data(
            *_ids(n), {"size": n, "colour": "blue", "ok": n % 2 == 0}
        ).request
    ),
    "add_turn": _add_turn,
    "add_turn with every field": lambda n, registry: _add_turn(
        n,
        registry,
        role="assistant",
        turn_number=n + 1,
        intent_detected="pricing",
        confidence=0.25 + n / 1000,
        tools_called=[{"name": "lookup", "input": {"sku": n}, "result": [n, "x"]}],
    ),
    "get_turns": lambda n, registry: operations.get_turns(*_ids(n), None, None).request,
    "get_turns (limit)": lambda n, registry: operations.get_turns(*_ids(n), n + 1, None).request,
    "get_turns (after: GreaterThan, limit)": lambda n, registry: (
        operations.get_turns(*_ids(n), n + 1, n).request
    ),
    "get_total_tokens_used": lambda n, registry: operations.get_total_tokens_used(*_ids(n)).request,
    "get_turn_count": lambda n, registry: operations.get_turn_count(*_ids(n)).request,
}


def _texts_of(requests: list[Request]) -> set[bytes]:
    """The distinct statements compile_request makes of `requests`."""
    return {compile_request(request)[0].as_bytes(None) for request in requests}


def _assert_cached_equals_compiled(cache: StatementCache, request: Request) -> None:
    statement, parameters = cache.statement(request)
    composed, expected_parameters = compile_request(request)
    expected = composed.as_bytes(None)
    assert statement.text == expected
    assert statement.bounded_text == BOUND + expected
    assert parameters == expected_parameters


@pytest.mark.parametrize("build", OPERATION_SHAPES.values(), ids=OPERATION_SHAPES.keys())
def test_each_operation_shape_is_compiled_once_and_every_call_binds_its_own_values(
    build: Build, registry: AgentRegistry
) -> None:
    cache = StatementCache()
    for number in range(5):
        _assert_cached_equals_compiled(cache, build(number, registry))
    assert len(cache) == 1


def test_the_operations_build_one_statement_per_shape_however_many_calls(
    registry: AgentRegistry,
) -> None:
    # Variants that only pass other values (create_session with a contact, add_turn with
    # every field) share their operation's shape: a function always gets every argument.
    distinct_texts = _texts_of([build(0, registry) for build in OPERATION_SHAPES.values()])
    cache = StatementCache()
    sizes = []
    for number in range(50):
        for build in OPERATION_SHAPES.values():
            cache.statement(build(number, registry))
        sizes.append(len(cache))
    assert sizes == [len(distinct_texts)] * 50


def test_the_statement_text_holds_no_value(registry: AgentRegistry) -> None:
    cache = StatementCache()
    session_id, workspace_id = _ids(7)
    statement, parameters = cache.statement(_add_turn(7, registry))
    for value in (str(session_id), str(workspace_id), "key-7", "message 7"):
        assert value.encode() not in statement.text
    assert str(session_id) in parameters


# Request shapes written directly: every kind of condition, embed and option.

WORKSPACE = Equals("workspace_id", "w")


def _condition_shapes(value: Any) -> dict[str, Request]:
    text = value if isinstance(value, str) else "x"
    # A limit of 0 means none (another shape): numbers here are from 1 up.
    number = abs(value) + 1 if isinstance(value, int) and not isinstance(value, bool) else 3
    return {
        "call": Call("some_function", {"p_a": value, "p_b": text, "p_c": None}),
        "select single, Equals": Select("t", (WORKSPACE, Equals("id", text))),
        "select many, GreaterThan, limit": Select(
            "t", (GreaterThan("n", number),), single=False, limit=number
        ),
        "select, OneOf": Select("t", (OneOf("status", (text, "b")),)),
        "select, empty OneOf": Select("t", (OneOf("status", ()),)),
        "select, AnyOf": Select(
            "t",
            (
                WORKSPACE,
                AnyOf(
                    (
                        (Equals("agent_id", text), OneOf("mode", ("a", text))),
                        (Equals("agent_id", "other"),),
                    )
                ),
            ),
        ),
        "select, empty AnyOf": Select("t", (AnyOf(()),)),
        "select, no condition": Select("t", ()),
        "select columns": Select("t", (WORKSPACE,), columns=("id", "version")),
        "select, embeds with conditions": Select(
            "t",
            (WORKSPACE, Equals("id", text)),
            columns=("id",),
            embeds=(
                Embed("one", many=False),
                Embed("many", many=True, conditions=(GreaterThan("n", number),)),
                Embed(
                    "page",
                    many=True,
                    conditions=(Equals("kind", text), OneOf("tag", (text,))),
                    order_by="n",
                    limit=number,
                ),
            ),
        ),
        "update": Update(
            "t",
            {"a": value, "b": text, "c": None},
            (WORKSPACE, Equals("version", number), OneOf("status", ("a", text))),
        ),
        "update, AnyOf": Update(
            "t", {"mode": text}, (AnyOf(((Equals("agent_id", text), OneOf("mode", ("a",))),)),)
        ),
    }


@settings(max_examples=150, deadline=None)
@given(values=st.lists(json_values, min_size=2, max_size=2))
def test_a_cached_statement_matches_the_compiled_one_whatever_the_values(
    values: list[Any],
) -> None:
    cache = StatementCache()
    for value in values:
        for request in _condition_shapes(value).values():
            _assert_cached_equals_compiled(cache, request)
    # An empty OneOf binds an empty array: the same statement as a full one.
    assert len(cache) == len(_texts_of(list(_condition_shapes(None).values())))


@settings(max_examples=50, deadline=None)
@given(first=texts, second=texts)
def test_text_values_never_reach_the_statement(first: str, second: str) -> None:
    cache = StatementCache()
    first_statement, first_parameters = cache.statement(Select("t", (Equals("id", first),)))
    second_statement, second_parameters = cache.statement(Select("t", (Equals("id", second),)))
    assert first_statement is second_statement
    assert (first_parameters, second_parameters) == ([first], [second])


def test_shapes_that_differ_only_in_structure_get_statements_of_their_own() -> None:
    cache = StatementCache()
    requests: list[Request] = [
        Select("t", (Equals("id", "x"),)),
        Select("t", (GreaterThan("id", 1),)),
        Select("t", (OneOf("id", ("x",)),)),
        Select("t", (Equals("id", "x"),), single=False),
        Select("t", (Equals("id", "x"),), limit=1),
        Select("t", (Equals("id", "x"),), columns=("id",)),
        Select("u", (Equals("id", "x"),)),
        Select("t", (Equals("other", "x"),)),
        Select("t", (Equals("id", "x"),), embeds=(Embed("c", many=False),)),
        Select("t", (Equals("id", "x"),), embeds=(Embed("c", many=True),)),
        Select("t", (Equals("id", "x"),), embeds=(Embed("c", many=True, order_by="n"),)),
        Select("t", (Equals("id", "x"),), embeds=(Embed("c", many=True, limit=5),)),
        Update("t", {"a": 1}, (Equals("id", "x"),)),
        Update("t", {"b": 1}, (Equals("id", "x"),)),
        Update("t", {"a": 1, "b": 2}, (Equals("id", "x"),)),
        Call("f", {"p_a": 1}),
        Call("f", {"p_b": 1}),
        Call("g", {"p_a": 1}),
    ]
    texts_seen = {cache.statement(request)[0].text for request in requests}
    assert len(cache) == len(requests) == len(texts_seen)
    for request in requests:
        _assert_cached_equals_compiled(cache, request)


def test_the_cache_starts_over_when_full_and_stays_correct() -> None:
    cache = StatementCache(max_shapes=3)
    functions = [f"function_{index}" for index in range(10)]
    for function in functions * 2:
        request = Call(function, {"p_a": function})
        _assert_cached_equals_compiled(cache, request)
        assert 1 <= len(cache) <= 3


@pytest.mark.parametrize(
    ("value", "bound"),
    [
        (None, None),
        ("text", "text"),
        (True, "true"),
        (False, "false"),
        (42, "42"),
        (0.5, "0.5"),
        ({"a": [1, None]}, '{"a": [1, null]}'),
        ([], "[]"),
    ],
)
def test_values_are_bound_as_text_of_unknown_type(value: object, bound: str | None) -> None:
    _, parameters = StatementCache().statement(Call("f", {"p_value": value}))
    assert parameters == [bound]


def test_one_of_is_bound_as_a_text_array() -> None:
    _, parameters = StatementCache().statement(Select("t", (OneOf("status", ("a", "b")),)))
    assert parameters == [["a", "b"]]


def test_a_guarded_mode_change_has_a_branch_per_agent_that_has_the_mode(
    registry: AgentRegistry,
) -> None:
    """The AnyOf shape above: both sample agents have `scheduling`."""
    request = _session_request(1, registry, current_mode="scheduling")
    assert isinstance(request, Update)
    guards = [condition for condition in request.conditions if isinstance(condition, AnyOf)]
    assert [branch[0] for branch in guards[0].branches] == [
        Equals("agent_id", OTHER_AGENT_ID),
        Equals("agent_id", AGENT_ID),
    ]
