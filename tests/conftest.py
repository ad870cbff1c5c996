"""Configuration shared by every test: where a database is required, not testing it fails.

Locally the database tests skip (one line) when no PostgreSQL can be had. In CI (`CI` is
"true" or "1") or with `AGENT_ENGINE_REQUIRE_DB=1`, a skipped test, or a collected
`tests/db` in which no database test ran, makes the whole session fail: a green run must
mean the SQL was exercised.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from tests.managers import FLAVOURS, Flavour, Managers

DATABASE_TESTS_DIR = Path(__file__).resolve().parent / "db"


def database_required() -> bool:
    """Whether this run must exercise the database (CI, or AGENT_ENGINE_REQUIRE_DB=1)."""
    in_ci = os.environ.get("CI", "").strip().lower() in {"true", "1"}
    return in_ci or os.environ.get("AGENT_ENGINE_REQUIRE_DB", "").strip() == "1"


class NothingSkippedGuard:
    """Turns a skipped test, or a collected but unexercised tests/db, into a failed session."""

    def __init__(self) -> None:
        self.skipped: list[str] = []
        self.database_tests_collected = False
        self.database_test_ran = False
        self.problems: list[str] = []

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.database_tests_collected = any(
            item.path.is_relative_to(DATABASE_TESTS_DIR) for item in session.items
        )

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
            self.skipped.append(f"{report.nodeid}: {reason}")
        if report.when == "call" and "db" in report.keywords:
            self.database_test_ran = True

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.skipped:
            self.problems.append(f"{len(self.skipped)} test(s) skipped, e.g. {self.skipped[0]}")
        if self.database_tests_collected and not self.database_test_ran:
            self.problems.append("tests/db was collected but no test marked `db` ran")
        if self.problems and session.exitstatus in (
            pytest.ExitCode.OK,
            pytest.ExitCode.NO_TESTS_COLLECTED,
        ):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.problems:
            return
        terminalreporter.section("database tests required", sep="=", red=True, bold=True)
        terminalreporter.line(
            "CI or AGENT_ENGINE_REQUIRE_DB=1 is set, so every test must run; failing because:"
        )
        for problem in self.problems:
            terminalreporter.line(f"  - {problem}")


def pytest_configure(config: pytest.Config) -> None:
    if database_required():
        config.pluginmanager.register(NothingSkippedGuard(), "agent_engine_nothing_skipped")


# Both managers: a fixture that depends on `managers` runs once per flavour.


@pytest.fixture(scope="session")
def portal() -> Iterator[BlockingPortal]:
    """One event loop, in a thread, on which the async managers of every test run."""
    with start_blocking_portal(backend="asyncio") as blocking_portal:
        yield blocking_portal


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> Flavour:
    """sync: SessionManager; async: AsyncSessionManager (driven through the portal)."""
    chosen: Flavour = request.param
    return chosen


@pytest.fixture
def managers(flavour: Flavour, portal: BlockingPortal) -> Managers:
    return Managers(flavour, portal)


@pytest.fixture
def anyio_backend() -> str:
    """Native async tests run on asyncio (the loop FastAPI and the agent SDKs use)."""
    return "asyncio"
