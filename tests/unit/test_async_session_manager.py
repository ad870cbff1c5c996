"""What only the async manager has: its constructors, its client, awaiting, async changes.

Everything the two managers share (requests, answers, errors, validation, round trips) runs
against both through the `manager` fixtures; these tests are native `async def` tests on
asyncio, awaiting the manager as an app does.
"""

from __future__ import annotations

import asyncio
import inspect
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from supabase import AsyncClient, Client

import agent_engine._async.session_manager as async_manager_module
from agent_engine import (
    AgentSessionWithState,
    AsyncSessionManager,
    ConfigError,
    SessionManager,
    Settings,
    create_async_admin_client,
)
from agent_engine._async.postgrest_transport import AsyncPostgrestTransport
from agent_engine._sync.postgrest_transport import PostgrestTransport
from agent_engine.settings import DEFAULT_TIMEOUT
from tests.managers import LoopTicks
from tests.unit.conftest import (
    LEGACY_SERVICE_ROLE_KEY,
    PROJECT_URL,
    Ids,
    Rows,
    build_async_client,
    no_rows_response,
    object_response,
)

pytestmark = pytest.mark.anyio

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def async_client() -> AsyncIterator[AsyncClient]:
    """An async client of this test alone, closed at the end on the test's loop."""
    supabase_client = build_async_client()
    yield supabase_client
    await supabase_client.postgrest.session.aclose()


def _closed(client: AsyncClient) -> bool:
    return client.postgrest.session.is_closed


# The public surface


def test_every_public_method_of_the_sync_manager_is_a_coroutine_of_the_async_one() -> None:
    public = {
        name
        for name, member in inspect.getmembers(SessionManager)
        if not name.startswith("_") and inspect.isfunction(member)
    }
    renamed = {"close": "aclose"}

    for name in public:
        twin = getattr(AsyncSessionManager, renamed.get(name, name))
        assert inspect.iscoroutinefunction(twin), name
        sync_parameters = inspect.signature(getattr(SessionManager, name)).parameters
        assert list(inspect.signature(twin).parameters) == list(sync_parameters), name
        assert (getattr(SessionManager, name).__doc__ or "").split("\n")[0] == (
            (twin.__doc__ or "").split("\n")[0]
        ), name


def test_from_postgres_and_from_env_are_plain_classmethods_needing_no_event_loop() -> None:
    manager = AsyncSessionManager.from_postgres("postgresql://postgres@127.0.0.1:1/postgres")
    settings = Settings(database_url="postgresql://postgres@127.0.0.1:1/postgres")

    assert isinstance(manager, AsyncSessionManager)
    assert isinstance(AsyncSessionManager.from_env(settings=settings), AsyncSessionManager)


# Construction refuses the other flavour's client or transport


async def test_the_async_manager_refuses_a_sync_supabase_client(shared_client: Client) -> None:
    with pytest.raises(ValueError, match=r"supabase\.Client.*AsyncSessionManager needs"):
        AsyncSessionManager(shared_client)  # type: ignore[arg-type]


async def test_the_async_manager_refuses_a_sync_transport(shared_client: Client) -> None:
    with pytest.raises(ValueError, match="AsyncTransport"):
        AsyncSessionManager(PostgrestTransport(shared_client))  # type: ignore[arg-type]


async def test_the_sync_manager_refuses_an_async_transport(async_client: AsyncClient) -> None:
    with pytest.raises(ValueError, match="SessionManager needs"):
        SessionManager(AsyncPostgrestTransport(async_client))  # type: ignore[arg-type]


@pytest.mark.parametrize("client", [None, PROJECT_URL, object()], ids=["None", "URL", "object"])
async def test_the_async_manager_refuses_what_is_no_client(client: Any) -> None:
    with pytest.raises(ValueError, match=r"client must be a supabase\.AsyncClient"):
        AsyncSessionManager(client)


# create_async_admin_client


async def test_the_async_admin_client_speaks_http_1_1_with_a_finite_timeout_and_the_key(
    async_client: AsyncClient,
) -> None:
    http = async_client.postgrest.session

    assert isinstance(http, httpx.AsyncClient)
    assert http.timeout == httpx.Timeout(DEFAULT_TIMEOUT)
    headers = async_client.postgrest.headers
    assert headers["apikey"] == LEGACY_SERVICE_ROLE_KEY
    assert headers["authorization"] == f"Bearer {LEGACY_SERVICE_ROLE_KEY}"
    transport: Any = http._transport
    assert transport._pool._http2 is False


def test_the_async_admin_client_needs_a_project_url() -> None:
    with pytest.raises(ConfigError, match="SUPABASE_URL"):
        create_async_admin_client(Settings(database_url="postgresql://localhost/postgres"))


# Closing


