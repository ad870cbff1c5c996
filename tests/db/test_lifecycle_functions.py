"""The lifecycle functions (third migration), called as PostgREST calls them.

Turn metadata and batches, undoing and reading turns, listing sessions, deleting sessions
and contacts' data, and retention; their races with add_turn; and the plans that keep a page
of turns or sessions as cheap with 100,000 rows as with 10 (auto_explain shows the plan each
statement inside the function actually ran with).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from tests.db.conftest import (
    NOT_FOUND,
    Database,
    DatabaseFactory,
    PostgrestConnection,
    assert_not_found_alike,
    run_concurrently,
)

pytestmark = pytest.mark.db

IDEMPOTENCY_CONFLICT = "PT409"
INVALID_ARGUMENT = "22023"
CHECK_VIOLATION = "23514"
INVALID_TRANSACTION_TERMINATION = "2D000"

TURN_KEYS = {
    "id",
    "session_id",
    "workspace_id",
    "turn_number",
    "role",
    "content",
    "intent_detected",
    "confidence",
    "tools_called",
    "tokens_used",
    "idempotency_key",
    "metadata",
    "created_at",
}
SESSION_KEYS = {
    "id",
    "workspace_id",
    "agent_id",
    "conversation_id",
    "contact_id",
    "version",
    "status",
    "current_mode",
    "turn_count",
    "tokens_used",
    "created_at",
    "updated_at",
    "last_activity_at",
    "session_state",
}

# Retention tests date their sessions in this era, far before anything other tests create.
LONG_AGO = datetime(1990, 1, 1, tzinfo=UTC)
PURGE_CUTOFF = LONG_AGO + timedelta(days=365)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def scope(session: dict[str, Any]) -> dict[str, Any]:
    return {"p_session_id": session["id"], "p_workspace_id": session["workspace_id"]}


def create_session(
    service: PostgrestConnection, workspace_id: uuid.UUID | str, **overrides: Any
) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "p_workspace_id": workspace_id,
        "p_agent_id": "sales",
        "p_conversation_id": uuid.uuid4(),
        "p_current_mode": "greeting",
    }
    created: dict[str, Any] = service.rpc("agent_engine_create_session", **arguments | overrides)
    return created


def add_turn(
    service: PostgrestConnection, session: dict[str, Any], content: str, **arguments: Any
) -> dict[str, Any]:
    turn: dict[str, Any] = service.rpc(
        "agent_engine_add_turn",
        **scope(session),
        **{"p_role": "user", "p_content": content} | arguments,
    )
    return turn


def stored_session(service: PostgrestConnection, session: dict[str, Any]) -> dict[str, Any]:
    (row,) = service.get("agent_sessions", id=session["id"], workspace_id=session["workspace_id"])
    return row


def stored_turns(service: PostgrestConnection, session: dict[str, Any]) -> list[dict[str, Any]]:
    rows = service.get(
        "agent_turns", workspace_id=session["workspace_id"], session_id=session["id"]
    )
    return sorted(rows, key=lambda row: int(row["turn_number"]))


def assert_totals_match_the_turns(service: PostgrestConnection, session: dict[str, Any]) -> None:
    turns = stored_turns(service, session)
    stored = stored_session(service, session)
    assert stored["turn_count"] == len(turns)
    assert stored["tokens_used"] == sum(turn["tokens_used"] for turn in turns)


def set_last_activity(
    service: PostgrestConnection, session: dict[str, Any], when: datetime, **changes: Any
) -> None:
    service.patch("agent_sessions", {"last_activity_at": when, **changes}, {"id": session["id"]})


def row_lock_marker(service: PostgrestConnection, session: dict[str, Any]) -> Any:
    """xmax of the session row: set by an update and by a row lock alike."""
    (row,) = service.request(
        sql.SQL(
            "select xmin::text as xmin, xmax::text as xmax from public.agent_sessions"
            " where id = %(id)s"
        ),
        {"id": session["id"]},
        method="GET",
    )
    return (row["xmin"], row["xmax"])


def orphans(owner: psycopg.Connection[DictRow]) -> dict[str, int]:
    """State and turn rows whose session does not exist (the foreign keys forbid any)."""
    counts = {}
    for table in ("session_state", "agent_turns"):
        row = owner.execute(
            sql.SQL(
                "select count(*) as n from {} c where not exists (select from"
                " public.agent_sessions s where s.workspace_id = c.workspace_id"
                " and s.id = c.session_id)"
            ).format(sql.Identifier("public", table))
        ).fetchone()
        assert row is not None
        counts[table] = row["n"]
    return counts


def run_workers(
    database: Database, workers: list[Callable[[PostgrestConnection], Any]]
) -> list[Any]:
    """Runs each worker in its own thread with its own service_role connection, all at once."""
    return run_concurrently(
        database, lambda index, connection: workers[index](connection), len(workers)
    )


# ---------------------------------------------------------------------------
# Turn metadata and add_turn's new signature
# ---------------------------------------------------------------------------

METADATA = {"channel": "whatsapp", "nested": {"ids": [1, 2.5, None], "ok": True}, "text": "olá"}


def test_add_turn_stores_metadata_and_returns_it_as_given(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    turn = add_turn(service, session, "hello", p_metadata=METADATA)

    assert set(turn) == TURN_KEYS
    assert turn["metadata"] == METADATA
    (stored,) = stored_turns(service, session)
    assert stored["metadata"] == METADATA


def test_add_turn_called_with_the_old_arguments_stores_empty_metadata(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    # Every argument the previous signature had, by name, and no p_metadata.
    turn = service.rpc(
        "agent_engine_add_turn",
        **scope(session),
        p_role="assistant",
        p_content="hi",
        p_turn_number=None,
        p_intent_detected="greeting",
        p_confidence=50,
        p_tools_called=[],
        p_tokens_used=3,
        p_idempotency_key="k-1",
    )
    assert (turn["turn_number"], turn["metadata"]) == (1, {})
    assert stored_turns(service, session)[0]["metadata"] == {}


def test_add_turn_has_a_single_signature_ending_with_p_metadata(
    owner: psycopg.Connection[DictRow],
) -> None:
    rows = owner.execute(
        "select p.proargnames, pg_get_function_identity_arguments(p.oid) as arguments"
        " from pg_catalog.pg_proc p"
        " where p.pronamespace = 'public'::regnamespace and p.proname = 'agent_engine_add_turn'"
    ).fetchall()
    assert len(rows) == 1
    assert rows[0]["proargnames"] == [
        "p_session_id",
        "p_workspace_id",
        "p_role",
        "p_content",
        "p_turn_number",
        "p_intent_detected",
        "p_confidence",
        "p_tools_called",
        "p_tokens_used",
        "p_idempotency_key",
        "p_metadata",
    ]
    assert rows[0]["arguments"].endswith("p_metadata jsonb")


def test_add_turn_retry_with_the_same_metadata_in_another_key_order_returns_the_stored_turn(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    original = add_turn(
        service, session, "hi", p_idempotency_key="m-1", p_metadata={"a": 1, "b": 2}
    )
    before = stored_session(service, session)

    retried = add_turn(service, session, "hi", p_idempotency_key="m-1", p_metadata={"b": 2, "a": 1})

    assert retried == original
    assert stored_session(service, session) == before
    assert len(stored_turns(service, session)) == 1


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param({"a": 1, "b": 3}, id="other-value"),
        pytest.param({"a": 1}, id="key-missing"),
        pytest.param({"a": 1, "b": 2, "c": None}, id="extra-key"),
        pytest.param(None, id="omitted"),
    ],
)
def test_add_turn_retry_with_different_metadata_raises_pt409_with_the_stored_number(
    service: PostgrestConnection, session: dict[str, Any], metadata: dict[str, Any] | None
) -> None:
    add_turn(service, session, "hi", p_idempotency_key="m-1", p_metadata={"a": 1, "b": 2})
    before = stored_session(service, session)
    retry = {} if metadata is None else {"p_metadata": metadata}

    with pytest.raises(psycopg.Error) as caught:
        add_turn(service, session, "hi", p_idempotency_key="m-1", **retry)

    assert caught.value.sqlstate == IDEMPOTENCY_CONFLICT
    assert json.loads(caught.value.diag.message_detail or "") == {"turn_number": 1}
    assert stored_session(service, session) == before
    assert [turn["metadata"] for turn in stored_turns(service, session)] == [{"a": 1, "b": 2}]


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param(Jsonb([1]), id="array"),
        pytest.param(Jsonb("text"), id="string"),
        pytest.param(Jsonb(3), id="number"),
        pytest.param(None, id="null"),
    ],
)
def test_add_turn_with_metadata_that_is_not_an_object_raises_22023_and_stores_nothing(
    service: PostgrestConnection, session: dict[str, Any], metadata: Any
) -> None:
    with pytest.raises(psycopg.Error) as caught:
        add_turn(service, session, "hi", p_metadata=metadata)
    assert caught.value.sqlstate == INVALID_ARGUMENT
    assert stored_turns(service, session) == []
    assert stored_session(service, session)["turn_count"] == 0


def test_metadata_column_refuses_a_non_object_written_straight_into_the_table(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    row = {
        "session_id": session["id"],
        "workspace_id": session["workspace_id"],
        "turn_number": 1,
        "role": "user",
        "content": "hi",
        "metadata": Jsonb(["not", "an", "object"]),
    }
    with pytest.raises(psycopg.Error) as caught:
        service.post("agent_turns", row)
    assert caught.value.sqlstate == CHECK_VIOLATION
    assert caught.value.diag.constraint_name == "agent_turns_metadata_check"


# ---------------------------------------------------------------------------
# add_turns
# ---------------------------------------------------------------------------


def test_add_turns_stores_the_batch_in_input_order_numbered_after_the_existing_turns(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    add_turn(service, session, "before", p_tokens_used=2)
    full = {
        "role": "assistant",
        "content": "It is 10 euros.",
        "intent_detected": "pricing",
        "confidence": 92.5,
        "tools_called": [{"name": "price_lookup", "input": {"sku": "A1"}}],
        "tokens_used": 30,
        "idempotency_key": "reply-1",
        "metadata": METADATA,
    }
    batch = [{"role": "user", "content": "How much?"}, full, {"role": "tool", "content": "{}"}]

    turns = service.rpc("agent_engine_add_turns", **scope(session), p_turns=batch)

    assert [turn["turn_number"] for turn in turns] == [2, 3, 4]
    assert [turn["content"] for turn in turns] == ["How much?", "It is 10 euros.", "{}"]
    assert all(set(turn) == TURN_KEYS for turn in turns)
    assert {key: turns[1][key] for key in full} == full
    # Missing keys take add_turn's defaults.
    minimal = turns[0]
    assert (minimal["tools_called"], minimal["tokens_used"], minimal["metadata"]) == ([], 0, {})
    assert (minimal["intent_detected"], minimal["confidence"], minimal["idempotency_key"]) == (
        None,
        None,
        None,
    )
    assert [str(turn["id"]) for turn in stored_turns(service, session)][1:] == [
        turn["id"] for turn in turns
    ]
    stored = stored_session(service, session)
    assert (stored["turn_count"], stored["tokens_used"], stored["version"]) == (4, 32, 1)
    assert stored["last_activity_at"] > datetime.fromisoformat(session["last_activity_at"])


def test_add_turns_continues_after_an_explicit_number(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    add_turn(service, session, "a", p_turn_number=10)
    turns = service.rpc(
        "agent_engine_add_turns",
        **scope(session),
        p_turns=[{"role": "user", "content": "b"}, {"role": "user", "content": "c"}],
    )
    assert [turn["turn_number"] for turn in turns] == [11, 12]


def test_add_turns_updates_the_session_row_once_for_the_whole_batch(
    database: Database, session: dict[str, Any]
) -> None:
    batch = [{"role": "user", "content": f"m{index}", "tokens_used": index} for index in range(5)]
    with database.connect_as_owner() as owner, owner.transaction(force_rollback=True):
        owner.execute("set local role service_role")
        owner.execute(
            "select public.agent_engine_add_turns(p_session_id => %s, p_workspace_id => %s,"
            " p_turns => %s)",
            (session["id"], session["workspace_id"], Jsonb(batch)),
        )
        counts = owner.execute(
            "select relname, n_tup_ins, n_tup_upd from pg_catalog.pg_stat_xact_user_tables"
            " where relid in ('public.agent_sessions'::regclass, 'public.agent_turns'::regclass)"
        ).fetchall()
    by_table = {row["relname"]: (row["n_tup_ins"], row["n_tup_upd"]) for row in counts}
    assert by_table == {"agent_sessions": (0, 1), "agent_turns": (5, 0)}


INVALID_VALUES = [
    pytest.param({"role": "robot"}, id="unknown-role"),
    pytest.param({"content": ""}, id="empty-content"),
    pytest.param({"content": "  \n"}, id="blank-content"),
    pytest.param({"tokens_used": -1}, id="negative-tokens"),
    pytest.param({"confidence": 101}, id="confidence-101"),
    pytest.param({"tools_called": [{"input": 1}]}, id="tool-without-name"),
    pytest.param({"idempotency_key": " "}, id="blank-key"),
]


@pytest.mark.parametrize("invalid", INVALID_VALUES)
def test_add_turns_with_one_invalid_value_raises_23514_and_writes_nothing(
    service: PostgrestConnection, session: dict[str, Any], invalid: dict[str, Any]
) -> None:
    add_turn(service, session, "before", p_tokens_used=1)
    before = stored_session(service, session)
    batch = [
        {"role": "user", "content": "a", "tokens_used": 5},
        {"role": "user", "content": "b", "idempotency_key": "k"},
        {"role": "user", "content": "c"} | invalid,
    ]

    with pytest.raises(psycopg.Error) as caught:
        service.rpc("agent_engine_add_turns", **scope(session), p_turns=batch)

    assert caught.value.sqlstate == CHECK_VIOLATION
    assert [turn["content"] for turn in stored_turns(service, session)] == ["before"]
    assert stored_session(service, session) == before


MALFORMED_BATCHES = [
    pytest.param(Jsonb({"role": "user", "content": "a"}), None, id="object-not-array"),
    pytest.param(Jsonb("turns"), None, id="string-not-array"),
    pytest.param(None, None, id="null"),
    pytest.param([{"role": "user", "content": "a"}, 1], 1, id="element-not-object"),
    pytest.param([{"role": "user", "content": "a"}, {"content": "b"}], 1, id="role-missing"),
    pytest.param([{"role": "user", "content": "a"}, {"role": "user"}], 1, id="content-missing"),
    pytest.param([{"role": "user", "content": "a", "turn_number": 1}], 0, id="turn-number-key"),
    pytest.param([{"role": "user", "content": "a", "Role": "user"}], 0, id="unknown-key"),
    pytest.param([{"role": 1, "content": "a"}], 0, id="role-number"),
    pytest.param([{"role": None, "content": "a"}], 0, id="role-null"),
    pytest.param([{"role": "user", "content": None}], 0, id="content-null"),
    pytest.param([{"role": "user", "content": ["a"]}], 0, id="content-array"),
    pytest.param([{"role": "user", "content": "a", "tokens_used": 1.5}], 0, id="tokens-fraction"),
    pytest.param([{"role": "user", "content": "a", "tokens_used": "5"}], 0, id="tokens-string"),
    pytest.param([{"role": "user", "content": "a", "tokens_used": None}], 0, id="tokens-null"),
    pytest.param([{"role": "user", "content": "a", "tokens_used": 2**31}], 0, id="tokens-huge"),
    pytest.param([{"role": "user", "content": "a", "confidence": "high"}], 0, id="confidence-text"),
    pytest.param([{"role": "user", "content": "a", "intent_detected": 5}], 0, id="intent-number"),
    pytest.param([{"role": "user", "content": "a", "idempotency_key": 5}], 0, id="key-number"),
    pytest.param([{"role": "user", "content": "a", "tools_called": {}}], 0, id="tools-object"),
    pytest.param([{"role": "user", "content": "a", "tools_called": None}], 0, id="tools-null"),
    pytest.param([{"role": "user", "content": "a", "metadata": []}], 0, id="metadata-array"),
    pytest.param([{"role": "user", "content": "a", "metadata": None}], 0, id="metadata-null"),
]


@pytest.mark.parametrize(("turns", "index"), MALFORMED_BATCHES)
def test_add_turns_with_a_malformed_batch_raises_22023_and_writes_nothing(
    service: PostgrestConnection, session: dict[str, Any], turns: Any, index: int | None
) -> None:
    with pytest.raises(psycopg.Error) as caught:
        service.rpc("agent_engine_add_turns", **scope(session), p_turns=turns)

    assert caught.value.sqlstate == INVALID_ARGUMENT
    if index is not None:
        assert f"turns[{index}]" in (caught.value.diag.message_primary or "")
    assert stored_turns(service, session) == []
    assert stored_session(service, session)["turn_count"] == 0


def test_add_turns_with_stored_keys_and_the_same_turns_returns_them_without_storing_them_again(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    first = add_turn(service, session, "one", p_idempotency_key="k1", p_tokens_used=1)
    second = add_turn(
        service, session, "two", p_idempotency_key="k2", p_tokens_used=2, p_metadata={"x": 1}
    )
    batch = [
        {"role": "user", "content": "one", "idempotency_key": "k1", "tokens_used": 1},
        {"role": "user", "content": "three", "idempotency_key": "k3", "tokens_used": 3},
        {
            "role": "user",
            "content": "two",
            "idempotency_key": "k2",
            "tokens_used": 2,
            "metadata": {"x": 1},
        },
    ]

    turns = service.rpc("agent_engine_add_turns", **scope(session), p_turns=batch)

    assert turns[0] == first
    assert turns[2] == second
    assert (turns[1]["turn_number"], turns[1]["content"]) == (3, "three")
    assert [turn["content"] for turn in stored_turns(service, session)] == ["one", "two", "three"]
    stored = stored_session(service, session)
    assert (stored["turn_count"], stored["tokens_used"]) == (3, 6)


def test_add_turns_whose_turns_are_all_stored_already_leaves_the_session_alone(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    first = add_turn(service, session, "one", p_idempotency_key="k1")
    before = stored_session(service, session)

    turns = service.rpc(
        "agent_engine_add_turns",
        **scope(session),
        p_turns=[{"role": "user", "content": "one", "idempotency_key": "k1"}],
    )

    assert turns == [first]
    assert stored_session(service, session) == before


@pytest.mark.parametrize(
    "difference",
    [
        pytest.param({"content": "one, edited"}, id="content"),
        pytest.param({"role": "assistant"}, id="role"),
        pytest.param({"tokens_used": 9}, id="tokens"),
        pytest.param({"metadata": {"x": 2}}, id="metadata"),
        pytest.param({"confidence": 10}, id="confidence"),
        pytest.param({"intent_detected": "other"}, id="intent"),
        pytest.param({"tools_called": [{"name": "t"}]}, id="tools"),
    ],
)
def test_add_turns_with_a_stored_key_and_a_different_turn_raises_pt409_and_writes_nothing(
    service: PostgrestConnection, session: dict[str, Any], difference: dict[str, Any]
) -> None:
    add_turn(service, session, "one", p_idempotency_key="k1", p_metadata={"x": 1})
    before = stored_session(service, session)
    stored_one = {"role": "user", "content": "one", "idempotency_key": "k1", "metadata": {"x": 1}}
    batch = [{"role": "user", "content": "new"}, stored_one | difference]

    with pytest.raises(psycopg.Error) as caught:
        service.rpc("agent_engine_add_turns", **scope(session), p_turns=batch)

    assert caught.value.sqlstate == IDEMPOTENCY_CONFLICT
    assert json.loads(caught.value.diag.message_detail or "") == {"turn_number": 1}
    assert [turn["content"] for turn in stored_turns(service, session)] == ["one"]
    assert stored_session(service, session) == before


def test_add_turns_with_a_key_repeated_with_the_same_turn_stores_it_once_and_returns_it_twice(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    repeated = {"role": "user", "content": "hi", "idempotency_key": "k", "tokens_used": 4}
    batch = [repeated, {"role": "assistant", "content": "hello", "tokens_used": 6}, repeated]

    turns = service.rpc("agent_engine_add_turns", **scope(session), p_turns=batch)

    assert turns[0] == turns[2]
    assert [turn["turn_number"] for turn in turns] == [1, 2, 1]
    assert [turn["content"] for turn in stored_turns(service, session)] == ["hi", "hello"]
    stored = stored_session(service, session)
    assert (stored["turn_count"], stored["tokens_used"]) == (2, 10)


def test_add_turns_with_a_key_repeated_with_a_different_turn_raises_pt409_and_writes_nothing(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    batch = [
        {"role": "user", "content": "hi", "idempotency_key": "k"},
        {"role": "user", "content": "hi", "idempotency_key": "k", "metadata": {"edited": True}},
    ]
    with pytest.raises(psycopg.Error) as caught:
        service.rpc("agent_engine_add_turns", **scope(session), p_turns=batch)

    assert caught.value.sqlstate == IDEMPOTENCY_CONFLICT
    assert json.loads(caught.value.diag.message_detail or "") == {"turn_number": 1}
    assert stored_turns(service, session) == []
    assert stored_session(service, session)["turn_count"] == 0


def test_add_turns_with_an_empty_batch_returns_an_empty_list_and_neither_locks_nor_updates(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    add_turn(service, session, "before")
    before = stored_session(service, session)
    marker = row_lock_marker(service, session)

    assert service.rpc("agent_engine_add_turns", **scope(session), p_turns=[]) == []

    assert stored_session(service, session) == before
    assert row_lock_marker(service, session) == marker


# ---------------------------------------------------------------------------
# PT404, shared by every function that takes a session
# ---------------------------------------------------------------------------

SESSION_FUNCTIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("pop", "agent_engine_pop_turn", {}),
    ("clear", "agent_engine_clear_turns", {}),
    ("recent", "agent_engine_get_recent_turns", {"p_limit": 10}),
    ("recent-before", "agent_engine_get_recent_turns", {"p_limit": 10, "p_before_turn": 2}),
    ("add-turns", "agent_engine_add_turns", {"p_turns": [{"role": "user", "content": "x"}]}),
    ("add-turns-empty", "agent_engine_add_turns", {"p_turns": []}),
    ("delete", "agent_engine_delete_session", {}),
    (
        "add-turn-metadata",
        "agent_engine_add_turn",
        {"p_role": "user", "p_content": "x", "p_metadata": {"a": 1}},
    ),
]


@pytest.mark.parametrize(
    ("function", "arguments"),
    [(function, arguments) for _, function, arguments in SESSION_FUNCTIONS],
    ids=[name for name, _, _ in SESSION_FUNCTIONS],
)
def test_session_function_raises_pt404_with_one_message_for_missing_and_foreign_sessions(
    service: PostgrestConnection,
    session: dict[str, Any],
    function: str,
    arguments: dict[str, Any],
) -> None:
    add_turn(service, session, "kept")
    before = stored_session(service, session)

    assert_not_found_alike(service, function, session["id"], arguments)
    assert stored_session(service, session) == before
    assert [turn["content"] for turn in stored_turns(service, session)] == ["kept"]


@pytest.mark.parametrize(
    ("function", "arguments"),
    [(function, arguments) for _, function, arguments in SESSION_FUNCTIONS],
    ids=[name for name, _, _ in SESSION_FUNCTIONS],
)
def test_session_function_without_a_session_id_raises_22023(
    service: PostgrestConnection, workspace_id: uuid.UUID, function: str, arguments: dict[str, Any]
) -> None:
    with pytest.raises(psycopg.Error) as caught:
        service.rpc(function, p_session_id=None, p_workspace_id=workspace_id, **arguments)
    assert caught.value.sqlstate == INVALID_ARGUMENT


# ---------------------------------------------------------------------------
# pop_turn and clear_turns
# ---------------------------------------------------------------------------


def test_pop_turn_deletes_the_newest_turn_returns_it_and_subtracts_it_from_the_totals(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    add_turn(service, session, "one", p_tokens_used=3)
    newest = add_turn(service, session, "two", p_tokens_used=5, p_metadata={"m": 1})
    before = stored_session(service, session)

    popped = service.rpc("agent_engine_pop_turn", **scope(session))

    assert popped == newest
    assert [turn["content"] for turn in stored_turns(service, session)] == ["one"]
    after = stored_session(service, session)
    assert (after["turn_count"], after["tokens_used"]) == (1, 3)
    assert (after["last_activity_at"], after["version"]) == (
        before["last_activity_at"],
        before["version"],
    )


def test_the_turn_after_a_pop_reuses_the_popped_number_and_its_idempotency_key(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    add_turn(service, session, "one")
    add_turn(service, session, "two", p_idempotency_key="k")
    service.rpc("agent_engine_pop_turn", **scope(session))

    replacement = add_turn(service, session, "two, edited", p_idempotency_key="k")

    assert replacement["turn_number"] == 2
    assert [turn["content"] for turn in stored_turns(service, session)] == ["one", "two, edited"]
    assert_totals_match_the_turns(service, session)


def test_pop_turn_on_a_session_without_turns_returns_null_and_changes_nothing(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    before = stored_session(service, session)
    assert service.rpc("agent_engine_pop_turn", **scope(session)) is None
    assert stored_session(service, session) == before


def test_pop_turns_until_empty_returns_the_turns_newest_first(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    for content in ("a", "b", "c"):
        add_turn(service, session, content, p_tokens_used=len(content))
    popped = [service.rpc("agent_engine_pop_turn", **scope(session)) for _ in range(4)]
    assert [turn and turn["content"] for turn in popped] == ["c", "b", "a", None]
    stored = stored_session(service, session)
    assert (stored["turn_count"], stored["tokens_used"]) == (0, 0)


def test_clear_turns_deletes_every_turn_zeroes_the_totals_and_returns_the_count(
    service: PostgrestConnection, session: dict[str, Any], workspace_id: uuid.UUID
) -> None:
    other = create_session(service, workspace_id)
    add_turn(service, other, "other's")
    for content in ("a", "b", "c"):
        add_turn(service, session, content, p_tokens_used=7)
    before = stored_session(service, session)

    assert service.rpc("agent_engine_clear_turns", **scope(session)) == 3

    assert stored_turns(service, session) == []
    after = stored_session(service, session)
    assert (after["turn_count"], after["tokens_used"]) == (0, 0)
    assert after["last_activity_at"] == before["last_activity_at"]
    assert add_turn(service, session, "again")["turn_number"] == 1
    assert [turn["content"] for turn in stored_turns(service, other)] == ["other's"]


def test_clear_turns_on_a_session_without_turns_returns_0_and_changes_nothing(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    before = stored_session(service, session)
    assert service.rpc("agent_engine_clear_turns", **scope(session)) == 0
    assert stored_session(service, session) == before


def test_pop_and_clear_racing_add_turn_leave_numbers_1_to_n_and_exact_totals(
    database: Database, service: PostgrestConnection, session: dict[str, Any]
) -> None:
    adders, adds, pops, clears = 4, 40, 25, 3

    def adder(index: int) -> Callable[[PostgrestConnection], list[int]]:
        def work(connection: PostgrestConnection) -> list[int]:
            numbers = []
            for call in range(adds):
                turn = connection.rpc(
                    "agent_engine_add_turn",
                    **scope(session),
                    p_role="user",
                    p_content=f"{index}-{call}",
                    p_tokens_used=index * 100 + call,
                )
                numbers.append(turn["turn_number"])
            return numbers

        return work

    def batcher(connection: PostgrestConnection) -> list[list[int]]:
        batches = []
        for call in range(adds // 4):
            turns = connection.rpc(
                "agent_engine_add_turns",
                **scope(session),
                p_turns=[
                    {"role": "user", "content": f"batch {call}-{n}", "tokens_used": n}
                    for n in range(3)
                ],
            )
            batches.append([turn["turn_number"] for turn in turns])
        return batches

    def popper(connection: PostgrestConnection) -> list[dict[str, Any] | None]:
        return [connection.rpc("agent_engine_pop_turn", **scope(session)) for _ in range(pops)]

    def clearer(connection: PostgrestConnection) -> list[int]:
        return [connection.rpc("agent_engine_clear_turns", **scope(session)) for _ in range(clears)]

    results = run_workers(
        database, [*(adder(index) for index in range(adders)), batcher, popper, popper, clearer]
    )

    turns = stored_turns(service, session)
    assert [turn["turn_number"] for turn in turns] == list(range(1, len(turns) + 1))
    assert_totals_match_the_turns(service, session)
    for batch in results[adders]:
        assert batch == list(range(batch[0], batch[0] + 3))
    popped = [
        turn["id"] for pops_of in results[adders + 1 : adders + 3] for turn in pops_of if turn
    ]
    assert len(popped) == len(set(popped))
    cleared = sum(results[-1])
    added = adders * adds + 3 * (adds // 4)
    assert len(turns) == added - len(popped) - cleared


# ---------------------------------------------------------------------------
# get_recent_turns
# ---------------------------------------------------------------------------


def test_get_recent_turns_returns_the_newest_turns_oldest_first_as_stored(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    added = [add_turn(service, session, f"m{n}", p_metadata={"n": n}) for n in range(1, 8)]

    assert service.rpc("agent_engine_get_recent_turns", **scope(session), p_limit=3) == added[4:]
    assert service.rpc("agent_engine_get_recent_turns", **scope(session), p_limit=100) == added


def test_get_recent_turns_before_a_turn_pages_back_through_every_turn_once(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    for n in range(1, 8):
        add_turn(service, session, f"m{n}")
    pages = []
    before = None
    for _ in range(10):  # bounded: a page that does not move on fails instead of looping
        page = service.rpc(
            "agent_engine_get_recent_turns", **scope(session), p_limit=3, p_before_turn=before
        )
        if not page:
            break
        pages.append([turn["turn_number"] for turn in page])
        before = page[0]["turn_number"]

    assert pages == [[5, 6, 7], [2, 3, 4], [1]]


def test_get_recent_turns_of_a_session_without_turns_is_an_empty_list(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    assert service.rpc("agent_engine_get_recent_turns", **scope(session), p_limit=5) == []


@pytest.mark.parametrize("limit", [0, -1, 1001, None])
def test_get_recent_turns_with_a_limit_outside_1_to_1000_raises_22023(
    service: PostgrestConnection, session: dict[str, Any], limit: int | None
) -> None:
    with pytest.raises(psycopg.Error) as caught:
        service.rpc("agent_engine_get_recent_turns", **scope(session), p_limit=limit)
    assert caught.value.sqlstate == INVALID_ARGUMENT


def test_get_recent_turns_accepts_the_bounds_1_and_1000(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    add_turn(service, session, "a")
    add_turn(service, session, "b")
    one = service.rpc("agent_engine_get_recent_turns", **scope(session), p_limit=1)
    thousand = service.rpc("agent_engine_get_recent_turns", **scope(session), p_limit=1000)
    assert [turn["content"] for turn in one] == ["b"]
    assert [turn["content"] for turn in thousand] == ["a", "b"]


# ---------------------------------------------------------------------------
# list_sessions
# ---------------------------------------------------------------------------


def list_order(sessions: list[dict[str, Any]]) -> list[str]:
    """Ids in the order list_sessions promises: newest activity first, then highest id."""
    ordered = sorted(
        sessions,
        key=lambda s: (datetime.fromisoformat(s["last_activity_at"]), uuid.UUID(s["id"])),
        reverse=True,
    )
    return [s["id"] for s in ordered]


def current(service: PostgrestConnection, session: dict[str, Any]) -> dict[str, Any]:
    """The session as list_sessions returns it (with its state)."""
    (found,) = [
        s
        for s in service.rpc(
            "agent_engine_list_sessions",
            p_workspace_id=session["workspace_id"],
            p_conversation_id=session["conversation_id"],
            p_limit=1000,
        )
        if s["id"] == session["id"]
    ]
    result: dict[str, Any] = found
    return result


def test_list_sessions_returns_sessions_with_their_state_newest_activity_first_ties_by_id(
    service: PostgrestConnection, workspace_id: uuid.UUID
) -> None:
    base = datetime(2031, 1, 1, tzinfo=UTC)
    sessions = [create_session(service, workspace_id) for _ in range(6)]
    for index, session in enumerate(sessions):
        # Pairs share a time, so half the order comes from the id.
        set_last_activity(service, session, base + timedelta(minutes=index // 2))
    service.rpc("agent_engine_merge_captured_data", **scope(sessions[0]), p_data={"name": "Ada"})

    listed = service.rpc("agent_engine_list_sessions", p_workspace_id=workspace_id)

    assert all(set(session) == SESSION_KEYS for session in listed)
    assert [s["id"] for s in listed] == list_order(listed)
    assert sorted(s["id"] for s in listed) == sorted(s["id"] for s in sessions)
    by_id = {s["id"]: s for s in listed}
    assert by_id[sessions[0]["id"]]["session_state"]["captured_data"] == {"name": "Ada"}
    for session in listed:
        assert session["session_state"]["session_id"] == session["id"]
    # The same shape create_session returns.
    fresh = create_session(service, workspace_id)
    assert current(service, fresh) == fresh


def test_list_sessions_embeds_null_for_a_session_without_state(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    service.delete("session_state", session_id=session["id"])
    (listed,) = service.rpc("agent_engine_list_sessions", p_workspace_id=session["workspace_id"])
    assert listed["session_state"] is None


def test_list_sessions_filters_by_status_agent_contact_conversation_and_activity_window(
    service: PostgrestConnection, workspace_id: uuid.UUID
) -> None:
    base = datetime(2032, 1, 1, tzinfo=UTC)
    contact = uuid.uuid4()
    plain = create_session(service, workspace_id)
    support = create_session(service, workspace_id, p_agent_id="support")
    of_contact = create_session(service, workspace_id, p_contact_id=contact)
    closed = create_session(service, workspace_id)
    create_session(service, uuid.uuid4(), p_contact_id=contact)  # another workspace
    for minutes, session in enumerate((plain, support, of_contact, closed)):
        set_last_activity(service, session, base + timedelta(minutes=minutes))
    service.patch("agent_sessions", {"status": "closed"}, {"id": closed["id"]})

    def listed(**filters: Any) -> list[str]:
        sessions = service.rpc("agent_engine_list_sessions", p_workspace_id=workspace_id, **filters)
        return [s["id"] for s in sessions]

    assert listed() == [closed["id"], of_contact["id"], support["id"], plain["id"]]
    assert listed(p_status="closed") == [closed["id"]]
    assert listed(p_status="active", p_agent_id="sales") == [of_contact["id"], plain["id"]]
    assert listed(p_agent_id="support") == [support["id"]]
    assert listed(p_contact_id=contact) == [of_contact["id"]]
    assert listed(p_conversation_id=plain["conversation_id"]) == [plain["id"]]
    # p_active_after <= last_activity_at < p_active_before
    window = {
        "p_active_after": base + timedelta(minutes=1),
        "p_active_before": base + timedelta(minutes=3),
    }
    assert listed(**window) == [of_contact["id"], support["id"]]
    assert listed(p_limit=2) == [closed["id"], of_contact["id"]]
    assert listed(p_status="paused") == []


def test_list_sessions_keyset_pages_return_every_session_exactly_once_in_order(
    service: PostgrestConnection, workspace_id: uuid.UUID
) -> None:
    base = datetime(2033, 1, 1, tzinfo=UTC)
    sessions = [create_session(service, workspace_id) for _ in range(23)]
    for index, session in enumerate(sessions):
        # Groups of 5 share a time: pages have to cut through ties.
        set_last_activity(service, session, base + timedelta(seconds=index // 5))
    everything = service.rpc(
        "agent_engine_list_sessions", p_workspace_id=workspace_id, p_limit=1000
    )

    pages: list[list[str]] = []
    position: dict[str, Any] = {}
    for _ in range(20):  # bounded: a page that does not move on fails instead of looping
        page = service.rpc(
            "agent_engine_list_sessions", p_workspace_id=workspace_id, p_limit=4, **position
        )
        if not page:
            break
        pages.append([s["id"] for s in page])
        # The position is passed back as the JSON gave it, as the Python layer will.
        position = {"p_after_activity": page[-1]["last_activity_at"], "p_after_id": page[-1]["id"]}

    assert [len(page) for page in pages] == [4, 4, 4, 4, 4, 3]
    flat = [session_id for page in pages for session_id in page]
    assert flat == [s["id"] for s in everything] == list_order(everything)
    assert sorted(flat) == sorted(s["id"] for s in sessions)


def test_list_sessions_of_an_empty_workspace_is_an_empty_list(
    service: PostgrestConnection, workspace_id: uuid.UUID
) -> None:
    assert service.rpc("agent_engine_list_sessions", p_workspace_id=workspace_id) == []


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param({"p_limit": 0}, id="limit-0"),
        pytest.param({"p_limit": 1001}, id="limit-1001"),
        pytest.param({"p_limit": None}, id="limit-null"),
        pytest.param({"p_after_activity": datetime(2030, 1, 1, tzinfo=UTC)}, id="activity-only"),
        pytest.param({"p_after_id": uuid.uuid4()}, id="id-only"),
        pytest.param({"p_workspace_id": None}, id="workspace-null"),
    ],
)
def test_list_sessions_with_invalid_arguments_raises_22023(
    service: PostgrestConnection, workspace_id: uuid.UUID, arguments: dict[str, Any]
) -> None:
    with pytest.raises(psycopg.Error) as caught:
        service.rpc("agent_engine_list_sessions", **{"p_workspace_id": workspace_id} | arguments)
    assert caught.value.sqlstate == INVALID_ARGUMENT


# ---------------------------------------------------------------------------
# delete_session and delete_contact_data
# ---------------------------------------------------------------------------


def test_delete_session_deletes_the_session_its_state_and_its_turns_only(
    service: PostgrestConnection, session: dict[str, Any], workspace_id: uuid.UUID
) -> None:
    other = create_session(service, workspace_id)
    add_turn(service, other, "kept")
    add_turn(service, session, "gone")

    service.rpc("agent_engine_delete_session", **scope(session))

    assert service.get("agent_sessions", id=session["id"]) == []
    assert service.get("session_state", session_id=session["id"]) == []
    assert service.get("agent_turns", session_id=session["id"]) == []
    assert len(service.get("session_state", session_id=other["id"])) == 1
    assert [turn["content"] for turn in stored_turns(service, other)] == ["kept"]


def test_delete_session_twice_raises_pt404_the_second_time(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    service.rpc("agent_engine_delete_session", **scope(session))
    with pytest.raises(psycopg.Error) as caught:
        service.rpc("agent_engine_delete_session", **scope(session))
    assert caught.value.sqlstate == NOT_FOUND


def test_delete_contact_data_deletes_every_session_of_the_contact_in_the_workspace(
    service: PostgrestConnection, owner: psycopg.Connection[DictRow], workspace_id: uuid.UUID
) -> None:
    contact, other_contact = uuid.uuid4(), uuid.uuid4()
    doomed = [create_session(service, workspace_id, p_contact_id=contact) for _ in range(3)]
    for session, status in zip(doomed, ("active", "closed", "handed_off"), strict=True):
        add_turn(service, session, "bye")
        service.patch("agent_sessions", {"status": status}, {"id": session["id"]})
    kept = [
        create_session(service, workspace_id, p_contact_id=other_contact),
        create_session(service, workspace_id),
        create_session(service, uuid.uuid4(), p_contact_id=contact),
    ]
    for session in kept:
        add_turn(service, session, "stay")

    deleted = service.rpc(
        "agent_engine_delete_contact_data", p_contact_id=contact, p_workspace_id=workspace_id
    )

    assert deleted == 3
    for session in doomed:
        assert service.get("agent_sessions", id=session["id"]) == []
        assert service.get("session_state", session_id=session["id"]) == []
        assert service.get("agent_turns", session_id=session["id"]) == []
    for session in kept:
        assert len(service.get("agent_sessions", id=session["id"])) == 1
        assert [turn["content"] for turn in stored_turns(service, session)] == ["stay"]
    assert orphans(owner) == {"session_state": 0, "agent_turns": 0}


def test_delete_contact_data_without_sessions_returns_0(
    service: PostgrestConnection, session: dict[str, Any]
) -> None:
    deleted = service.rpc(
        "agent_engine_delete_contact_data",
        p_contact_id=uuid.uuid4(),
        p_workspace_id=session["workspace_id"],
    )
    assert deleted == 0
    assert len(service.get("agent_sessions", id=session["id"])) == 1


@pytest.mark.parametrize("missing", ["p_contact_id", "p_workspace_id"])
def test_delete_contact_data_without_contact_or_workspace_raises_22023(
    service: PostgrestConnection, missing: str
) -> None:
    arguments = {"p_contact_id": uuid.uuid4(), "p_workspace_id": uuid.uuid4(), missing: None}
    with pytest.raises(psycopg.Error) as caught:
        service.rpc("agent_engine_delete_contact_data", **arguments)
    assert caught.value.sqlstate == INVALID_ARGUMENT


def test_delete_session_racing_add_turn_leaves_no_orphans(
    database: Database,
    service: PostgrestConnection,
    owner: psycopg.Connection[DictRow],
    workspace_id: uuid.UUID,
) -> None:
    sessions = [create_session(service, workspace_id) for _ in range(20)]

    def adder(connection: PostgrestConnection) -> list[str]:
        codes = []
        for session in sessions * 3:
            try:
                connection.rpc(
                    "agent_engine_add_turn", **scope(session), p_role="user", p_content="x"
                )
                codes.append("ok")
            except psycopg.Error as error:
                codes.append(error.sqlstate or "")
        return codes

    def deleter(connection: PostgrestConnection) -> None:
        for session in sessions:
            connection.rpc("agent_engine_delete_session", **scope(session))

    codes = run_workers(database, [adder, adder, deleter])

    assert {code for worker in codes[:2] for code in worker} <= {"ok", NOT_FOUND}
    assert service.get("agent_sessions", workspace_id=workspace_id) == []
    assert orphans(owner) == {"session_state": 0, "agent_turns": 0}


# ---------------------------------------------------------------------------
# Retention
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def retention_database(databases: DatabaseFactory) -> Database:
    """A database of its own: a purge across all workspaces must not reach other tests' rows."""
    return databases.create("strict")


