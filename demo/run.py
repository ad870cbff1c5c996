"""A scripted WhatsApp sales conversation, played for two workspaces, then summarised.

Every step goes through the public API, the way a webhook handler would call it. Each
promise the demo shows is also checked: if one does not hold, the demo says which and exits
with status 1.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from agent_engine import (
    AgentEngineError,
    AgentRegistry,
    AgentSessionWithState,
    IdempotencyConflictError,
    SessionManager,
    SessionNotFoundError,
    VersionConflictError,
)
from demo.backend import open_backend

SALES_AGENT: dict[str, Any] = {
    "id": "whatsapp-sales",
    "name": "WhatsApp sales assistant",
    "description": "Answers product questions, quotes prices, hands hot leads to a human.",
    "intent_detector": {"model": "gpt-4o-mini", "system_prompt": "Classify the last message."},
    "orchestrator": {
        "model": "gpt-4o",
        "system_prompt": "You are a friendly sales assistant.",
        "max_tokens": 600,
    },
    "tools": [{"name": "quote_price", "description": "Price a product for a customer"}],
    "states": ["greeting", "qualifying", "closing"],
    "initial_state": "greeting",
    "valid_transitions": {"greeting": ["qualifying"], "qualifying": ["closing"]},
}

_NAMESPACE = uuid.UUID("5f0c8a1e-4a0b-4f7e-9c61-0d6b3c2a9e10")


@dataclass(frozen=True)
class Shop:
    """A workspace of the demo and what its customer asks for."""

    name: str
    product: str
    size: int
    budget_eur: int
    price_eur: int

    @property
    def workspace_id(self) -> UUID:
        return uuid.uuid5(_NAMESPACE, self.name)


SHOPS = (
    Shop("Acme Shoes", "trail running shoes", 42, 120, 109),
    Shop("Bolt Bikes", "a commuter bike", 56, 900, 849),
)


class BrokenPromiseError(Exception):
    """A promise the demo shows did not hold."""


def expect(condition: bool, promise: str) -> None:
    if not condition:
        raise BrokenPromiseError(promise)


def say(text: str) -> None:
    print(f"  {text}")


def play(manager: SessionManager, shop: Shop) -> UUID:
    """The conversation of one customer of `shop`; returns its session id."""
    workspace = shop.workspace_id
    conversation = uuid.uuid4()
    message_ids = [f"wamid.{uuid.uuid4().hex[:16]}" for _ in range(3)]
    print(f"\n== {shop.name} (workspace {workspace})")

    session = manager.get_or_create_session(
        workspace_id=workspace, agent_id="whatsapp-sales", conversation_id=conversation
    )
    say(f"session {session.id} created in mode {session.current_mode!r}")
    manager.add_turn(
        session.id,
        workspace_id=workspace,
        role="user",
        content=f"Hi! Do you have {shop.product}?",
        intent_detected="greeting",
        confidence=93,
        tokens_used=21,
        idempotency_key=message_ids[0],
    )
    manager.add_intent_seen(session.id, "greeting", workspace_id=workspace)
    manager.add_turn(
        session.id,
        workspace_id=workspace,
        role="assistant",
        content=f"Welcome to {shop.name}! What size and budget do you have in mind?",
        tokens_used=64,
    )
    manager.add_template_sent(session.id, "welcome_v2", workspace_id=workspace)

    inquiry_turn: dict[str, Any] = {
        "role": "user",
        "content": f"Size {shop.size}, about {shop.budget_eur} euros",
        "intent_detected": "product_inquiry",
        "confidence": 88.5,
        "tokens_used": 30,
        "idempotency_key": message_ids[1],
    }
    inquiry = manager.add_turn(session.id, workspace_id=workspace, **inquiry_turn)
    manager.add_intent_seen(session.id, "product_inquiry", workspace_id=workspace)
    manager.update_captured_data(
        session.id, {"size": shop.size, "budget_eur": shop.budget_eur}, workspace_id=workspace
    )
    moved = manager.update_session_with_version(
        session.id, session.version, workspace_id=workspace, current_mode="qualifying"
    )
    say(f"mode greeting -> qualifying (version {session.version} -> {moved.version})")

    _redeliver(manager, shop, session, inquiry.id, inquiry_turn)

    manager.add_turn(
        session.id,
        workspace_id=workspace,
        role="assistant",
        content=f"I have {shop.product} in size {shop.size} for {shop.price_eur} euros.",
        tools_called=[
            {
                "name": "quote_price",
                "input": {"product": shop.product, "size": shop.size},
                "result": {"price_eur": shop.price_eur, "in_stock": True},
            }
        ],
        tokens_used=212,
    )
    manager.add_template_sent(session.id, "quote_v1", workspace_id=workspace)

    _provoke_conflict(manager, shop, session.id)

    manager.add_turn(
        session.id,
        workspace_id=workspace,
        role="user",
        content="Great, can a person confirm delivery to my address?",
        intent_detected="human_handoff",
        confidence=96,
        tokens_used=25,
        idempotency_key=message_ids[2],
    )
    manager.add_intent_seen(session.id, "human_handoff", workspace_id=workspace)
    current = manager.get_session(session.id, workspace_id=workspace)
    handed = manager.handoff_session(session.id, current.version, workspace_id=workspace)
    say(f"handed off to a human (status {handed.status.value}, version {handed.version})")
    return session.id


def _redeliver(
    manager: SessionManager,
    shop: Shop,
    session: AgentSessionWithState,
    stored_turn_id: UUID,
    turn: dict[str, Any],
) -> None:
    """The webhook delivers the same inbound message again: it must change nothing. A
    different message under the same id is refused, and changes nothing either."""
    workspace = shop.workspace_id
    before = manager.get_turn_count(session.id, workspace_id=workspace)
    tokens_before = manager.get_total_tokens_used(session.id, workspace_id=workspace)
    again = manager.add_turn(session.id, workspace_id=workspace, **turn)
    try:
        manager.add_turn(
            session.id, workspace_id=workspace, **{**turn, "content": "a different message"}
        )
        reused: IdempotencyConflictError | None = None
    except IdempotencyConflictError as error:
        reused = error
    after = manager.get_turn_count(session.id, workspace_id=workspace)
    tokens_after = manager.get_total_tokens_used(session.id, workspace_id=workspace)
    expect(again.id == stored_turn_id, "a redelivered message returns the stored turn")
    expect(
        reused is not None and reused.stored_turn_number == again.turn_number,
        "a message id reused for a different message is refused",
    )
    expect((after, tokens_after) == (before, tokens_before), "a redelivery changes no total")
    say(
        f"redelivered {turn['idempotency_key']} absorbed: same turn #{again.turn_number}, "
        "totals unchanged; its id reused for another text refused (IdempotencyConflictError)"
    )


def _provoke_conflict(manager: SessionManager, shop: Shop, session_id: UUID) -> None:
    """Two app instances read the same version; the second write loses and retries."""
    workspace = shop.workspace_id
    seen_by_first = manager.get_session(session_id, workspace_id=workspace)
    seen_by_second = manager.get_session(session_id, workspace_id=workspace)
    manager.update_session_with_version(
        session_id, seen_by_first.version, workspace_id=workspace, current_mode="closing"
    )
    try:
        manager.update_session_with_version(
            session_id,
            seen_by_second.version,
            workspace_id=workspace,
            last_activity_at=datetime.now(UTC),
        )
    except VersionConflictError as conflict:
        say(
            f"version conflict: expected {conflict.expected_version}, "
            f"actual {conflict.actual_version} (retryable={conflict.retryable})"
        )
    else:
        raise BrokenPromiseError("a write with a stale version must conflict")
    retried = manager.mutate_session(
        session_id,
        lambda session: {"last_activity_at": datetime.now(UTC)},
        workspace_id=workspace,
    )
    expect(retried.version == seen_by_second.version + 2, "the retry applies on the new version")
    say(f"retried on a fresh read: version {retried.version}, mode {retried.current_mode!r}")


def summarise(manager: SessionManager, shop: Shop, session_id: UUID) -> int:
    """Print the session, its state and turns; returns its token total."""
    workspace = shop.workspace_id
    session = manager.get_session(session_id, workspace_id=workspace)
    turns = manager.get_turns(session_id, workspace_id=workspace)
    tokens = manager.get_total_tokens_used(session_id, workspace_id=workspace)
    expect(tokens == sum(turn.tokens_used for turn in turns), "token total = sum of turns")
    expect(session.turn_count == len(turns) == 5, "five turns stored, none twice")
    expect([t.turn_number for t in turns] == list(range(1, 6)), "turns numbered 1..5")
    state = session.state
    print(f"\n-- {shop.name}: session {session.id}")
    say(f"status {session.status.value}, mode {session.current_mode}, version {session.version}")
    intents = ", ".join(f"{intent.order}:{intent.intent}" for intent in state.intents_seen)
    say(f"intents seen: {intents}")
    say(f"templates sent: {', '.join(state.templates_sent)}")
    say(f"captured data: {state.captured_data}")
    for turn in turns:
        tools = f"  tools: {', '.join(call.name for call in turn.tools_called)}"
        say(
            f"#{turn.turn_number} {turn.role.value:<9} {turn.tokens_used:>4} tokens  "
            f"{turn.content[:56]}{tools if turn.tools_called else ''}"
        )
    say(f"turns {session.turn_count}, tokens {tokens}")
    return tokens


def check_isolation(manager: SessionManager, session_id: UUID, owner: Shop, other: Shop) -> None:
    try:
        manager.get_session(session_id, workspace_id=other.workspace_id)
    except SessionNotFoundError:
        say(f"{other.name} cannot see {owner.name}'s session: SessionNotFoundError")
    else:
        raise BrokenPromiseError("a session is invisible outside its workspace")


def main() -> int:
    registry = AgentRegistry()
    registry.register(SALES_AGENT)
    try:
        with open_backend(registry) as backend:
            print(f"agent_engine demo on {backend.description}")
            sessions = {shop: play(backend.manager, shop) for shop in SHOPS}
            print("\n== Isolation")
            check_isolation(backend.manager, sessions[SHOPS[0]], SHOPS[0], SHOPS[1])
            print("\n== Summary")
            totals = {shop.name: summarise(backend.manager, shop, sessions[shop]) for shop in SHOPS}
            print("\n== Token totals per workspace (this run)")
            for name, tokens in totals.items():
                say(f"{name:<12} {tokens:>5} tokens")
    except BrokenPromiseError as failure:
        print(f"\nDEMO FAILED: expected that {failure}")
        return 1
    except AgentEngineError as error:
        print(f"\nDEMO FAILED: {type(error).__name__}: {error}")
        return 1
    print("\ndemo finished: every promise held")
    return 0
