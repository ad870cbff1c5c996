"""Who may run the lifecycle functions (third migration), on legacy and strict projects alike.

Only service_role reaches them: anon and authenticated get 42501 for every new function, for
add_turn's new signature and for the purge procedure, whatever default privileges the
project grants; and no grant is left to PUBLIC, through which they would reach it anyway.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb

from tests.db.conftest import NOT_FOUND, ApiRole, Database
from tests.db.test_privileges import CLIENT_ROLES, INSUFFICIENT_PRIVILEGE, assert_cannot_execute
from tests.db.test_privileges import FUNCTIONS as FIRST_FUNCTIONS

pytestmark = pytest.mark.db

PURGE_PROCEDURE = "agent_engine_purge_sessions"
LONG_AGO = datetime(1990, 1, 1, tzinfo=UTC)


def function_calls() -> dict[str, dict[str, Any]]:
    """One well-formed call of every function the migration adds (or re-creates)."""
    session_id, workspace_id = uuid.uuid4(), uuid.uuid4()
    scope = {"p_session_id": session_id, "p_workspace_id": workspace_id}
    turn: dict[str, Any] = {
        "p_role": "user",
        "p_content": "hi",
        "p_turn_number": None,
        "p_intent_detected": None,
        "p_confidence": None,
        "p_tools_called": [],
        "p_tokens_used": 0,
        "p_idempotency_key": None,
        "p_metadata": {},
    }
    return {
        "agent_engine_raise_session_not_found": scope,
        "agent_engine_lock_session": scope,
        "agent_engine_check_turn": {
            "p_role": "user",
            "p_content": "hi",
            "p_turn_number": None,
            "p_tools_called": [],
            "p_tokens_used": 0,
            "p_metadata": {},
        },
        "agent_engine_store_turn": scope | turn,
        "agent_engine_add_turn": scope | {"p_role": "user", "p_content": "hi", "p_metadata": {}},
        "agent_engine_add_turns": scope | {"p_turns": [{"role": "user", "content": "hi"}]},
        "agent_engine_pop_turn": scope,
        "agent_engine_clear_turns": scope,
        "agent_engine_get_recent_turns": scope | {"p_limit": 10},
        "agent_engine_list_sessions": {"p_workspace_id": workspace_id},
        "agent_engine_delete_session": scope,
        "agent_engine_delete_contact_data": {
            "p_contact_id": uuid.uuid4(),
            "p_workspace_id": workspace_id,
        },
        "agent_engine_purge_sessions_batch": {"p_older_than": LONG_AGO},
    }


FUNCTIONS = sorted(function_calls())
ROUTINES = sorted([*FUNCTIONS, PURGE_PROCEDURE])


def call_procedure(connection: psycopg.Connection[Any]) -> None:
    connection.execute(
        "call public.agent_engine_purge_sessions(p_older_than => %s, p_batch_size => 10)",
        (LONG_AGO,),
    )


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("role", CLIENT_ROLES)
def test_client_roles_cannot_execute_the_lifecycle_functions(
    regime_database: Database, role: ApiRole, function: str
) -> None:
    assert_cannot_execute(regime_database, role, function, function_calls()[function])


@pytest.mark.parametrize("role", CLIENT_ROLES)
def test_client_roles_cannot_call_the_purge_procedure(
    regime_database: Database, role: ApiRole
) -> None:
    # The way pg_cron or a SQL client would run it: autocommit, then the role.
    dsn = make_conninfo(regime_database.dsn, user="authenticator")
    with psycopg.connect(dsn, autocommit=True) as client:
        client.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
        with pytest.raises(psycopg.Error) as caught:
            call_procedure(client)
    assert caught.value.sqlstate == INSUFFICIENT_PRIVILEGE
    assert caught.value.diag.message_primary == f"permission denied for procedure {PURGE_PROCEDURE}"


def test_lifecycle_routines_grant_execute_to_service_role_alone(
    regime_database: Database,
) -> None:
    with regime_database.connect_as_owner() as owner:
        rows = owner.execute(
            "select p.proname,"
            "       array(select coalesce(r.rolname, 'PUBLIC') from aclexplode(p.proacl) a"
            "             left join pg_catalog.pg_roles r on r.oid = a.grantee"
            "             where a.grantee <> p.proowner and a.privilege_type = 'EXECUTE'"
            "             order by 1) as grantees"
            " from pg_catalog.pg_proc p"
            " where p.pronamespace = 'public'::regnamespace and p.proname = any(%s)",
            (ROUTINES,),
        ).fetchall()
    # A null proacl would mean the default: executable by PUBLIC.
    grantees = {row["proname"]: row["grantees"] for row in rows}
    assert grantees == {routine: ["service_role"] for routine in ROUTINES}


def test_service_role_can_execute_every_lifecycle_function(regime_database: Database) -> None:
    workspace_id, contact_id = uuid.uuid4(), uuid.uuid4()
    with regime_database.connect_as("service_role") as service:
        created = service.rpc(
            "agent_engine_create_session",
            p_workspace_id=workspace_id,
            p_agent_id="sales",
            p_conversation_id=uuid.uuid4(),
            p_current_mode="greeting",
            p_contact_id=contact_id,
        )
        scope = {"p_session_id": created["id"], "p_workspace_id": workspace_id}
        calls = function_calls()

        with pytest.raises(psycopg.Error) as caught:
            service.rpc("agent_engine_raise_session_not_found", **scope)
        assert caught.value.sqlstate == NOT_FOUND
        service.rpc("agent_engine_lock_session", **scope)
        service.rpc("agent_engine_check_turn", **calls["agent_engine_check_turn"])
        # A function with OUT parameters: PostgREST reads it as a row source.
        arguments = calls["agent_engine_store_turn"] | scope
        (stored,) = service.request(
            sql.SQL("select r.* from public.agent_engine_store_turn({}) r").format(
                sql.SQL(", ").join(
                    sql.SQL("{} => {}").format(sql.Identifier(name), sql.Placeholder(name))
                    for name in arguments
                )
            ),
            {
                name: Jsonb(value) if isinstance(value, list | dict) else value
                for name, value in arguments.items()
            },
            method="POST",
        )
        assert (stored["o_inserted"], stored["o_turn"]["turn_number"]) == (True, 1)
        turn = service.rpc("agent_engine_add_turn", **calls["agent_engine_add_turn"] | scope)
        assert turn["turn_number"] == 2
        turns = service.rpc("agent_engine_add_turns", **calls["agent_engine_add_turns"] | scope)
        assert [t["turn_number"] for t in turns] == [3]
        recent = service.rpc("agent_engine_get_recent_turns", **scope, p_limit=10)
        assert [t["turn_number"] for t in recent] == [1, 2, 3]
        assert service.rpc("agent_engine_pop_turn", **scope)["turn_number"] == 3
        assert service.rpc("agent_engine_clear_turns", **scope) == 2
        listed = service.rpc("agent_engine_list_sessions", p_workspace_id=workspace_id)
        assert [s["id"] for s in listed] == [created["id"]]
        service.rpc("agent_engine_delete_session", **scope)
        deleted = service.rpc(
            "agent_engine_delete_contact_data", p_contact_id=contact_id, p_workspace_id=workspace_id
        )
        assert deleted == 0
        purged = service.rpc(
            "agent_engine_purge_sessions_batch", **calls["agent_engine_purge_sessions_batch"]
        )
        assert purged == 0


def test_service_role_can_call_the_purge_procedure(regime_database: Database) -> None:
    dsn = make_conninfo(regime_database.dsn, user="authenticator")
    with psycopg.connect(dsn, autocommit=True) as client:
        client.execute("set role service_role")
        call_procedure(client)


def test_new_functions_run_as_the_caller_with_an_empty_search_path(
    regime_database: Database,
) -> None:
    with regime_database.connect_as_owner() as owner:
        rows = owner.execute(
            "select p.proname, p.prokind, p.prosecdef, p.proconfig from pg_catalog.pg_proc p"
            " where p.pronamespace = 'public'::regnamespace and p.proname = any(%s)",
            (ROUTINES,),
        ).fetchall()
    assert sorted(row["proname"] for row in rows) == ROUTINES
    for row in rows:
        assert row["prosecdef"] is False, row["proname"]
        if row["prokind"] == "p":
            # A procedure with a SET clause cannot commit; its body qualifies every name.
            assert (row["proname"], row["proconfig"]) == (PURGE_PROCEDURE, None)
        else:
            assert 'search_path=""' in row["proconfig"], row["proname"]


def test_every_agent_engine_routine_is_covered_by_a_privilege_test(
    regime_database: Database,
) -> None:
    with regime_database.connect_as_owner() as owner:
        rows = owner.execute(
            "select p.proname from pg_catalog.pg_proc p"
            " where p.pronamespace = 'public'::regnamespace"
            "   and p.proname like 'agent\\_engine\\_%'"
            "   and p.prorettype <> 'trigger'::regtype"
        ).fetchall()
    assert sorted(row["proname"] for row in rows) == sorted({*FIRST_FUNCTIONS, *ROUTINES})