@pytest.fixture
def retention(retention_database: Database) -> Iterator[PostgrestConnection]:
    """service_role on the retention database, emptied first."""
    with retention_database.connect_as_owner() as owner:
        owner.execute("truncate public.agent_sessions cascade")
    with retention_database.connect_as("service_role") as connection:
        yield connection


def old_session(
    service: PostgrestConnection,
    *,
    workspace_id: uuid.UUID | None = None,
    status: str = "closed",
    days_after_long_ago: int = 0,
) -> dict[str, Any]:
    """A session with one turn, in `status`, last active long ago (before PURGE_CUTOFF)."""
    session = create_session(service, workspace_id or uuid.uuid4())
    add_turn(service, session, "old", p_tokens_used=1)
    set_last_activity(
        service, session, LONG_AGO + timedelta(days=days_after_long_ago), status=status
    )
    return session


def purge_batch(service: PostgrestConnection, **arguments: Any) -> int:
    """POST /rpc/agent_engine_purge_sessions_batch; p_statuses goes as text[], as PostgREST
    converts a JSON array for a text[] argument (the rpc helper would send jsonb)."""
    arguments = {"p_older_than": PURGE_CUTOFF} | arguments
    statement = sql.SQL("select public.agent_engine_purge_sessions_batch({}) as result").format(
        sql.SQL(", ").join(
            sql.SQL("{} => {}").format(sql.Identifier(name), sql.Placeholder(name))
            for name in arguments
        )
    )
    deleted: int = service.request(statement, arguments, method="POST")[0]["result"]
    return deleted


