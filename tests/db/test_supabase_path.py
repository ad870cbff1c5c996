"""The Supabase path end to end: a real supabase-py client, the emulated PostgREST, the database.

Each behaviour runs on SessionManager and AsyncSessionManager (the `flavour` fixture), whose
Supabase transport sends its requests through postgrest-py and httpx to the emulator
(tests/postgrest_emulator.py), which runs them as PostgREST would. One test runs the same
scenario on the direct transport and on the Supabase path and compares the results; the
last ones check the emulator itself (PostgREST's errors, refusals, concurrency).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from agent_engine import (
    AgentRegistry,
    AgentSessionWithState,
    AgentTurn,
    AsyncSessionManager,
    IdempotencyConflictError,
    SessionManager,
    SessionNotFoundError,
    VersionConflictError,
)
from agent_engine._async.postgrest_transport import AsyncPostgrestTransport
from tests.db.conftest import Database, DatabaseFactory
from tests.db.supabase_path import (
    PROJECT_URL,
    SERVICE_KEY,
    async_supabase_client,
    supabase_manager,
)
from tests.managers import Managers
from tests.postgrest_emulator import PostgrestEmulator, UnsupportedRequestError

pytestmark = pytest.mark.db

AGENT_ID = "whatsapp-sales"


def new_session(manager: SessionManager, workspace_id: uuid.UUID) -> AgentSessionWithState:
    return manager.create_session(
        workspace_id=workspace_id,
        agent_id=AGENT_ID,
        conversation_id=uuid.uuid4(),
        initial_mode="greeting",
    )


def add_numbered_turns(
    manager: SessionManager, session: AgentSessionWithState, count: int
) -> list[AgentTurn]:
    return [
        manager.add_turn(
            session.id,
            workspace_id=session.workspace_id,
            role="user" if number % 2 else "assistant",
            content=f"message {number}",
            tokens_used=10 * number,
        )
        for number in range(1, count + 1)
    ]


def numbers(turns: list[AgentTurn]) -> list[int]:
    return [turn.turn_number for turn in turns]


# Sessions


def test_get_or_create_session_returns_the_active_session_and_get_session_reads_it(
    supabase_path: SessionManager, workspace_id: uuid.UUID
) -> None:
    conversation_id = uuid.uuid4()
    # Without a registry an agent id is free text: these characters are PostgREST syntax.
    agent_id = 'sales:eu (v2), "b".x'
    fields: dict[str, Any] = {
        "workspace_id": workspace_id,
        "agent_id": agent_id,
        "conversation_id": conversation_id,
        "initial_mode": "greeting",
        "initial_state": {"captured_data": {"source": "whatsapp"}, "templates_sent": ["hi"]},
    }

    created = supabase_path.get_or_create_session(**fields)
    again = supabase_path.get_or_create_session(**fields)
    read = supabase_path.get_session(created.id, workspace_id=workspace_id)

    assert again == created
    assert read == created
    assert (read.version, read.current_mode, read.conversation_id) == (
        1,
        "greeting",
        conversation_id,
    )
    assert read.state.captured_data == {"source": "whatsapp"}
    assert read.state.templates_sent == ["hi"]
    assert (
        supabase_path.get_session_by_conversation(
            conversation_id, agent_id, workspace_id=workspace_id
        )
        == created
    )


def test_update_session_with_version_sets_the_fields_and_bumps_the_version(
    supabase_path: SessionManager, workspace_id: uuid.UUID
) -> None:
    session = new_session(supabase_path, workspace_id)

    updated = supabase_path.update_session_with_version(
        session.id, 1, workspace_id=workspace_id, current_mode="qualifying", status="paused"
    )

    assert (updated.version, updated.current_mode, updated.status.value) == (
        2,
        "qualifying",
        "paused",
    )
    assert supabase_path.get_session(session.id, workspace_id=workspace_id).version == 2


def test_update_session_with_a_stale_version_raises_version_conflict_with_the_actual_version(
    supabase_path: SessionManager, workspace_id: uuid.UUID
) -> None:
    session = new_session(supabase_path, workspace_id)
    supabase_path.update_session_with_version(
        session.id, 1, workspace_id=workspace_id, current_mode="qualifying"
    )

    with pytest.raises(VersionConflictError) as raised:
        supabase_path.update_session_with_version(
            session.id, 1, workspace_id=workspace_id, current_mode="closing"
        )

    assert (raised.value.expected_version, raised.value.actual_version) == (1, 2)
    assert raised.value.code == "PGRST116"
    unchanged = supabase_path.get_session(session.id, workspace_id=workspace_id)
    assert (unchanged.version, unchanged.current_mode) == (2, "qualifying")


# State


def test_update_state_replaces_the_given_fields_and_leaves_the_others(
    supabase_path: SessionManager, workspace_id: uuid.UUID
) -> None:
    session = new_session(supabase_path, workspace_id)
    supabase_path.add_intent_seen(session.id, "pricing", workspace_id=workspace_id)

    state = supabase_path.update_state(
        session.id,
        workspace_id=workspace_id,
        templates_sent=["welcome_v2", "promo"],
        captured_data={"name": "Ana", "budget": 1500.5, "tags": ["vip"], "email": None},
    )

    assert state == supabase_path.get_state(session.id, workspace_id=workspace_id)
    assert state.templates_sent == ["welcome_v2", "promo"]
    assert state.captured_data == {"name": "Ana", "budget": 1500.5, "tags": ["vip"], "email": None}
    assert [intent.intent for intent in state.intents_seen] == ["pricing"]


# Turns


def test_add_turn_replayed_with_its_idempotency_key_returns_the_stored_turn_once(
    supabase_path: SessionManager, workspace_id: uuid.UUID
) -> None:
    session = new_session(supabase_path, workspace_id)
    turn: dict[str, Any] = {
        "role": "user",
        "content": "hola",
        "tokens_used": 7,
        "idempotency_key": "wamid.1",
        "metadata": {"channel": "whatsapp"},
    }

    first = supabase_path.add_turn(session.id, workspace_id=workspace_id, **turn)
    replay = supabase_path.add_turn(session.id, workspace_id=workspace_id, **turn)

    assert replay == first
    assert supabase_path.get_turn_count(session.id, workspace_id=workspace_id) == 1
    assert supabase_path.get_total_tokens_used(session.id, workspace_id=workspace_id) == 7
    with pytest.raises(IdempotencyConflictError) as raised:
        supabase_path.add_turn(
            session.id, workspace_id=workspace_id, **{**turn, "content": "other text"}
        )
    assert (raised.value.code, raised.value.stored_turn_number) == ("PT409", 1)


def test_add_turns_stores_the_batch_numbered_after_the_existing_turns(
    supabase_path: SessionManager, workspace_id: uuid.UUID
) -> None:
    session = new_session(supabase_path, workspace_id)
    add_numbered_turns(supabase_path, session, 1)

    batch = supabase_path.add_turns(
        session.id,
        [
            {"role": "assistant", "content": "a", "tokens_used": 3, "idempotency_key": "k2"},
            {"role": "user", "content": "b", "tokens_used": 4},
        ],
        workspace_id=workspace_id,
    )
    replayed = supabase_path.add_turns(
        session.id,
        [{"role": "assistant", "content": "a", "tokens_used": 3, "idempotency_key": "k2"}],
        workspace_id=workspace_id,
    )

    assert numbers(batch) == [2, 3]
    assert replayed == batch[:1]
    assert supabase_path.get_turn_count(session.id, workspace_id=workspace_id) == 3
    assert supabase_path.get_total_tokens_used(session.id, workspace_id=workspace_id) == 17


def test_get_turns_reads_all_after_a_turn_with_a_limit_and_before_a_turn(
    supabase_path: SessionManager, workspace_id: uuid.UUID
) -> None:
    session = new_session(supabase_path, workspace_id)
    stored = add_numbered_turns(supabase_path, session, 5)

    def turns(**page: int) -> list[int]:
        return numbers(supabase_path.get_turns(session.id, workspace_id=workspace_id, **page))

    assert supabase_path.get_turns(session.id, workspace_id=workspace_id) == stored
    assert turns(after_turn=2) == [3, 4, 5]
    assert turns(limit=2) == [1, 2]
    assert turns(after_turn=2, limit=2) == [3, 4]
    assert turns(after_turn=5) == []
    assert turns(before_turn=4, limit=2) == [2, 3]


def test_get_recent_turns_reads_the_newest_turns_oldest_first(
    supabase_path: SessionManager, workspace_id: uuid.UUID
) -> None:
    session = new_session(supabase_path, workspace_id)
    stored = add_numbered_turns(supabase_path, session, 5)

    recent = supabase_path.get_recent_turns(session.id, workspace_id=workspace_id, limit=2)
    before = supabase_path.get_recent_turns(
        session.id, workspace_id=workspace_id, limit=5, before_turn=2
    )

    assert recent == stored[3:]
    assert before == stored[:1]


def test_pop_turn_removes_the_newest_and_clear_turns_removes_the_rest(
    supabase_path: SessionManager, workspace_id: uuid.UUID
) -> None:
    session = new_session(supabase_path, workspace_id)
    stored = add_numbered_turns(supabase_path, session, 4)

    popped = supabase_path.pop_turn(session.id, workspace_id=workspace_id)
    cleared = supabase_path.clear_turns(session.id, workspace_id=workspace_id)

    assert popped == stored[-1]
    assert cleared == 3
    assert supabase_path.pop_turn(session.id, workspace_id=workspace_id) is None
    assert supabase_path.get_turns(session.id, workspace_id=workspace_id) == []
    assert supabase_path.get_turn_count(session.id, workspace_id=workspace_id) == 0
    assert supabase_path.clear_turns(session.id, workspace_id=workspace_id) == 0


# Lifecycle


def test_list_sessions_pages_through_the_workspace_newest_activity_first(
    supabase_path: SessionManager, workspace_id: uuid.UUID
) -> None:
    sessions = [new_session(supabase_path, workspace_id) for _ in range(3)]
    # The oldest session gets the newest activity.
    add_numbered_turns(supabase_path, sessions[0], 1)

    first = supabase_path.list_sessions(workspace_id=workspace_id, limit=2)
    second = supabase_path.list_sessions(
        workspace_id=workspace_id, limit=2, cursor=first.next_cursor
    )

    assert first.next_cursor is not None
    assert second.next_cursor is None
    listed = [session.id for session in first.sessions + second.sessions]
    assert listed[0] == sessions[0].id
    assert sorted(listed) == sorted(session.id for session in sessions)
    assert first.sessions[0].state.session_id == sessions[0].id


def test_delete_session_removes_it_and_later_calls_raise_session_not_found(
    supabase_path: SessionManager, workspace_id: uuid.UUID
) -> None:
    session = new_session(supabase_path, workspace_id)
    add_numbered_turns(supabase_path, session, 2)

    supabase_path.delete_session(session.id, workspace_id=workspace_id)

    with pytest.raises(SessionNotFoundError):
        supabase_path.get_session(session.id, workspace_id=workspace_id)
    with pytest.raises(SessionNotFoundError):
        supabase_path.get_turns(session.id, workspace_id=workspace_id)
    with pytest.raises(SessionNotFoundError) as raised:
        supabase_path.delete_session(session.id, workspace_id=workspace_id)
    assert raised.value.code == "PT404"


def test_a_session_read_or_written_with_another_workspace_is_not_found_and_unchanged(
    supabase_path: SessionManager, workspace_id: uuid.UUID
) -> None:
    session = new_session(supabase_path, workspace_id)
    add_numbered_turns(supabase_path, session, 1)
    other = uuid.uuid4()
    calls: list[Callable[[], object]] = [
        lambda: supabase_path.get_session(session.id, workspace_id=other),
        lambda: supabase_path.get_state(session.id, workspace_id=other),
        lambda: supabase_path.get_turns(session.id, workspace_id=other),
        lambda: supabase_path.get_turn_count(session.id, workspace_id=other),
        lambda: supabase_path.get_recent_turns(session.id, workspace_id=other, limit=5),
        lambda: supabase_path.update_state(session.id, workspace_id=other, templates_sent=["x"]),
        lambda: supabase_path.update_session_with_version(
            session.id, 1, workspace_id=other, current_mode="closing"
        ),
        lambda: supabase_path.add_turn(session.id, workspace_id=other, role="user", content="x"),
        lambda: supabase_path.pop_turn(session.id, workspace_id=other),
        lambda: supabase_path.clear_turns(session.id, workspace_id=other),
        lambda: supabase_path.delete_session(session.id, workspace_id=other),
    ]

    for call in calls:
        with pytest.raises(SessionNotFoundError):
            call()

    unchanged = supabase_path.get_session(session.id, workspace_id=workspace_id)
    assert (unchanged.version, unchanged.current_mode, unchanged.turn_count) == (1, "greeting", 1)
    assert unchanged.state.templates_sent == []
    assert supabase_path.list_sessions(workspace_id=other).sessions == []


# The two paths

ODD_AGENT_ID = "sales-eu_2"
ODD_MODES = ("greeting", "qualifying", "say_hi", "follow-up", "closing")


def odd_registry() -> AgentRegistry:
    """One agent whose transitions make update_session_with_version send a logic tree."""
    registry = AgentRegistry()
    prompts = {"model": "gpt-4o-mini", "system_prompt": "Classify the message."}
    greeting, qualifying, quoted, slashed, closing = ODD_MODES
    registry.register(
        {
            "id": ODD_AGENT_ID,
            "name": "Odd names",
            "intent_detector": prompts,
            "orchestrator": prompts,
            "states": list(ODD_MODES),
            "initial_state": greeting,
            "valid_transitions": {
                greeting: [qualifying, quoted],
                qualifying: [slashed],
                quoted: [slashed],
                slashed: [closing],
            },
        }
    )
    return registry


def scenario(manager: SessionManager, workspace_id: uuid.UUID) -> list[object]:
    """Every operation once or more; what each returned or raised, ids and times left out."""
    outcomes: list[object] = []

    def record(call: Callable[[], object]) -> None:
        try:
            outcomes.append(comparable(call()))
        except Exception as error:  # the error's class and data are the outcome
            outcomes.append(
                (
                    type(error).__name__,
                    getattr(error, "code", None),
                    getattr(error, "expected_version", None),
                    getattr(error, "actual_version", None),
                    getattr(error, "stored_turn_number", None),
                    getattr(error, "from_value", None),
                    getattr(error, "to_value", None),
                )
            )

    greeting, _, quoted, slashed, closing = ODD_MODES
    conversation = uuid.uuid4()
    session = manager.get_or_create_session(
        workspace_id=workspace_id,
        agent_id=ODD_AGENT_ID,
        conversation_id=conversation,
        initial_state={"captured_data": {"source": "web"}},
    )
    sid, ws = session.id, workspace_id
    record(lambda: session)
    record(lambda: manager.get_session(sid, workspace_id=ws))
    record(lambda: manager.get_session_by_conversation(conversation, ODD_AGENT_ID, workspace_id=ws))
    record(lambda: manager.get_session_by_conversation(uuid.uuid4(), ODD_AGENT_ID, workspace_id=ws))
    record(
        lambda: manager.update_session_with_version(sid, 1, workspace_id=ws, current_mode=slashed)
    )
    record(
        lambda: manager.update_session_with_version(sid, 1, workspace_id=ws, current_mode=quoted)
    )
    record(lambda: manager.update_session_with_version(sid, 1, workspace_id=ws, status="paused"))
    record(
        lambda: manager.update_session_with_version(sid, 2, workspace_id=ws, current_mode=slashed)
    )
    record(lambda: manager.update_session_with_version(sid, 3, workspace_id=ws, status="active"))
    record(lambda: manager.update_state(sid, workspace_id=ws, templates_sent=["t1"]))
    record(lambda: manager.add_intent_seen(sid, "pricing", workspace_id=ws))
    record(lambda: manager.add_template_sent(sid, "t2", workspace_id=ws))
    record(
        lambda: manager.update_captured_data(
            sid, {"name": "Ana \u00e9\U0001f600", "n": 0.1, "big": 2**53 - 1}, workspace_id=ws
        )
    )
    turn: dict[str, Any] = {
        "role": "user",
        "content": "hi",
        "tokens_used": 5,
        "idempotency_key": "m1",
    }
    record(lambda: manager.add_turn(sid, workspace_id=ws, **turn))
    record(lambda: manager.add_turn(sid, workspace_id=ws, **turn))
    record(lambda: manager.add_turn(sid, workspace_id=ws, **{**turn, "content": "changed"}))
    record(
        lambda: manager.add_turn(
            sid,
            workspace_id=ws,
            role="assistant",
            content="hello \u00e9",
            confidence=0.1,
            intent_detected="greet",
            tools_called=[{"name": "lookup", "input": {"q": 1}, "result": {"ok": 1e-7}}],
            metadata={"raw": [1, "two", None, 0.30000000000000004]},
        )
    )
    record(lambda: manager.add_turn(sid, workspace_id=ws, role="user", content="x", turn_number=1))
    record(
        lambda: manager.add_turns(
            sid,
            [
                {"role": "user", "content": "a", "confidence": 0.3},
                {"role": "assistant", "content": "b", "idempotency_key": "m2"},
            ],
            workspace_id=ws,
        )
    )
    record(lambda: manager.get_turns(sid, workspace_id=ws))
    record(lambda: manager.get_turns(sid, workspace_id=ws, after_turn=1, limit=2))
    record(lambda: manager.get_turns(sid, workspace_id=ws, before_turn=3, limit=5))
    record(lambda: manager.get_recent_turns(sid, workspace_id=ws, limit=2))
    record(lambda: manager.get_turn_count(sid, workspace_id=ws))
    record(lambda: manager.get_total_tokens_used(sid, workspace_id=ws))
    record(lambda: manager.pop_turn(sid, workspace_id=ws))
    record(lambda: manager.clear_turns(sid, workspace_id=ws))
    record(lambda: manager.pop_turn(sid, workspace_id=ws))
    record(lambda: manager.get_session(sid, workspace_id=uuid.uuid4()))
    record(lambda: manager.list_sessions(workspace_id=ws, limit=1).sessions)
    record(lambda: manager.list_sessions(workspace_id=ws, agent_id=ODD_AGENT_ID).sessions)
    record(
        lambda: manager.update_session_with_version(sid, 4, workspace_id=ws, current_mode=closing)
    )
    record(lambda: manager.close_session(sid, 5, workspace_id=ws))
    record(lambda: manager.resume_session(sid, 6, workspace_id=ws))
    record(
        lambda: manager.update_session_with_version(sid, 6, workspace_id=ws, current_mode=greeting)
    )
    record(lambda: manager.delete_session(sid, workspace_id=ws))
    record(lambda: manager.get_session(sid, workspace_id=ws))
    record(lambda: manager.delete_session(sid, workspace_id=ws))
    return outcomes


_VARYING = frozenset(
    {
        "id",
        "session_id",
        "workspace_id",
        "conversation_id",
        "created_at",
        "updated_at",
        "last_activity_at",
        "seen_at",
    }
)


def comparable(value: object) -> object:
    """`value` as plain data without the fields that differ from run to run."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    if isinstance(value, dict):
        return {key: comparable(item) for key, item in value.items() if key not in _VARYING}
    if isinstance(value, list | tuple):
        return [comparable(item) for item in value]
    return value