async def test_aclose_closes_an_owned_client_and_leaves_a_passed_in_one_open(
    async_client: AsyncClient, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    api.get("/session_state").mock(return_value=object_response(rows.state()))
    await AsyncSessionManager(async_client).aclose()
    assert not _closed(async_client)
    state = await AsyncSessionManager(async_client).get_state(
        ids.session_id, workspace_id=ids.workspace_id
    )
    assert state.session_id == ids.session_id

    async with AsyncSessionManager(AsyncPostgrestTransport(async_client, owns_client=True)):
        assert not _closed(async_client)
    assert _closed(async_client)


async def test_from_env_builds_a_manager_that_owns_and_closes_its_async_client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    created: list[AsyncClient] = []

    def recording(settings: Settings) -> AsyncClient:
        created.append(create_async_admin_client(settings))
        return created[-1]

    monkeypatch.setattr(async_manager_module, "create_async_admin_client", recording)
    monkeypatch.chdir(tmp_path)  # no stray .env file
    monkeypatch.setenv("SUPABASE_URL", PROJECT_URL)
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", LEGACY_SERVICE_ROLE_KEY)

    async with AsyncSessionManager.from_env() as manager:
        assert isinstance(created[0], AsyncClient)
        assert not _closed(created[0])
    assert _closed(created[0])
    assert manager.registry is None


# mutate_session


@pytest.mark.parametrize("kind", ["plain", "async"])
async def test_mutate_session_takes_a_plain_or_an_async_change(
    async_client: AsyncClient, api: respx.MockRouter, ids: Ids, rows: Rows, kind: str
) -> None:
    api.get("/agent_sessions").mock(return_value=object_response(rows.session_with_state()))
    written = api.patch("/agent_sessions").mock(
        return_value=object_response(rows.session(version=4, current_mode="scheduling"))
    )
    seen: list[int] = []

    def plain(session: AgentSessionWithState) -> dict[str, Any]:
        seen.append(session.version)
        return {"current_mode": "scheduling"}

    async def awaited(session: AgentSessionWithState) -> dict[str, Any]:
        await asyncio.sleep(0)
        return plain(session)

    session = await AsyncSessionManager(async_client).mutate_session(
        ids.session_id, plain if kind == "plain" else awaited, workspace_id=ids.workspace_id
    )

    assert (session.version, session.current_mode, seen) == (4, "scheduling", [3])
    assert written.calls.last.request.url.params["version"] == "eq.3"


async def test_mutate_session_sleeps_without_blocking_the_loop_between_conflicts(
    async_client: AsyncClient,
    api: respx.MockRouter,
    ids: Ids,
    rows: Rows,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api.get("/agent_sessions").mock(
        side_effect=[
            object_response(rows.session_with_state(version=3)),
            object_response(rows.session(version=4)),  # the second look: someone wrote
            object_response(rows.session_with_state(version=4)),
        ]
    )
    api.patch("/agent_sessions").mock(
        side_effect=[no_rows_response(), object_response(rows.session(version=5))]
    )
    monkeypatch.setattr(async_manager_module, "conflict_backoff", lambda attempt: 0.05)

    async with LoopTicks(0.005) as ticks:
        session = await AsyncSessionManager(async_client).mutate_session(
            ids.session_id, lambda _: {"status": "paused"}, workspace_id=ids.workspace_id
        )

    assert session.version == 5
    assert ticks.count >= 3  # the loop kept running while mutate_session slept 50 ms


def test_the_sync_manager_refuses_an_async_change_without_leaving_a_coroutine_behind(
    shared_client: Client, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    api.get("/agent_sessions").mock(return_value=object_response(rows.session_with_state()))

    async def change(session: AgentSessionWithState) -> dict[str, Any]:
        return {"status": "paused"}

    # Under the suite's filterwarnings, a coroutine left unawaited would fail the test too.
    with pytest.raises(ValueError, match="AsyncSessionManager"):
        SessionManager(shared_client).mutate_session(
            ids.session_id,
            change,  # type: ignore[arg-type]
            workspace_id=ids.workspace_id,
        )


# Awaiting


def test_a_test_that_forgets_to_await_a_call_fails_under_the_suites_warning_filters(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        "import pytest\n\n@pytest.fixture\ndef anyio_backend():\n    return 'asyncio'\n"
    )
    configuration = tomllib.loads((REPOSITORY_ROOT / "pyproject.toml").read_text())
    filters = configuration["tool"]["pytest"]["ini_options"]["filterwarnings"]
    pytester.makepyfile(
        """
        import uuid
        import pytest
        from agent_engine import AsyncSessionManager

        @pytest.mark.anyio
        async def test_forgot_await():
            manager = AsyncSessionManager.from_postgres("postgresql://postgres@127.0.0.1:1/x")
            manager.get_turn_count(uuid.uuid4(), workspace_id=uuid.uuid4())
        """
    )

    result = pytester.runpytest_subprocess(*(f"-W{rule}" for rule in filters))

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*was never awaited*"])