def surviving(service: PostgrestConnection, sessions: list[dict[str, Any]]) -> list[str]:
    return [s["id"] for s in sessions if service.get("agent_sessions", id=s["id"])]


def test_purge_batch_deletes_old_sessions_in_the_given_statuses_with_state_and_turns(
    retention: PostgrestConnection, retention_database: Database
) -> None:
    closed = [old_session(retention) for _ in range(3)]
    paused = old_session(retention, status="paused")
    active = old_session(retention, status="active")
    recent_closed = create_session(retention, uuid.uuid4())
    retention.patch("agent_sessions", {"status": "closed"}, {"id": recent_closed["id"]})
    at_cutoff = create_session(retention, uuid.uuid4())
    set_last_activity(retention, at_cutoff, PURGE_CUTOFF, status="closed")
    everyone = [*closed, paused, active, recent_closed, at_cutoff]

    assert purge_batch(retention) == 3  # default statuses: closed only

    assert surviving(retention, everyone) == [
        paused["id"],
        active["id"],
        recent_closed["id"],
        at_cutoff["id"],
    ]
    for session in closed:
        assert retention.get("session_state", session_id=session["id"]) == []
        assert retention.get("agent_turns", session_id=session["id"]) == []
    assert purge_batch(retention, p_statuses=["paused", "active"]) == 2
    assert surviving(retention, everyone) == [recent_closed["id"], at_cutoff["id"]]
    with retention_database.connect_as_owner() as owner:
        assert orphans(owner) == {"session_state": 0, "agent_turns": 0}