def test_the_supabase_path_gives_the_same_results_as_the_direct_path(
    managers: Managers, emulator: PostgrestEmulator, database: Database
) -> None:
    on_supabase = supabase_manager(managers, emulator, registry=odd_registry())
    direct = managers.from_postgres(database.dsn, registry=odd_registry())
    with on_supabase, direct:
        through_postgrest = scenario(on_supabase, uuid.uuid4())
        through_postgres = scenario(direct, uuid.uuid4())

    for step, (got, expected) in enumerate(zip(through_postgrest, through_postgres, strict=True)):
        assert got == expected, f"step {step}"
    errors = [outcome for outcome in through_postgres if isinstance(outcome, list)]
    assert len(errors) < len(through_postgres) / 2  # mostly results, not failures


# The emulator itself


def raw_client(emulator: PostgrestEmulator) -> httpx.Client:
    return httpx.Client(
        transport=emulator,
        base_url=f"{PROJECT_URL}/rest/v1",
        headers={"apikey": SERVICE_KEY, "Authorization": f"Bearer {SERVICE_KEY}"},
    )


def test_the_emulator_answers_an_unknown_function_with_404_pgrst202(
    emulator: PostgrestEmulator,
) -> None:
    with raw_client(emulator) as client:
        response = client.post("/rpc/agent_engine_no_such_function", json={"p_x": 1})

    assert response.status_code == 404
    assert response.json()["code"] == "PGRST202"
    assert response.headers["content-type"] == "application/json; charset=utf-8"


