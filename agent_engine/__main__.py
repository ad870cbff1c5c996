"""Command line: `python -m agent_engine migrate` and `python -m agent_engine export-migrations`."""

from __future__ import annotations

import argparse
import os
import sys

from agent_engine._errors import AgentEngineError
from agent_engine.settings import DATABASE_URL_VARIABLE, DEFAULT_MIGRATION_LOCK_TIMEOUT


def main(argv: list[str] | None = None) -> int:
    """Run the command named in `argv`; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m agent_engine")
    commands = parser.add_subparsers(dest="command", required=True)
    migrate = commands.add_parser(
        "migrate", help="apply the packaged migrations not yet applied to a database"
    )
    migrate.add_argument(
        "--dsn",
        default=os.environ.get(DATABASE_URL_VARIABLE),
        help=f"Postgres connection string (default: ${DATABASE_URL_VARIABLE})",
    )
    migrate.add_argument(
        "--lock-timeout",
        type=float,
        default=DEFAULT_MIGRATION_LOCK_TIMEOUT,
        metavar="SECONDS",
        help="how long a migration may wait for a lock, such as on a table the app is "
        "writing, before it fails and applies nothing (default: %(default)g)",
    )
    migrate.add_argument(
        "--local-supabase-roles",
        action="store_true",
        help="first create Supabase's roles on a plain PostgreSQL (never on Supabase itself)",
    )
    export = commands.add_parser(
        "export-migrations", help="copy the migrations into a folder, e.g. supabase/migrations"
    )
    export.add_argument("directory")
    arguments = parser.parse_args(argv)

    from agent_engine._migrate import apply_migrations, export_migrations

    try:
        if arguments.command == "export-migrations":
            for path in export_migrations(arguments.directory):
                print(path)
            return 0
        if not arguments.dsn:
            parser.error(f"--dsn is required (or set {DATABASE_URL_VARIABLE})")
        applied = apply_migrations(
            arguments.dsn,
            local_supabase_roles=arguments.local_supabase_roles,
            lock_timeout=arguments.lock_timeout,
        )
    except AgentEngineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("applied: " + ", ".join(applied) if applied else "already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