def test_purge_batch_deletes_at_most_the_batch_size_and_returns_the_count(
    retention: PostgrestConnection,
) -> None:
    for _ in range(5):
        old_session(retention)
    counts = [purge_batch(retention, p_batch_size=2) for _ in range(4)]
    assert counts == [2, 2, 1, 0]


def test_purge_batch_in_one_workspace_leaves_other_workspaces_alone(
    retention: PostgrestConnection,
) -> None:
    workspace_id = uuid.uuid4()
    mine = [old_session(retention, workspace_id=workspace_id) for _ in range(2)]
    others = [old_session(retention) for _ in range(2)]

    assert purge_batch(retention, p_workspace_id=workspace_id) == 2

    assert surviving(retention, mine + others) == [s["id"] for s in others]


def test_purge_batch_skips_a_session_locked_by_another_transaction_without_waiting(
    retention: PostgrestConnection, retention_database: Database
) -> None:
    locked, free = old_session(retention), old_session(retention)
    with (
        retention_database.connect_as_owner() as holder,
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        with holder.transaction():
            # The lock add_turn takes on its session.
            holder.execute(
                "select from public.agent_sessions where id = %s for no key update",
                (locked["id"],),
            )
            first = pool.submit(purge_batch, retention)
            assert first.result(timeout=10) == 1
        assert surviving(retention, [locked, free]) == [locked["id"]]
        assert purge_batch(retention) == 1
    assert surviving(retention, [locked, free]) == []


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param({"p_batch_size": 0}, id="batch-0"),
        pytest.param({"p_batch_size": 10001}, id="batch-10001"),
        pytest.param({"p_batch_size": None}, id="batch-null"),
        pytest.param({"p_older_than": None}, id="older-than-null"),
        pytest.param({"p_statuses": None}, id="statuses-null"),
    ],
)
def test_purge_batch_with_invalid_arguments_raises_22023_and_deletes_nothing(
    retention: PostgrestConnection, arguments: dict[str, Any]
) -> None:
    session = old_session(retention)
    with pytest.raises(psycopg.Error) as caught:
        purge_batch(retention, **arguments)
    assert caught.value.sqlstate == INVALID_ARGUMENT
    assert surviving(retention, [session]) == [session["id"]]


