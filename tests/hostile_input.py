"""Inputs a hostile or sloppy caller sends, each with the argument its error must name.

One table for both transports: tests/unit runs every case on the Supabase manager (respx
must see no request), tests/db/behaviour on the direct one (the spying transport must see no
statement). Every case must raise ValueError (pydantic's ValidationError is one) whose text
names the argument, before anything reaches the wire.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from agent_engine import SessionManager
from agent_engine._models import (
    IDENTIFIER_MAX_LENGTH,
    JSON_MAX_DEPTH,
    JSON_SAFE_INTEGER,
    MAX_EXPLICIT_TURN_NUMBER,
    POSTGRES_INTEGER_MAX,
)

Call = Callable[[SessionManager, uuid.UUID, uuid.UUID], object]
"""(manager, a session id, its workspace id) -> the call under test."""

AGENT_ID = "sales-bot"
"""An agent id the cases use; managers under test here have no registry."""

NUL = "\x00"
LONE_SURROGATE = "\ud83d"
TOO_LONG = "k" * (IDENTIFIER_MAX_LENGTH + 1)
NAIVE = datetime(2026, 11, 29, 12, 0)
"""A datetime without a time zone: the point of the cases that use it."""


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def _cyclic() -> dict[str, Any]:
    value: dict[str, Any] = {}
    value["self"] = value
    return value


def add_turn(**overrides: Any) -> Call:
    arguments: dict[str, Any] = {"role": "user", "content": "hello", **overrides}
    return lambda m, s, w: m.add_turn(s, workspace_id=w, **arguments)


def create_session(**overrides: Any) -> Call:
    def call(m: SessionManager, s: uuid.UUID, w: uuid.UUID) -> object:
        arguments: dict[str, Any] = {
            "workspace_id": w,
            "agent_id": AGENT_ID,
            "conversation_id": uuid.uuid4(),
            "initial_mode": "greeting",
            **overrides,
        }
        return m.create_session(**arguments)

    return call


def update_session(expected_version: Any = 1, **changes: Any) -> Call:
    return lambda m, s, w: m.update_session_with_version(
        s, expected_version, workspace_id=w, **changes
    )


def update_state(**fields: Any) -> Call:
    return lambda m, s, w: m.update_state(s, workspace_id=w, **fields)


def captured(data: Any) -> Call:
    return lambda m, s, w: m.update_captured_data(s, data, workspace_id=w)


def intent(value: Any) -> Call:
    return lambda m, s, w: m.add_intent_seen(s, value, workspace_id=w)


def template(value: Any) -> Call:
    return lambda m, s, w: m.add_template_sent(s, value, workspace_id=w)


def turns(**page: Any) -> Call:
    return lambda m, s, w: m.get_turns(s, workspace_id=w, **page)


def intent_record(**overrides: Any) -> dict[str, Any]:
    return {"intent": "pricing", "order": 1, "seen_at": "2026-11-29T12:00:00+00:00", **overrides}


HOSTILE_INPUT: dict[str, tuple[Call, str]] = {
    # U+0000 and lone surrogates, wherever text goes
    "NUL in content": (add_turn(content=f"hi{NUL}there"), "content"),
    "lone surrogate in content": (add_turn(content=f"hi {LONE_SURROGATE}"), "content"),
    "NUL in agent_id": (create_session(agent_id=f"sales{NUL}"), "agent_id"),
    "lone surrogate in initial_mode": (
        create_session(initial_mode=LONE_SURROGATE),
        "initial_mode",
    ),
    "NUL in a mode change": (update_session(current_mode=f"a{NUL}b"), "current_mode"),
    "NUL in intent": (intent(f"pricing{NUL}"), "intent"),
    "lone surrogate in template name": (template(f"t{LONE_SURROGATE}"), "template_name"),
    "NUL in intent_detected": (add_turn(intent_detected=f"x{NUL}"), "intent_detected"),
    "NUL in idempotency key": (add_turn(idempotency_key=f"wamid{NUL}1"), "idempotency_key"),
    "lone surrogate in a tool name": (
        add_turn(tools_called=[{"name": LONE_SURROGATE}]),
        "tools_called",
    ),
    "NUL in a captured data key": (captured({f"na{NUL}me": "Ana"}), "data"),
    "NUL in a nested captured value": (captured({"a": {"b": ["ok", f"x{NUL}"]}}), "data"),
    "lone surrogate in a nested captured key": (
        captured({"a": [{LONE_SURROGATE: 1}]}),
        "data",
    ),
    "NUL in a tool input": (
        add_turn(tools_called=[{"name": "lookup", "input": {"q": NUL}}]),
        "tools_called",
    ),
    "lone surrogate in a tool result": (
        add_turn(tools_called=[{"name": "lookup", "result": [LONE_SURROGATE]}]),
        "tools_called",
    ),
    "NUL in update_state captured_data": (
        update_state(captured_data={"k": NUL}),
        "captured_data",
    ),
    "NUL in an intent given whole": (
        update_state(intents_seen=[intent_record(intent=f"a{NUL}")]),
        "intents_seen",
    ),
    "NUL in a template given whole": (
        create_session(initial_state={"templates_sent": [f"w{NUL}"]}),
        "templates_sent",
    ),
    # numbers JSON cannot carry exactly
    "NaN in captured data": (captured({"score": float("nan")}), "data"),
    "Infinity nested in captured data": (captured({"a": [1, float("inf")]}), "data"),
    "-Infinity in a tool result": (
        add_turn(tools_called=[{"name": "f", "result": float("-inf")}]),
        "tools_called",
    ),
    "NaN in a tool input": (
        add_turn(tools_called=[{"name": "f", "input": {"x": float("nan")}}]),
        "tools_called",
    ),
    "NaN in initial captured data": (
        create_session(initial_state={"captured_data": {"x": float("nan")}}),
        "captured_data",
    ),
    "integer beyond the JSON safe range": (captured({"n": JSON_SAFE_INTEGER + 1}), "data"),
    "integer JSON cannot encode": (captured({"n": 10**5000}), "data"),
    "float beyond the JSON safe range": (captured({"x": 1e300}), "data"),
    "JSON nested too deeply": (captured(_nested(JSON_MAX_DEPTH + 1)), "data"),
    "JSON that contains itself": (captured(_cyclic()), "data"),
    "a tuple in captured data": (captured({"pair": (1, 2)}), "data"),
    "a datetime in a tool input": (
        add_turn(tools_called=[{"name": "f", "input": {"at": NAIVE}}]),
        "tools_called",
    ),
    # identifiers longer than their maximum
    "agent_id too long": (create_session(agent_id=TOO_LONG), "agent_id"),
    "initial_mode too long": (create_session(initial_mode=TOO_LONG), "initial_mode"),
    "mode change too long": (update_session(current_mode=TOO_LONG), "current_mode"),
    "intent too long": (intent(TOO_LONG), "intent"),
    "template name too long": (template(TOO_LONG), "template_name"),
    "intent_detected too long": (add_turn(intent_detected=TOO_LONG), "intent_detected"),
    "idempotency key of 3000 characters": (
        add_turn(idempotency_key="k" * 3000),
        "idempotency_key",
    ),
    "tool name too long": (add_turn(tools_called=[{"name": TOO_LONG}]), "tools_called"),
    "agent_id too long in a lookup": (
        lambda m, s, w: m.get_session_by_conversation(uuid.uuid4(), TOO_LONG, workspace_id=w),
        "agent_id",
    ),
    # integers outside their column's range, and booleans posing as integers
    "tokens_used beyond integer": (add_turn(tokens_used=POSTGRES_INTEGER_MAX + 1), "tokens_used"),
    "turn_number above the explicit maximum": (
        add_turn(turn_number=MAX_EXPLICIT_TURN_NUMBER + 1),
        "turn_number",
    ),
    "turn_number at the integer maximum": (
        add_turn(turn_number=POSTGRES_INTEGER_MAX),
        "turn_number",
    ),
    "expected_version whose successor overflows": (
        update_session(POSTGRES_INTEGER_MAX, status="paused"),
        "expected_version",
    ),
    "expected_version beyond bigint": (update_session(2**63, status="paused"), "expected_version"),
    "limit beyond integer": (turns(limit=POSTGRES_INTEGER_MAX + 1), "limit"),
    "after_turn beyond integer": (turns(after_turn=POSTGRES_INTEGER_MAX + 1), "after_turn"),
    "tokens_used True": (add_turn(tokens_used=True), "tokens_used"),
    "turn_number True": (add_turn(turn_number=True), "turn_number"),
    "expected_version True": (update_session(True, status="paused"), "expected_version"),
    "limit True": (turns(limit=True), "limit"),
    "after_turn False": (turns(after_turn=False), "after_turn"),
    "confidence True": (add_turn(confidence=True), "confidence"),
    "intent order True": (update_state(intents_seen=[intent_record(order=True)]), "intents_seen"),
    "mutate_session attempts True": (
        lambda m, s, w: m.mutate_session(s, lambda _: None, workspace_id=w, attempts=True),
        "attempts",
    ),
    # wrong types
    "tokens_used as a string": (add_turn(tokens_used="5"), "tokens_used"),
    "turn_number as a float": (add_turn(turn_number=2.0), "turn_number"),
    "confidence as a string": (add_turn(confidence="90"), "confidence"),
    "expected_version as a string": (update_session("1", status="paused"), "expected_version"),
    "limit as a string": (turns(limit="10"), "limit"),
    "content None": (add_turn(content=None), "content"),
    "content a number": (add_turn(content=42), "content"),
    "content bytes": (add_turn(content=b"hello"), "content"),
    "role None": (add_turn(role=None), "role"),
    "tools_called None": (add_turn(tools_called=None), "tools_called"),
    "tools_called a string": (add_turn(tools_called="lookup"), "tools_called"),
    "tools_called entry a string": (add_turn(tools_called=["lookup"]), "tools_called"),
    "idempotency key a number": (add_turn(idempotency_key=42), "idempotency_key"),
    "intent None": (intent(None), "intent"),
    "template name a number": (template(7), "template_name"),
    "captured data None": (captured(None), "data"),
    "templates_sent None": (update_state(templates_sent=None), "templates_sent"),
    "intents_seen None": (update_state(intents_seen=None), "intents_seen"),
    "captured_data None in update_state": (update_state(captured_data=None), "captured_data"),
    "templates_sent a string": (update_state(templates_sent="welcome"), "templates_sent"),
    "initial_state a string": (create_session(initial_state="vip"), "initial_state"),
    "agent_id None": (create_session(agent_id=None), "agent_id"),
    "status a number": (update_session(status=2), "status"),
    "last_activity_at a string that is no date": (
        update_session(last_activity_at="yesterday"),
        "last_activity_at",
    ),
    "session_id None": (
        lambda m, s, w: m.get_session(None, workspace_id=w),  # type: ignore[arg-type]
        "session_id",
    ),
    "workspace_id None": (
        lambda m, s, w: m.get_state(s, workspace_id=None),  # type: ignore[arg-type]
        "workspace_id",
    ),
    "mutate_session change not callable": (
        lambda m, s, w: m.mutate_session(s, {"status": "paused"}, workspace_id=w),  # type: ignore[arg-type]
        "change",
    ),
    # tool call entries with keys the library does not store
    "tool call with an unknown key": (
        add_turn(tools_called=[{"name": "lookup", "args": {"q": "x"}}]),
        "args",
    ),
    "intent given whole with an unknown key": (
        update_state(intents_seen=[intent_record(source="bot")]),
        "source",
    ),
    # naive datetimes: the two transports would store two different instants
    "naive last_activity_at": (update_session(last_activity_at=NAIVE), "last_activity_at"),
    "naive seen_at in an intent given whole": (
        update_state(intents_seen=[intent_record(seen_at=NAIVE)]),
        "seen_at",
    ),
}
