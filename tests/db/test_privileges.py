"""Who may touch what, on older (`legacy`) and newer (`strict`) Supabase projects alike.

Only service_role (the server's secret key) reaches the tables and functions; anon and
authenticated get 42501 everywhere, whatever default privileges the project grants.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.db.conftest import TABLES, ApiRole, Database, PostgrestConnection

pytestmark = pytest.mark.db

INSUFFICIENT_PRIVILEGE = "42501"
CLIENT_ROLES: tuple[ApiRole, ...] = ("anon", "authenticated")
OPERATIONS = ("select", "insert", "update", "delete")


def function_calls() -> dict[str, dict[str, Any]]:
    """One well-formed call of every function a client could reach through /rpc."""
    session_id, workspace_id = uuid.uuid4(), uuid.uuid4()
    scope = {"p_session_id": session_id, "p_workspace_id": workspace_id}
    new_session = {
        "p_workspace_id": workspace_id,
        "p_agent_id": "sales",
        "p_conversation_id": uuid.uuid4(),
        "p_current_mode": "greeting",
    }
    return {
        "agent_engine_create_session": new_session,
        "agent_engine_get_or_create_session": new_session,
        "agent_engine_append_intent": scope | {"p_intent": "pricing"},
        "agent_engine_append_template": scope | {"p_template_name": "welcome"},
        "agent_engine_merge_captured_data": scope | {"p_data": {"name": "Ada"}},
        "agent_engine_add_turn": scope | {"p_role": "user", "p_content": "hi"},
        "agent_engine_is_workspace_member": {"p_workspace_id": workspace_id},
    }


FUNCTIONS = sorted(function_calls())


def assert_cannot_execute(
    database: Database, role: ApiRole, function: str, arguments: dict[str, Any]
) -> None:
    """A well-formed call of `function` as `role` is refused for lack of the privilege."""
    with database.connect_as(role) as client, pytest.raises(psycopg.Error) as caught:
        client.rpc(function, **arguments)
    assert caught.value.sqlstate == INSUFFICIENT_PRIVILEGE
    assert caught.value.diag.message_primary == f"permission denied for function {function}"


def attempt(client: PostgrestConnection, table: str, operation: str) -> None:
    workspace_id = uuid.uuid4()
    if operation == "select":
        client.get(table, workspace_id=workspace_id)
    elif operation == "insert":
        client.post(table, {"workspace_id": workspace_id})
    elif operation == "update":
        client.patch(table, {"workspace_id": workspace_id}, {"workspace_id": workspace_id})
    else:
        client.delete(table, workspace_id=workspace_id)


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("role", CLIENT_ROLES)
def test_client_roles_cannot_touch_the_tables(
    regime_database: Database, role: ApiRole, table: str, operation: str
) -> None:
    with regime_database.connect_as(role) as client, pytest.raises(psycopg.Error) as caught:
        attempt(client, table, operation)
    assert caught.value.sqlstate == INSUFFICIENT_PRIVILEGE
    assert caught.value.diag.message_primary == f"permission denied for table {table}"


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("role", CLIENT_ROLES)
def test_client_roles_cannot_execute_the_functions(
    regime_database: Database, role: ApiRole, function: str
) -> None:
    assert_cannot_execute(regime_database, role, function, function_calls()[function])


def test_service_role_can_select_insert_update_and_delete_every_table(
    regime_database: Database,
) -> None:
    workspace_id = uuid.uuid4()
    with regime_database.connect_as("service_role") as service:
        session = service.post(
            "agent_sessions",
            {
                "workspace_id": workspace_id,
                "agent_id": "sales",
                "conversation_id": uuid.uuid4(),
                "current_mode": "greeting",
            },
        )
        scope = {"session_id": session["id"], "workspace_id": workspace_id}
        service.post("session_state", scope)
        service.post("agent_turns", scope | {"turn_number": 1, "role": "user", "content": "hi"})

        for table, key in (("agent_sessions", "id"), ("session_state", "session_id")):
            assert len(service.get(table, **{key: session["id"]})) == 1
        assert len(service.get("agent_turns", **scope)) == 1

        service.patch("agent_sessions", {"current_mode": "closing"}, {"id": session["id"]})
        service.patch("session_state", {"captured_data": {"a": 1}}, scope)
        service.patch("agent_turns", {"content": "hello"}, scope)

        assert len(service.delete("agent_turns", **scope)) == 1
        assert len(service.delete("session_state", **scope)) == 1
        assert len(service.delete("agent_sessions", id=session["id"])) == 1


def test_service_role_can_execute_every_function(regime_database: Database) -> None:
    with regime_database.connect_as("service_role") as service:
        created = service.rpc(
            "agent_engine_create_session", **function_calls()["agent_engine_create_session"]
        )
        new_session = {
            "p_workspace_id": created["workspace_id"],
            "p_agent_id": created["agent_id"],
            "p_conversation_id": created["conversation_id"],
            "p_current_mode": created["current_mode"],
        }
        found = service.rpc("agent_engine_get_or_create_session", **new_session)
        assert found["id"] == created["id"]

        scope = {"p_session_id": created["id"], "p_workspace_id": created["workspace_id"]}
        service.rpc("agent_engine_append_intent", **scope, p_intent="pricing")
        service.rpc("agent_engine_append_template", **scope, p_template_name="welcome")
        service.rpc("agent_engine_merge_captured_data", **scope, p_data={"name": "Ada"})
        turn = service.rpc("agent_engine_add_turn", **scope, p_role="user", p_content="hi")
        assert turn["turn_number"] == 1
        member = service.rpc(
            "agent_engine_is_workspace_member", p_workspace_id=created["workspace_id"]
        )
        assert member is False


def test_row_level_security_is_enabled_with_one_member_policy_per_table(
    regime_database: Database,
) -> None:
    with regime_database.connect_as_owner() as owner:
        tables = owner.execute(
            "select c.relname, c.relrowsecurity from pg_catalog.pg_class c"
            " where c.relnamespace = 'public'::regnamespace and c.relname = any(%s)",
            (list(TABLES),),
        ).fetchall()
        policies = owner.execute(
            "select tablename, roles::text[] as roles, cmd, qual, with_check"
            " from pg_catalog.pg_policies where schemaname = 'public' and tablename = any(%s)",
            (list(TABLES),),
        ).fetchall()
    assert {row["relname"]: row["relrowsecurity"] for row in tables} == dict.fromkeys(TABLES, True)
    assert sorted(row["tablename"] for row in policies) == sorted(TABLES)
    hook = "agent_engine_is_workspace_member(workspace_id)"
    for policy in policies:
        assert (policy["roles"], policy["cmd"]) == (["authenticated"], "ALL")
        assert hook in policy["qual"]
        assert hook in policy["with_check"]


def test_membership_hook_denies_until_the_app_replaces_it(regime_database: Database) -> None:
    """Even with table grants, authenticated sees no row until the hook says yes.

    Everything happens in one rolled-back transaction; each look as authenticated is in a
    savepoint that is rolled back too, which also undoes its `set local role`.
    """
    workspace_id = uuid.uuid4()
    as_authenticated = sql.SQL("set local role authenticated")
    count_sessions = "select count(*) as n from public.agent_sessions where workspace_id = %s"
    insert_session = (
        "insert into public.agent_sessions (workspace_id, agent_id, conversation_id, current_mode)"
        " values (%s, 'sales', gen_random_uuid(), 'greeting')"
    )
    with regime_database.connect_as_owner() as owner, owner.transaction(force_rollback=True):
        owner.execute(insert_session, (workspace_id,))
        # What an app would grant to open the table to signed-in users.
        owner.execute("grant select, insert on public.agent_sessions to authenticated")
        owner.execute(
            "grant execute on function public.agent_engine_is_workspace_member(uuid)"
            " to authenticated"
        )

        with owner.transaction(force_rollback=True):
            owner.execute(as_authenticated)
            assert owner.execute(count_sessions, (workspace_id,)).fetchone() == {"n": 0}
        with owner.transaction(force_rollback=True):
            owner.execute(as_authenticated)
            with pytest.raises(psycopg.Error) as caught:
                owner.execute(insert_session, (workspace_id,))
        assert caught.value.sqlstate == INSUFFICIENT_PRIVILEGE
        assert "row-level security" in str(caught.value.diag.message_primary)

        owner.execute(
            "create or replace function public.agent_engine_is_workspace_member("
            "p_workspace_id uuid) returns boolean language sql stable"
            " security invoker set search_path = '' as $$ select true $$"
        )
        with owner.transaction(force_rollback=True):
            owner.execute(as_authenticated)
            assert owner.execute(count_sessions, (workspace_id,)).fetchone() == {"n": 1}
