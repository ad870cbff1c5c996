"""The migration itself: where it applies, what it creates and what PostgREST will see."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.rows import DictRow

from tests.db.conftest import MIGRATIONS_DIR, TABLES, Database, DatabaseFactory, apply_migrations

pytestmark = pytest.mark.db


def publication_tables(database: Database) -> list[str]:
    with database.connect_as_owner() as owner:
        rows = owner.execute(
            "select tablename from pg_catalog.pg_publication_tables"
            " where pubname = 'supabase_realtime' and schemaname = 'public'"
            " order by tablename"
        ).fetchall()
    return [row["tablename"] for row in rows]


def test_migration_applies_on_plain_postgres_without_supabase_realtime(
    owner: psycopg.Connection[DictRow],
) -> None:
    publications = owner.execute(
        "select count(*) as n from pg_catalog.pg_publication where pubname = 'supabase_realtime'"
    ).fetchone()
    assert publications == {"n": 0}
    tables = owner.execute(
        "select c.relname from pg_catalog.pg_class c"
        " where c.relnamespace = 'public'::regnamespace and c.relkind = 'r' order by 1"
    ).fetchall()
    assert sorted(row["relname"] for row in tables) == sorted(TABLES)


def test_migration_adds_agent_sessions_to_an_existing_supabase_realtime_publication(
    databases: DatabaseFactory,
) -> None:
    database = databases.create("strict", setup="create publication supabase_realtime")
    assert publication_tables(database) == ["agent_sessions"]


def test_migration_applies_when_supabase_realtime_publishes_all_tables(
    databases: DatabaseFactory,
) -> None:
    database = databases.create(
        "strict", setup="create publication supabase_realtime for all tables"
    )
    assert publication_tables(database) == sorted(TABLES)


def test_every_migration_asks_postgrest_to_reload_its_schema_cache(
    databases: DatabaseFactory,
) -> None:
    migrations = sorted(MIGRATIONS_DIR.glob("*.sql"))
    database = databases.create("strict", migrate=False)
    with database.connect_as_owner() as listener, database.connect_as_owner() as migrator:
        listener.execute("listen pgrst")
        apply_migrations(migrator)
        notifications = list(listener.notifies(timeout=5, stop_after=len(migrations)))
    # Each file is applied in its own transaction, so each one's notification arrives.
    assert [(n.channel, n.payload) for n in notifications] == [("pgrst", "reload schema")] * len(
        migrations
    )


def test_postgrest_sees_one_relationship_per_child_and_state_as_one_to_one(
    owner: psycopg.Connection[DictRow],
) -> None:
    foreign_keys = owner.execute(
        "select c.conrelid::regclass::text as child, c.confrelid::regclass::text as parent,"
        "       array(select a.attname::text from unnest(c.conkey) with ordinality k(n, i)"
        "             join pg_catalog.pg_attribute a"
        "               on a.attrelid = c.conrelid and a.attnum = k.n order by k.i) as columns,"
        "       c.confdeltype as on_delete"
        " from pg_catalog.pg_constraint c"
        " where c.contype = 'f' and c.connamespace = 'public'::regnamespace order by 1"
    ).fetchall()
    assert foreign_keys == [
        {
            "child": "agent_turns",
            "parent": "agent_sessions",
            "columns": ["workspace_id", "session_id"],
            "on_delete": "c",
        },
        {
            "child": "session_state",
            "parent": "agent_sessions",
            "columns": ["workspace_id", "session_id"],
            "on_delete": "c",
        },
    ]
    # PostgREST embeds an object (one-to-one) when the FK columns are unique in the child.
    unique_keys = owner.execute(
        "select array(select a.attname::text from unnest(c.conkey) with ordinality k(n, i)"
        "             join pg_catalog.pg_attribute a"
        "               on a.attrelid = c.conrelid and a.attnum = k.n order by k.i) as columns"
        " from pg_catalog.pg_constraint c"
        " where c.conrelid = 'public.session_state'::regclass and c.contype in ('u', 'p')"
    ).fetchall()
    assert {"columns": ["workspace_id", "session_id"]} in unique_keys


def test_only_the_intended_indexes_exist(owner: psycopg.Connection[DictRow]) -> None:
    rows = owner.execute(
        "select indexrelid::regclass::text as name from pg_catalog.pg_index"
        " where indrelid in ('public.agent_sessions'::regclass, 'public.session_state'::regclass,"
        "                    'public.agent_turns'::regclass)"
        " order by 1"
    ).fetchall()
    assert [row["name"] for row in rows] == [
        "agent_sessions_one_active_idx",
        "agent_sessions_pkey",
        "agent_sessions_status_activity_idx",
        "agent_sessions_workspace_activity_idx",
        "agent_sessions_workspace_contact_idx",
        "agent_sessions_workspace_id_id_key",
        "agent_turns_idempotency_key_key",
        "agent_turns_pkey",
        "agent_turns_turn_number_key",
        "session_state_pkey",
        "session_state_workspace_id_session_id_key",
    ]


def test_migration_creates_no_sequences(owner: psycopg.Connection[DictRow]) -> None:
    row = owner.execute(
        "select count(*) as n from pg_catalog.pg_class"
        " where relkind = 'S' and relnamespace = 'public'::regnamespace"
    ).fetchone()
    assert row == {"n": 0}


def test_functions_are_security_invoker_with_an_empty_search_path(
    owner: psycopg.Connection[DictRow],
) -> None:
    rows = owner.execute(
        "select p.proname, p.prokind, p.prosecdef, p.proconfig from pg_catalog.pg_proc p"
        " where p.pronamespace = 'public'::regnamespace and p.proname like 'agent\\_engine\\_%'"
    ).fetchall()
    functions = [row for row in rows if row["prokind"] == "f"]
    procedures = [row for row in rows if row["prokind"] == "p"]
    assert (len(functions), len(procedures)) == (20, 1)
    for row in functions:
        assert row["prosecdef"] is False, row["proname"]
        assert 'search_path=""' in row["proconfig"], row["proname"]
    # A procedure with a SET clause cannot COMMIT: the purge procedure qualifies every name.
    [purge] = procedures
    assert (purge["proname"], purge["prosecdef"], purge["proconfig"]) == (
        "agent_engine_purge_sessions",
        False,
        None,
    )


def test_every_table_index_constraint_function_trigger_and_policy_has_a_comment(
    owner: psycopg.Connection[DictRow],
) -> None:
    tables = "('public.agent_sessions'::regclass, 'public.session_state'::regclass,"
    tables += " 'public.agent_turns'::regclass)"
    uncommented = owner.execute(
        f"""
        select 'table ' || c.oid::regclass from pg_catalog.pg_class c
         where c.oid in {tables} and obj_description(c.oid, 'pg_class') is null
        union all
        select 'index ' || i.indexrelid::regclass from pg_catalog.pg_index i
          left join pg_catalog.pg_constraint k on k.conindid = i.indexrelid
         where i.indrelid in {tables} and not i.indisprimary
           and obj_description(i.indexrelid, 'pg_class') is null
           and obj_description(k.oid, 'pg_constraint') is null
        union all
        select 'function ' || p.oid::regprocedure from pg_catalog.pg_proc p
         where p.pronamespace = 'public'::regnamespace and p.proname like 'agent\\_engine\\_%'
           and obj_description(p.oid, 'pg_proc') is null
        union all
        select 'trigger ' || t.tgname from pg_catalog.pg_trigger t
         where t.tgrelid in {tables} and not t.tgisinternal
           and obj_description(t.oid, 'pg_trigger') is null
        union all
        select 'policy ' || p.polname from pg_catalog.pg_policy p
         where p.polrelid in {tables} and obj_description(p.oid, 'pg_policy') is null
        union all
        select 'column ' || a.attrelid::regclass || '.' || a.attname
          from pg_catalog.pg_attribute a
         where a.attrelid in {tables} and a.attnum > 0 and not a.attisdropped
           and a.attname not in ('id', 'created_at')
           and col_description(a.attrelid, a.attnum) is null
        """
    ).fetchall()
    assert uncommented == []