def test_purge_batch_accepts_the_largest_batch_size(retention: PostgrestConnection) -> None:
    old_session(retention)
    assert purge_batch(retention, p_batch_size=10000) == 1


def test_purge_racing_add_turn_leaves_no_orphans_and_add_turn_fails_only_with_pt404(
    retention: PostgrestConnection, retention_database: Database
) -> None:
    sessions = [old_session(retention) for _ in range(60)]
    adders = 3
    adders_running = threading.Semaphore(0)

    def adder(seed: int) -> Callable[[PostgrestConnection], dict[str, str]]:
        def work(connection: PostgrestConnection) -> dict[str, str]:
            outcome: dict[str, str] = {}
            try:
                # Each adder starts at a different session and visits half of them.
                for session in (sessions[seed * 20 :] + sessions[: seed * 20])[:30]:
                    try:
                        connection.rpc(
                            "agent_engine_add_turn",
                            **scope(session),
                            p_role="user",
                            p_content=f"late {seed}",
                            p_tokens_used=2,
                        )
                        outcome[session["id"]] = "ok"
                    except psycopg.Error as error:
                        outcome[session["id"]] = error.sqlstate or repr(error)
            finally:
                adders_running.release()
            return outcome

        return work

    def purger(connection: PostgrestConnection) -> int:
        # Small batches, over and over, while the adders run.
        finished, purged = 0, 0
        while finished < adders:
            purged += purge_batch(connection, p_batch_size=3)
            finished += adders_running.acquire(blocking=False)
        return purged

    *outcomes, purged = run_workers(
        retention_database, [*(adder(seed) for seed in range(adders)), purger]
    )
    while deleted := purge_batch(retention, p_batch_size=3):
        purged += deleted

    failures = {code for outcome in outcomes for code in outcome.values() if code != "ok"}
    assert failures <= {NOT_FOUND}
    added_to = {sid for outcome in outcomes for sid, code in outcome.items() if code == "ok"}
    alive = set(surviving(retention, sessions))
    # A session that took a turn became recent and survives; every other one is purged.
    assert alive == added_to
    assert purged == len(sessions) - len(alive)
    for session in sessions:
        if session["id"] in alive:
            assert_totals_match_the_turns(retention, session)
            assert stored_session(retention, session)["last_activity_at"] > PURGE_CUTOFF
    with retention_database.connect_as_owner() as owner:
        assert orphans(owner) == {"session_state": 0, "agent_turns": 0}