def test_the_emulator_refuses_a_singular_patch_of_two_rows_with_406_and_rolls_it_back(
    emulator: PostgrestEmulator, database: Database, workspace_id: uuid.UUID
) -> None:
    manager = SessionManager.from_postgres(database.dsn)
    with manager:
        first, second = (new_session(manager, workspace_id) for _ in range(2))
        with raw_client(emulator) as client:
            response = client.patch(
                "/session_state",
                params={"workspace_id": f"eq.{workspace_id}"},
                json={"templates_sent": ["changed"]},
                headers={
                    "Accept": "application/vnd.pgrst.object+json",
                    "Prefer": "return=representation",
                },
            )
        states = [manager.get_state(s.id, workspace_id=workspace_id) for s in (first, second)]

    assert response.status_code == 406
    assert response.json() == {
        "code": "PGRST116",
        "message": "Cannot coerce the result to a single JSON object",
        "details": "The result contains 2 rows",
        "hint": None,
    }
    assert [state.templates_sent for state in states] == [[], []]


def test_the_emulator_answers_a_singular_read_with_the_object_media_type_and_a_range(
    emulator: PostgrestEmulator, database: Database, workspace_id: uuid.UUID
) -> None:
    with SessionManager.from_postgres(database.dsn) as manager:
        session = new_session(manager, workspace_id)
    with raw_client(emulator) as client:
        response = client.get(
            "/agent_sessions",
            params={"select": "id,session_state(*)", "id": f"eq.{session.id}"},
            headers={"Accept": "application/vnd.pgrst.object+json"},
        )

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.pgrst.object+json; charset=utf-8"
    assert response.headers["content-range"] == "0-0/*"
    body = response.json()
    assert body["id"] == str(session.id)
    assert body["session_state"]["session_id"] == str(session.id)  # one-to-one: an object


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/agent_sessions", {"id": "neq.1"}),
        ("/agent_sessions", {"select": "id,total:turn_count"}),
        ("/agent_sessions", {"id": "not.eq.1"}),
        ("/agent_sessions", {"select": "id,agent_turns(*,agent_sessions(*))"}),
    ],
)
def test_the_emulator_raises_on_a_request_it_does_not_emulate(
    emulator: PostgrestEmulator, path: str, params: dict[str, str]
) -> None:
    with raw_client(emulator) as client, pytest.raises(UnsupportedRequestError):
        client.get(path, params=params)


