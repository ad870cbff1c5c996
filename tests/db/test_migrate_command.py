"""`python -m agent_engine migrate` / `export-migrations`, from the checkout and from a wheel."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agent_engine import _migrate as migrate
from agent_engine._errors import ConfigError, MigrationError
from agent_engine._migrate import (
    _LOCK_KEY,
    apply_migrations,
    export_migrations,
    packaged_migrations,
)
from agent_engine.settings import DEFAULT_TIMEOUT
from tests.db.conftest import MIGRATIONS_DIR, REPOSITORY_ROOT, Database, DatabaseFactory

CONTACT_INDEX = "20261130120000_agent_engine_contact_index.sql"


def run_cli(*arguments: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ)
    if pythonpath is not None:
        environment["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(  # noqa: S603 (our own interpreter and module)
        [sys.executable, "-m", "agent_engine", *arguments],
        capture_output=True,
        text=True,
        env=environment,
        cwd=pythonpath or REPOSITORY_ROOT,
        check=False,
        timeout=120,
    )


def recorded_versions(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as connection:
        rows = connection.execute(
            "select version from agent_engine.schema_migrations order by version"
        ).fetchall()
    return [row[0] for row in rows]


def test_the_package_carries_exactly_the_repository_migrations() -> None:
    shipped = {migration.name: migration.sql for migration in packaged_migrations()}
    in_repository = {
        path.name: path.read_text(encoding="utf-8") for path in MIGRATIONS_DIR.glob("*.sql")
    }

    assert shipped == in_repository
    assert list(shipped) == sorted(shipped)


def test_migrate_applies_each_migration_once_and_records_it(databases: DatabaseFactory) -> None:
    database = databases.create("strict", migrate=False)

    first = run_cli("migrate", "--dsn", database.dsn)
    second = run_cli("migrate", "--dsn", database.dsn)

    assert first.returncode == 0, first.stderr
    assert "applied: 20261124000000_agent_engine.sql" in first.stdout
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "already up to date"
    assert recorded_versions(database.dsn) == [
        path.name for path in sorted(MIGRATIONS_DIR.glob("*.sql"))
    ]
    with psycopg.connect(database.dsn) as connection:
        assert connection.execute("select to_regclass('public.agent_turns')").fetchone() == (
            "agent_turns",
        )


def test_an_applied_migration_whose_file_changed_is_refused(databases: DatabaseFactory) -> None:
    database = databases.create("strict", migrate=False)
    apply_migrations(database.dsn)
    with psycopg.connect(database.dsn) as connection:
        connection.execute("update agent_engine.schema_migrations set checksum = 'edited'")

    with pytest.raises(MigrationError, match="has changed") as raised:
        apply_migrations(database.dsn)

    assert raised.value.migration == "20261124000000_agent_engine.sql"


def test_a_failing_migration_names_itself_keeps_the_sqlstate_and_applies_nothing(
    databases: DatabaseFactory,
) -> None:
    database = databases.create("strict", migrate=False)
    with psycopg.connect(database.dsn) as connection:
        connection.execute("create table public.agent_sessions (id int)")  # in the way

    with pytest.raises(MigrationError) as raised:
        apply_migrations(database.dsn)

    assert raised.value.migration == "20261124000000_agent_engine.sql"
    assert raised.value.code == "42P07"  # duplicate_table
    assert recorded_versions(database.dsn) == []


def before_the_contact_index(databases: DatabaseFactory) -> Database:
    """A database migrated with apply_migrations, but for the contact index's migration:
    what an app upgrading to it has."""
    database = databases.create("strict", migrate=False)
    apply_migrations(database.dsn)
    with psycopg.connect(database.dsn, autocommit=True) as connection:
        connection.execute("drop index public.agent_sessions_workspace_contact_idx")
        connection.execute(
            "delete from agent_engine.schema_migrations where version = %s", (CONTACT_INDEX,)
        )
    return database


def migrating_in_background(
    dsn: str, **options: Any
) -> tuple[threading.Thread, list[BaseException]]:
    """apply_migrations(dsn, **options) started on a daemon thread (a test joins it with a
    bound of its own), and the list that receives what it raised."""
    outcome: list[BaseException] = []

    def migrate() -> None:
        try:
            apply_migrations(dsn, **options)
        except BaseException as error:
            outcome.append(error)

    attempt = threading.Thread(target=migrate, daemon=True)
    attempt.start()
    return attempt, outcome


def contact_index_exists(database: Database) -> bool:
    with psycopg.connect(database.dsn) as connection:
        row = connection.execute(
            "select to_regclass('public.agent_sessions_workspace_contact_idx')"
        ).fetchone()
    return row is not None and row[0] is not None


def test_a_migration_kept_waiting_for_a_lock_past_lock_timeout_fails_retryably_and_applies_nothing(
    databases: DatabaseFactory,
) -> None:
    database = before_the_contact_index(databases)
    app_done = threading.Event()

    def app_writing_sessions() -> None:
        # A transaction of the app's that writes agent_sessions, still open. It ends after
        # 30 s at the latest, so that a migrate that ignored lock_timeout would succeed late
        # and fail this test, rather than hang it.
        with psycopg.connect(database.dsn) as app:
            app.execute("lock table public.agent_sessions in row exclusive mode")
            holding.set()
            app_done.wait(30)

    holding = threading.Event()
    app = threading.Thread(target=app_writing_sessions)
    app.start()
    try:
        assert holding.wait(10)
        with pytest.raises(MigrationError) as raised:
            apply_migrations(database.dsn, lock_timeout=0.2)
    finally:
        app_done.set()
        app.join()

    error = raised.value
    assert (error.migration, error.code, error.retryable) == (CONTACT_INDEX, "55P03", True)
    assert "held for over 0.2 s" in error.message
    assert error.to_dict()["retryable"] is True
    assert CONTACT_INDEX not in recorded_versions(database.dsn)
    assert not contact_index_exists(database)
    # Once the app's transaction has ended, the same call applies it.
    assert apply_migrations(database.dsn, lock_timeout=0.2) == [CONTACT_INDEX]
    assert contact_index_exists(database)


def test_a_migration_whose_connection_the_server_ends_fails_retryably_and_applies_nothing(
    databases: DatabaseFactory,
) -> None:
    database = before_the_contact_index(databases)

    with psycopg.connect(database.dsn) as app, psycopg.connect(database.dsn) as admin:
        # The migration waits for the app's lock; meanwhile its backend is terminated (a
        # failover, an admin, a pooler restart).
        app.execute("lock table public.agent_sessions in row exclusive mode")
        attempt, outcome = migrating_in_background(database.dsn, lock_timeout=60)
        try:
            for _ in range(200):
                # The only backend of this database waiting for a lock is the migration's.
                row = admin.execute(
                    "select pid from pg_stat_activity where wait_event_type = 'Lock'"
                    " and datname = current_database()"
                ).fetchone()
                if row is not None:
                    admin.execute("select pg_terminate_backend(%s)", (row[0],))
                    break
                admin.commit()  # a new snapshot of pg_stat_activity
                time.sleep(0.05)
        finally:
            attempt.join(30)
            app.rollback()

    (error,) = outcome
    assert isinstance(error, MigrationError)
    assert (error.migration, error.code, error.retryable) == (CONTACT_INDEX, "57P01", True)
    assert CONTACT_INDEX not in recorded_versions(database.dsn)
    assert apply_migrations(database.dsn) == [CONTACT_INDEX]


def test_waiting_for_another_deployer_is_not_bounded_by_lock_timeout(
    databases: DatabaseFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = before_the_contact_index(databases)
    takes = 0

    def lock_after_another_deployer(connection: psycopg.Connection[Any]) -> None:
        # When the first migration's transaction asks for the deployers' lock, another
        # deployer holds it, for 1 s: five times lock_timeout.
        nonlocal takes
        takes += 1
        if takes == 2:
            other.execute("select pg_advisory_xact_lock(hashtext(%s))", (_LOCK_KEY,))
            finishing.start()
        take_lock(connection)

    take_lock = migrate._lock
    monkeypatch.setattr(migrate, "_lock", lock_after_another_deployer)
    with psycopg.connect(database.dsn) as other:
        finishing = threading.Timer(1.0, other.commit)
        try:
            applied = apply_migrations(database.dsn, lock_timeout=0.2)
            waited_for_other = other.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        finally:
            finishing.cancel()
            if finishing.is_alive():
                finishing.join()

    assert applied == [CONTACT_INDEX]
    assert takes == 1 + len(packaged_migrations())
    assert waited_for_other


def test_a_server_that_never_answers_fails_migrate_within_its_connect_timeout() -> None:
    # A socket that accepts connections (the kernel completes them) and never answers:
    # a stuck server or pooler. Without a connect timeout libpq would wait for ever.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        dsn = f"postgresql://app:s3cret-pw@127.0.0.1:{port}/postgres"
        attempt, outcome = migrating_in_background(dsn)
        attempt.join(DEFAULT_TIMEOUT + 20)

    assert not attempt.is_alive(), "migrate was still connecting"
    (error,) = outcome
    assert isinstance(error, MigrationError)
    assert error.message.startswith("could not connect to the database:")
    assert "timeout" in error.message
    assert error.retryable
    assert error.migration is None
    for shown in (error.message, str(error.__cause__), repr(error.__cause__), error.to_dict()):
        assert "s3cret-pw" not in str(shown)


@pytest.mark.parametrize("lock_timeout", [0, -1, math.nan, math.inf, 3601])
def test_a_lock_timeout_out_of_range_is_refused_before_connecting(lock_timeout: float) -> None:
    unreachable = "postgresql://nobody@127.0.0.1:1/nothing"

    with pytest.raises(ConfigError) as raised:
        apply_migrations(unreachable, lock_timeout=lock_timeout)

    assert raised.value.variable == "lock_timeout"


def test_migrate_takes_its_lock_timeout_from_the_command_line() -> None:
    result = run_cli("migrate", "--dsn", "postgresql://nobody@127.0.0.1:1/x", "--lock-timeout", "0")

    assert result.returncode == 1
    assert "lock_timeout" in result.stderr


def test_migrate_without_a_dsn_explains_what_is_missing() -> None:
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "agent_engine", "migrate"],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )

    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr


def test_export_migrations_copies_them_for_supabase_db_push(tmp_path: Path) -> None:
    target = tmp_path / "supabase" / "migrations"

    written = export_migrations(target)

    assert [path.name for path in written] == [p.name for p in sorted(MIGRATIONS_DIR.glob("*.sql"))]
    for path in written:
        assert path.read_text(encoding="utf-8") == (MIGRATIONS_DIR / path.name).read_text(
            encoding="utf-8"
        )


def test_both_commands_work_from_a_built_wheel(tmp_path: Path, databases: DatabaseFactory) -> None:
    wheel_directory = tmp_path / "wheel"
    subprocess.run(  # noqa: S603
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(wheel_directory),
            str(REPOSITORY_ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    installed = tmp_path / "installed"
    (wheel,) = wheel_directory.glob("agent_engine-*.whl")
    zipfile.ZipFile(wheel).extractall(installed)
    where = subprocess.run(
        [sys.executable, "-c", "import agent_engine; print(agent_engine.__file__)"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(installed)},
        cwd=installed,
        check=True,
    )
    assert where.stdout.startswith(str(installed))  # the wheel's copy, not the checkout
    database = databases.create("strict", migrate=False)

    exported = run_cli("export-migrations", str(tmp_path / "app"), pythonpath=installed)
    migrated = run_cli("migrate", "--dsn", database.dsn, pythonpath=installed)

    assert exported.returncode == 0, exported.stderr
    assert sorted(path.name for path in (tmp_path / "app").iterdir()) == sorted(
        path.name for path in MIGRATIONS_DIR.glob("*.sql")
    )
    assert migrated.returncode == 0, migrated.stderr
    assert recorded_versions(database.dsn) == [p.name for p in sorted(MIGRATIONS_DIR.glob("*.sql"))]