def test_purge_procedure_commits_each_batch_until_a_short_one(
    retention: PostgrestConnection, retention_database: Database
) -> None:
    for _ in range(10):
        old_session(retention)
    recent = create_session(retention, uuid.uuid4())
    retention.patch("agent_sessions", {"status": "closed"}, {"id": recent["id"]})
    with retention_database.connect_as_owner() as owner:
        # Test-only audit: the transaction that deleted each session.
        owner.execute("create temporary table deleted_by (xid bigint not null)")
        owner.execute(
            "create function pg_temp.note_deleter() returns trigger language plpgsql as"
            " $$ begin insert into deleted_by values (txid_current()); return old; end $$"
        )
        owner.execute(
            "create trigger note_deleter after delete on public.agent_sessions"
            " for each row execute function pg_temp.note_deleter()"
        )
        try:
            # As pg_cron runs it: a statement of its own, in autocommit.
            owner.execute(
                "call public.agent_engine_purge_sessions(%s, p_batch_size => 4)", (PURGE_CUTOFF,)
            )
            rows = owner.execute(
                "select count(*) as sessions, count(distinct xid) as transactions from deleted_by"
            ).fetchone()
        finally:
            owner.execute("drop trigger note_deleter on public.agent_sessions")

    # 4 + 4 + 2: three batches, each committed on its own.
    assert rows == {"sessions": 10, "transactions": 3}
    assert [str(s["id"]) for s in retention.get("agent_sessions")] == [recent["id"]]