def test_the_emulator_raises_on_a_request_without_the_api_key(
    emulator: PostgrestEmulator,
) -> None:
    client = httpx.Client(transport=emulator, base_url=f"{PROJECT_URL}/rest/v1")
    with client, pytest.raises(UnsupportedRequestError, match="apikey"):
        client.get("/agent_sessions")


@pytest.mark.anyio
async def test_eight_concurrent_tasks_on_the_async_manager_each_get_their_own_transaction(
    emulator: PostgrestEmulator, workspace_id: uuid.UUID
) -> None:
    transport = AsyncPostgrestTransport(async_supabase_client(emulator), owns_client=True)
    async with AsyncSessionManager(transport) as manager:
        session = await manager.create_session(
            workspace_id=workspace_id,
            agent_id=AGENT_ID,
            conversation_id=uuid.uuid4(),
            initial_mode="greeting",
        )
        added = await asyncio.gather(
            *(
                manager.add_turn(
                    session.id, workspace_id=workspace_id, role="user", content=f"m{task}"
                )
                for task in range(8)
            )
        )
        turns = await manager.get_turns(session.id, workspace_id=workspace_id)
        count = await manager.get_turn_count(session.id, workspace_id=workspace_id)

    assert sorted(turn.turn_number for turn in added) == list(range(1, 9))
    assert numbers(turns) == list(range(1, 9))
    assert count == 8


