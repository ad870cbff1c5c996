"""Apply the packaged SQL migrations to a database, or copy them into a Supabase project.

The wheel carries the same files as the repository's supabase/migrations. `apply_migrations`
runs the ones not yet applied, in name order, each in its own transaction together with its
record in `agent_engine.schema_migrations`, under an advisory lock so concurrent deployers
do not apply a file twice. Needs the `postgres` extra (psycopg). Apply either with this or
with the Supabase CLI (`export_migrations`, then `supabase db push`), not both: each keeps
its own record.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import psycopg

from agent_engine._dsn import parse_dsn
from agent_engine._error_mapping import is_retryable, is_retryable_code
from agent_engine._errors import MigrationError
from agent_engine._postgres_sql import connect_failure, connection_options
from agent_engine.settings import DEFAULT_MIGRATION_LOCK_TIMEOUT, DEFAULT_TIMEOUT, MigrationLimits
from agent_engine.testing import supabase_roles_sql

_PACKAGE = "agent_engine"
_MIGRATIONS_FOLDER = "migrations"
_LOCK_KEY = "agent_engine._migrate"
_RECORD_TABLE_DDL = """
create schema if not exists agent_engine;
create table if not exists agent_engine.schema_migrations (
    version text primary key,
    checksum text not null,
    applied_at timestamptz not null default now()
);
comment on table agent_engine.schema_migrations is
    'Migrations applied by python -m agent_engine migrate (file name and sha256).';
revoke all on schema agent_engine from public;
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One packaged migration file."""

    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """sha256 of the file, to notice an applied migration that was edited afterwards."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def packaged_migrations() -> list[Migration]:
    """The migrations shipped with the package, in the order they apply."""
    folder = resources.files(_PACKAGE) / _MIGRATIONS_FOLDER
    files: list[Traversable] = sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(".sql")),
        key=lambda entry: entry.name,
    )
    return [Migration(entry.name, entry.read_text(encoding="utf-8")) for entry in files]


def export_migrations(directory: str | Path) -> list[Path]:
    """Copy the migrations into `directory` (e.g. your app's supabase/migrations).

    Existing files with the same name are overwritten only if they differ. Returns the
    paths written or already up to date.
    """
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for migration in packaged_migrations():
        path = target / migration.name
        if not path.exists() or path.read_text(encoding="utf-8") != migration.sql:
            path.write_text(migration.sql, encoding="utf-8")
        written.append(path)
    return written


def apply_migrations(
    dsn: str,
    *,
    local_supabase_roles: bool = False,
    lock_timeout: float = DEFAULT_MIGRATION_LOCK_TIMEOUT,
) -> list[str]:
    """Apply the packaged migrations not yet recorded in `dsn`; returns the names applied.

    Idempotent: running it again applies nothing. `local_supabase_roles` first creates
    Supabase's roles (anon, authenticated, service_role...) on a plain PostgreSQL; never use
    it on a Supabase project. `lock_timeout`: seconds a migration's statement may wait for a
    lock (on a table the app is writing, say) before the migration fails, retryably, and
    applies nothing: a DDL statement waiting for a lock makes every later query on that
    table wait behind it. Waiting for another deployer that is applying migrations is not
    bounded. Connecting is: within the DSN's connect_timeout, else DEFAULT_TIMEOUT. Raises
    ConfigError (password masked) for a malformed DSN or a lock_timeout not in (0, 3600],
    MigrationError if the database cannot be reached (retryable when that may pass, no
    secret in it), if a statement fails (with the SQLSTATE), or if an applied migration's
    file has changed since. Needs the `postgres` extra.
    """
    # parse_dsn refuses a malformed DSN without echoing it (libpq's error would).
    parameters = parse_dsn(dsn)
    limits = MigrationLimits.of(lock_timeout=lock_timeout)
    try:
        connection = psycopg.connect(dsn, **_connection_options(parameters))
    except psycopg.Error as error:
        failure = connect_failure(error, [parameters.get("password", "")])
        raise MigrationError(
            failure.message, code=failure.code, retryable=is_retryable(failure)
        ) from failure.cause
    applied: list[str] = []
    current: str | None = None
    try:
        with connection:
            with connection.transaction():
                _lock(connection)
                if local_supabase_roles:
                    connection.execute(supabase_roles_sql())
                connection.execute(_RECORD_TABLE_DDL)
            for migration in packaged_migrations():
                current = migration.name
                with connection.transaction():
                    _lock(connection)
                    if not _already_applied(connection, migration):
                        _bound_lock_waits(connection, limits.lock_timeout)
                        connection.execute(migration.sql)
                        connection.execute(
                            "insert into agent_engine.schema_migrations (version, checksum)"
                            " values (%s, %s)",
                            (migration.name, migration.checksum),
                        )
                        applied.append(migration.name)
    except psycopg.Error as error:
        where = f"migration {current}" if current else "preparing the migrations table"
        reason = error.diag.message_primary or type(error).__name__
        if isinstance(error, psycopg.errors.LockNotAvailable):
            reason += (
                f" (a lock it needs was held for over {limits.lock_timeout:g} s, by the app's "
                "traffic or a long transaction: retry, or give it a longer lock_timeout)"
            )
        raise MigrationError(
            f"{where} failed: {reason}",
            migration=current,
            code=error.sqlstate,
            retryable=is_retryable_code(error.sqlstate),
        ) from error
    return applied


def _connection_options(parameters: dict[str, str]) -> dict[str, Any]:
    """The transports' options (autocommit, TCP liveness checks, so that a server that
    vanishes during a long DDL statement is noticed), and a bounded connect: a host that
    drops packets, or a server or pooler that never answers, would otherwise hold migrate
    for minutes or for ever. The DSN's own values win."""
    options = connection_options(parameters, DEFAULT_TIMEOUT, psycopg.ClientCursor)
    if "connect_timeout" not in parameters:
        options["connect_timeout"] = math.ceil(DEFAULT_TIMEOUT)
    return options


def _bound_lock_waits(connection: psycopg.Connection[Any], seconds: float) -> None:
    # For the rest of this migration's transaction (set_config(..., true) is SET LOCAL),
    # after the deployers' lock was taken, so that wait stays unbounded.
    milliseconds = max(1, math.ceil(seconds * 1000))
    connection.execute("select set_config('lock_timeout', %s, true)", (f"{milliseconds}ms",))


def _lock(connection: psycopg.Connection[Any]) -> None:
    # Held to the end of the transaction: concurrent deployers apply one after the other.
    connection.execute("select pg_advisory_xact_lock(hashtext(%s))", (_LOCK_KEY,))


def _already_applied(connection: psycopg.Connection[Any], migration: Migration) -> bool:
    row = connection.execute(
        "select checksum from agent_engine.schema_migrations where version = %s",
        (migration.name,),
    ).fetchone()
    if row is None:
        return False
    if row[0] != migration.checksum:
        raise MigrationError(
            f"migration {migration.name} was applied but its file has changed since; "
            "write a new migration instead of editing an applied one",
            migration=migration.name,
        )
    return True