def test_purge_procedure_inside_a_transaction_block_raises_2d000_and_deletes_nothing(
    retention: PostgrestConnection,
) -> None:
    session = old_session(retention)
    with pytest.raises(psycopg.Error) as caught:
        # PostgREST wraps every request in a transaction: the procedure is for pg_cron.
        retention.request(
            sql.SQL("call public.agent_engine_purge_sessions(%(cutoff)s)"),
            {"cutoff": PURGE_CUTOFF},
            method="POST",
        )
    assert caught.value.sqlstate == INVALID_TRANSACTION_TERMINATION
    assert surviving(retention, [session]) == [session["id"]]


# ---------------------------------------------------------------------------
# Plans: a page costs the same for 10 or 100,000 rows
# ---------------------------------------------------------------------------

BIG = 100_000


@pytest.fixture(scope="module")
def big_database(databases: DatabaseFactory) -> Database:
    """A database of its own holding the large workspace and session."""
    return databases.create("strict")


@pytest.fixture(scope="module")
def sizes(big_database: Database) -> dict[str, dict[str, Any]]:
    """Sessions with 10 and 100,000 turns; workspaces with 100 and 100,000 sessions."""
    made: dict[str, dict[str, Any]] = {}
    with big_database.connect_as_owner() as owner:
        for name, count in (("small", 100), ("big", BIG)):
            workspace_id = uuid.uuid4()
            owner.execute(
                "insert into public.agent_sessions (workspace_id, agent_id, conversation_id,"
                " current_mode, status, last_activity_at)"
                " select %s, 'sales', gen_random_uuid(), 'greeting', 'closed',"
                "        timestamptz '2030-01-01' - g * interval '1 second'"
                " from generate_series(1, %s) g",
                (workspace_id, count),
            )
            owner.execute(
                "insert into public.session_state (session_id, workspace_id)"
                " select id, workspace_id from public.agent_sessions where workspace_id = %s",
                (workspace_id,),
            )
            made[f"{name}_workspace"] = {"workspace_id": workspace_id}
        for name, count in (("small", 10), ("big", BIG)):
            row = owner.execute(
                "select id, workspace_id from public.agent_sessions where workspace_id = %s"
                " limit 1",
                (made[f"{name}_workspace"]["workspace_id"],),
            ).fetchone()
            assert row is not None
            owner.execute(
                "insert into public.agent_turns (session_id, workspace_id, turn_number, role,"
                " content) select %s, %s, g, 'user', 'message ' || g"
                " from generate_series(1, %s) g",
                (row["id"], row["workspace_id"], count),
            )
            made[f"{name}_session"] = {"id": row["id"], "workspace_id": row["workspace_id"]}
        owner.execute("analyze public.agent_sessions, public.session_state, public.agent_turns")
    return made


def executed_plans(
    database: Database, statement: str, params: tuple[Any, ...]
) -> list[dict[str, Any]]:
    """The plans (with actual rows and buffers) of every statement run inside `statement`.

    auto_explain logs each nested statement's plan as it ran; client_min_messages sends
    those log lines to this connection. The statement runs as service_role.
    """
    messages: list[str] = []
    with database.connect_as_owner() as owner:
        owner.add_notice_handler(lambda notice: messages.append(notice.message_primary or ""))
        with owner.transaction(force_rollback=True):
            owner.execute("load 'auto_explain'")
            for name, value in (
                ("auto_explain.log_min_duration", "0"),
                ("auto_explain.log_nested_statements", "on"),
                ("auto_explain.log_analyze", "on"),
                ("auto_explain.log_buffers", "on"),
                ("auto_explain.log_timing", "off"),
                ("auto_explain.log_format", "json"),
                ("client_min_messages", "log"),
            ):
                owner.execute("select set_config(%s, %s, true)", (name, value))
            owner.execute("set local role service_role")
            owner.execute(statement.encode(), params)
    return [json.loads(message.partition("\n")[2]) for message in messages if "plan:" in message]


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


def plan_reading(plans: list[dict[str, Any]], table: str) -> list[dict[str, Any]]:
    """The nodes of the one plan whose query reads `table` (the function's main query)."""
    (plan,) = [p for p in plans if f"from public.{table} " in p["Query Text"]]
    return list(plan_nodes(plan["Plan"]))


