"""Concurrent callers in READ COMMITTED: nothing lost, nothing doubled, numbers without gaps.

Each worker is a thread with its own PostgREST-style connection as service_role, so every
call is its own transaction, as it would be behind PostgREST. The workers start together
(a barrier) to make the calls overlap.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from psycopg import sql

from tests.db.conftest import Database, PostgrestConnection, run_concurrently

pytestmark = pytest.mark.db

WORKERS = 8
CALLS_PER_WORKER = 50
GUARDED_UPDATES_PER_WORKER = 25
MAX_ATTEMPTS_PER_UPDATE = 1000


def scope(session: dict[str, Any]) -> dict[str, Any]:
    return {"p_session_id": session["id"], "p_workspace_id": session["workspace_id"]}


def stored_session(service: PostgrestConnection, session: dict[str, Any]) -> dict[str, Any]:
    (row,) = service.get("agent_sessions", id=session["id"], workspace_id=session["workspace_id"])
    return row


def test_concurrent_intent_appends_lose_nothing_and_number_orders_1_to_n(
    database: Database, service: PostgrestConnection, session: dict[str, Any]
) -> None:
    def work(index: int, connection: PostgrestConnection) -> None:
        for call in range(CALLS_PER_WORKER):
            connection.rpc(
                "agent_engine_append_intent", **scope(session), p_intent=f"intent-{index}-{call}"
            )

    run_concurrently(database, work, WORKERS)

    (state,) = service.get("session_state", session_id=session["id"])
    intents = state["intents_seen"]
    total = WORKERS * CALLS_PER_WORKER
    assert [item["order"] for item in intents] == list(range(1, total + 1))
    assert sorted(item["intent"] for item in intents) == sorted(
        f"intent-{index}-{call}" for index in range(WORKERS) for call in range(CALLS_PER_WORKER)
    )
    for index in range(WORKERS):
        own = [item["intent"] for item in intents if item["intent"].startswith(f"intent-{index}-")]
        assert own == [f"intent-{index}-{call}" for call in range(CALLS_PER_WORKER)]


def test_concurrent_turns_get_numbers_1_to_n_and_exact_totals(
    database: Database, service: PostgrestConnection, session: dict[str, Any]
) -> None:
    def tokens(index: int, call: int) -> int:
        return index * 1000 + call

    def work(index: int, connection: PostgrestConnection) -> list[int]:
        return [
            connection.rpc(
                "agent_engine_add_turn",
                **scope(session),
                p_role="user",
                p_content=f"message {index}-{call}",
                p_tokens_used=tokens(index, call),
            )["turn_number"]
            for call in range(CALLS_PER_WORKER)
        ]

    numbers_by_worker = run_concurrently(database, work, WORKERS)

    total = WORKERS * CALLS_PER_WORKER
    returned = sorted(number for numbers in numbers_by_worker for number in numbers)
    assert returned == list(range(1, total + 1))
    for numbers in numbers_by_worker:
        assert numbers == sorted(numbers)
    turns = service.get(
        "agent_turns", workspace_id=session["workspace_id"], session_id=session["id"]
    )
    assert sorted(turn["turn_number"] for turn in turns) == list(range(1, total + 1))
    stored = stored_session(service, session)
    assert stored["turn_count"] == total
    assert stored["tokens_used"] == sum(
        tokens(index, call) for index in range(WORKERS) for call in range(CALLS_PER_WORKER)
    )
    assert stored["version"] == 1


def test_concurrent_retries_with_the_same_idempotency_keys_store_each_turn_once(
    database: Database, service: PostgrestConnection, session: dict[str, Any]
) -> None:
    keys = [f"message-{number}" for number in range(CALLS_PER_WORKER)]

    def work(index: int, connection: PostgrestConnection) -> dict[str, str]:
        # Every worker sends all the keys, each starting at a different one.
        ids: dict[str, str] = {}
        for step in range(len(keys)):
            number = (index * 7 + step) % len(keys)
            turn = connection.rpc(
                "agent_engine_add_turn",
                **scope(session),
                p_role="user",
                p_content=f"text of {keys[number]}",
                p_tokens_used=number + 1,
                p_idempotency_key=keys[number],
            )
            ids[keys[number]] = turn["id"]
        return ids

    ids_by_worker = run_concurrently(database, work, WORKERS)

    for key in keys:
        assert len({ids[key] for ids in ids_by_worker}) == 1, key
    turns = service.get(
        "agent_turns", workspace_id=session["workspace_id"], session_id=session["id"]
    )
    assert sorted(turn["idempotency_key"] for turn in turns) == sorted(keys)
    assert sorted(turn["turn_number"] for turn in turns) == list(range(1, len(keys) + 1))
    stored = stored_session(service, session)
    assert stored["turn_count"] == len(keys)
    assert stored["tokens_used"] == sum(number + 1 for number in range(len(keys)))


def test_concurrent_version_guarded_updates_apply_every_update_exactly_once(
    database: Database, service: PostgrestConnection, session: dict[str, Any]
) -> None:
    read_version = sql.SQL(
        "select version from public.agent_sessions where id = %(id)s and workspace_id = %(w)s"
    )
    # As PostgREST runs the client's PATCH ?version=eq.V with body {"version": V + 1}: the new
    # version is a literal, so an update that slipped past the guard would repeat a version.
    guarded_update = sql.SQL(
        "update public.agent_sessions set current_mode = %(mode)s, version = %(next)s"
        " where id = %(id)s and workspace_id = %(w)s and version = %(version)s"
        " returning version"
    )
    target = {"id": session["id"], "w": session["workspace_id"]}

    def work(index: int, connection: PostgrestConnection) -> list[tuple[int, str]]:
        applied: list[tuple[int, str]] = []
        for update in range(GUARDED_UPDATES_PER_WORKER):
            mode = f"mode-{index}-{update}"
            for _ in range(MAX_ATTEMPTS_PER_UPDATE):
                (row,) = connection.request(read_version, target, method="GET")
                rows = connection.request(
                    guarded_update,
                    target | {"mode": mode, "version": row["version"], "next": row["version"] + 1},
                    method="PATCH",
                )
                if rows:  # zero rows: someone else updated first; read again and retry
                    applied.append((rows[0]["version"], mode))
                    break
            else:
                pytest.fail(f"{mode} was not applied after {MAX_ATTEMPTS_PER_UPDATE} attempts")
        return applied

    applied_by_worker = run_concurrently(database, work, WORKERS)

    successes = sum(len(applied) for applied in applied_by_worker)
    assert successes == WORKERS * GUARDED_UPDATES_PER_WORKER
    for index, applied in enumerate(applied_by_worker):
        assert [mode for _, mode in applied] == [
            f"mode-{index}-{update}" for update in range(GUARDED_UPDATES_PER_WORKER)
        ]
    # Every success produced its own version: none overwrote another unseen.
    versions = sorted(version for applied in applied_by_worker for version, _ in applied)
    assert versions == list(range(2, successes + 2))
    stored = stored_session(service, session)
    assert stored["version"] == 1 + successes
    last_mode = {version: mode for applied in applied_by_worker for version, mode in applied}
    assert stored["current_mode"] == last_mode[stored["version"]]


@pytest.mark.parametrize("attempt", range(3))
def test_concurrent_get_or_create_returns_one_session(
    database: Database, service: PostgrestConnection, workspace_id: uuid.UUID, attempt: int
) -> None:
    conversation_id = uuid.uuid4()

    def work(index: int, connection: PostgrestConnection) -> dict[str, Any]:
        result: dict[str, Any] = connection.rpc(
            "agent_engine_get_or_create_session",
            p_workspace_id=workspace_id,
            p_agent_id="sales",
            p_conversation_id=conversation_id,
            p_current_mode="greeting",
        )
        return result

    sessions = run_concurrently(database, work, WORKERS)

    assert len({session["id"] for session in sessions}) == 1
    assert all(session["session_state"]["session_id"] == sessions[0]["id"] for session in sessions)
    assert len(service.get("agent_sessions", conversation_id=conversation_id)) == 1