FUNCTION_SHAPES = """
create function public.emulated_series(p_up_to integer) returns setof integer
language sql as $$ select generate_series(1, p_up_to) $$;
create function public.emulated_table(p_up_to integer, p_label text default 'n')
returns table (n integer, label text)
language sql as $$ select i, p_label || i from generate_series(1, p_up_to) as i $$;
create function public.emulated_nothing(p_tags text[]) returns void
language plpgsql as $$ begin perform p_tags; end $$;
create function public.emulated_raise() returns integer
language plpgsql as $$ begin raise sqlstate 'PT418' using message = 'teapot'; end $$;
"""


def test_the_emulator_answers_set_table_void_and_raising_functions_as_postgrest(
    databases: DatabaseFactory,
) -> None:
    emulated = PostgrestEmulator(databases.create("strict", setup=FUNCTION_SHAPES).dsn)
    with raw_client(emulated) as client:
        series = client.post("/rpc/emulated_series", json={"p_up_to": 3})
        table = client.post("/rpc/emulated_table", json={"p_up_to": 2})
        nothing = client.post("/rpc/emulated_nothing", json={"p_tags": ["a", "b"]})
        raised = client.post("/rpc/emulated_raise", json={})
        wrong_keys = client.post("/rpc/emulated_series", json={"p_down_to": 3})
    emulated.close()

    assert (series.status_code, series.json()) == (200, [1, 2, 3])
    assert series.headers["content-range"] == "0-2/*"
    assert table.json() == [{"n": 1, "label": "n1"}, {"n": 2, "label": "n2"}]
    assert (nothing.status_code, nothing.content) == (204, b"")
    assert raised.status_code == 418
    assert raised.json() == {"code": "PT418", "message": "teapot", "details": None, "hint": None}
    assert (wrong_keys.status_code, wrong_keys.json()["code"]) == (404, "PGRST202")


def test_the_emulator_raises_on_a_many_to_one_embed(emulator: PostgrestEmulator) -> None:
    with (
        raw_client(emulator) as client,
        pytest.raises(UnsupportedRequestError, match="many-to-one"),
    ):
        client.get("/agent_turns", params={"select": "id,agent_sessions(*)"})