def assert_limit_over_an_ordered_index_scan(
    nodes: list[dict[str, Any]], limit: int
) -> dict[str, Any]:
    """The page is read by one index scan straight under the Limit: no sort, no other scan.

    A Sort above the Limit (PostgreSQL 16+ sorts an aggregate's input for its ORDER BY)
    only ever sees the page's rows. Returns the index scan.
    """
    types = [node["Node Type"] for node in nodes]
    assert "Seq Scan" not in types
    assert "Bitmap Heap Scan" not in types
    (page,) = [node for node in nodes if node["Node Type"] == "Limit"]
    under_limit = list(plan_nodes(page))
    assert [node["Node Type"] for node in under_limit] == ["Limit", "Index Scan"]
    for node in nodes:
        if node["Node Type"] == "Sort":
            assert float(node["Actual Rows"]) <= limit
    return under_limit[1]


RECENT_TURNS = (
    "select public.agent_engine_get_recent_turns(p_session_id => %s, p_workspace_id => %s,"
    " p_limit => %s, p_before_turn => %s)"
)


@pytest.mark.parametrize("size", ["small", "big"])
@pytest.mark.parametrize("before", [None, 8], ids=["newest", "before-8"])
def test_get_recent_turns_walks_the_turn_number_index_backwards_and_reads_only_the_page(
    big_database: Database, sizes: dict[str, dict[str, Any]], size: str, before: int | None
) -> None:
    session = sizes[f"{size}_session"]
    limit = 5
    arguments = (session["id"], session["workspace_id"], limit, before)
    executed_plans(big_database, RECENT_TURNS, arguments)  # warm the caches
    nodes = plan_reading(executed_plans(big_database, RECENT_TURNS, arguments), "agent_turns")

    scan = assert_limit_over_an_ordered_index_scan(nodes, limit)
    assert (scan["Index Name"], scan["Scan Direction"]) == (
        "agent_turns_turn_number_key",
        "Backward",
    )
    if before is not None:
        assert "turn_number <" in scan["Index Cond"]
    assert float(scan["Actual Rows"]) == limit
    assert scan.get("Rows Removed by Filter", 0) == 0
    assert scan["Shared Hit Blocks"] + scan["Shared Read Blocks"] <= 10


LIST_SESSIONS = (
    "select public.agent_engine_list_sessions(p_workspace_id => %s, p_limit => %s,"
    " p_after_activity => %s, p_after_id => %s, p_status => %s)"
)


@pytest.mark.parametrize("size", ["small", "big"])
@pytest.mark.parametrize("page", ["first", "deep", "status-filter"])
def test_list_sessions_walks_the_workspace_activity_index_and_reads_only_the_page(
    big_database: Database, sizes: dict[str, dict[str, Any]], size: str, page: str
) -> None:
    workspace_id = sizes[f"{size}_workspace"]["workspace_id"]
    limit = 20
    position: tuple[Any, Any] = (None, None)
    if page == "deep":
        with big_database.connect_as_owner() as owner:
            row = owner.execute(
                "select last_activity_at, id from public.agent_sessions where workspace_id = %s"
                " order by last_activity_at desc, id desc offset %s limit 1",
                (workspace_id, 90 if size == "small" else 90_000),
            ).fetchone()
        assert row is not None
        position = (row["last_activity_at"], row["id"])
    # Every session of these workspaces is closed: the filter removes none, but the
    # status index could serve it.
    status = "closed" if page == "status-filter" else None
    arguments = (workspace_id, limit, *position, status)
    executed_plans(big_database, LIST_SESSIONS, arguments)  # warm the caches
    nodes = plan_reading(executed_plans(big_database, LIST_SESSIONS, arguments), "agent_sessions")

    scan = assert_limit_over_an_ordered_index_scan(nodes, limit)
    assert (scan["Relation Name"], scan["Index Name"]) == (
        "agent_sessions",
        "agent_sessions_workspace_activity_idx",
    )
    expected = 9 if (size, page) == ("small", "deep") else limit  # rows after the 91st of 100
    assert float(scan["Actual Rows"]) == expected
    assert scan.get("Rows Removed by Filter", 0) == 0
    if page == "deep":
        assert "ROW(last_activity_at, id) <" in scan["Index Cond"]
    (state,) = [node for node in nodes if node.get("Relation Name") == "session_state"]
    assert state["Node Type"] == "Index Scan"


CONTACT_SESSIONS = 3


@pytest.fixture(scope="module")
def contact_in_big_workspace(big_database: Database, sizes: dict[str, dict[str, Any]]) -> uuid.UUID:
    """A contact with CONTACT_SESSIONS closed sessions among the 100,000 of the big workspace
    (the other sessions have no contact), each with its state and a turn."""
    contact_id = uuid.uuid4()
    workspace_id = sizes["big_workspace"]["workspace_id"]
    with big_database.connect_as_owner() as owner:
        owner.execute(
            "insert into public.agent_sessions (workspace_id, agent_id, conversation_id,"
            " contact_id, current_mode, status, last_activity_at)"
            " select %s, 'sales', gen_random_uuid(), %s, 'greeting', 'closed',"
            "        timestamptz '2029-06-01' - g * interval '1 day'"
            " from generate_series(1, %s) g",
            (workspace_id, contact_id, CONTACT_SESSIONS),
        )
        owner.execute(
            "insert into public.session_state (session_id, workspace_id)"
            " select id, workspace_id from public.agent_sessions where contact_id = %s",
            (contact_id,),
        )
        owner.execute(
            "insert into public.agent_turns (session_id, workspace_id, turn_number, role,"
            " content) select id, workspace_id, 1, 'user', 'hello'"
            " from public.agent_sessions where contact_id = %s",
            (contact_id,),
        )
        owner.execute("analyze public.agent_sessions")
    return contact_id


DELETE_CONTACT_DATA = (
    "select public.agent_engine_delete_contact_data(p_contact_id => %s, p_workspace_id => %s)"
)


def test_delete_contact_data_reads_only_the_contacts_sessions_among_100000(
    big_database: Database, sizes: dict[str, dict[str, Any]], contact_in_big_workspace: uuid.UUID
) -> None:
    # Erasure must fit its statement timeout however large the workspace grows.
    arguments = (contact_in_big_workspace, sizes["big_workspace"]["workspace_id"])
    executed_plans(big_database, DELETE_CONTACT_DATA, arguments)  # warm the caches (rolled back)
    nodes = plan_reading(
        executed_plans(big_database, DELETE_CONTACT_DATA, arguments), "agent_sessions"
    )

    types = [node["Node Type"] for node in nodes]
    assert "Seq Scan" not in types
    (scan,) = [
        node
        for node in nodes
        if node.get("Relation Name") == "agent_sessions" and "Scan" in node["Node Type"]
    ]
    assert (scan["Node Type"], scan["Index Name"]) == (
        "Index Scan",
        "agent_sessions_workspace_contact_idx",
    )
    assert float(scan["Actual Rows"]) == CONTACT_SESSIONS
    assert scan.get("Rows Removed by Filter", 0) == 0
    assert scan["Shared Hit Blocks"] + scan["Shared Read Blocks"] <= 10


def test_list_sessions_of_a_contact_walks_the_contact_index_and_reads_only_its_sessions(
    big_database: Database, sizes: dict[str, dict[str, Any]], contact_in_big_workspace: uuid.UUID
) -> None:
    statement = (
        "select public.agent_engine_list_sessions(p_workspace_id => %s, p_contact_id => %s,"
        " p_limit => %s)"
    )
    arguments = (sizes["big_workspace"]["workspace_id"], contact_in_big_workspace, 20)
    executed_plans(big_database, statement, arguments)  # warm the caches
    nodes = plan_reading(executed_plans(big_database, statement, arguments), "agent_sessions")

    scan = assert_limit_over_an_ordered_index_scan(nodes, 20)
    assert scan["Index Name"] == "agent_sessions_workspace_contact_idx"
    assert float(scan["Actual Rows"]) == CONTACT_SESSIONS
    assert scan.get("Rows Removed by Filter", 0) == 0
    assert scan["Shared Hit Blocks"] + scan["Shared Read Blocks"] <= 10
