"""Benchmarks of agent_engine's direct Postgres backend: `python -m benchmarks.run`.

Sections: each operation's round trips, latency and throughput; guarded updates under
contention; cost by session size; lost updates of a read-modify-write of intents; the
client's CPU and wall time per operation against the raw driver's (sync and async, without
and with prepared statements, and on the Supabase path); async tasks against threads; the
OpenAI Agents SDK adapter next to the SDK's SQLAlchemySession; faults. Tables are printed as
markdown and written to benchmarks/results.json (BENCH_QUICK=1: a smoke run whose results go
to the temporary directory instead, leaving results.json alone).
Timings are noisy: compare them as ratios within one run, not across machines.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from time import perf_counter
from typing import Any

from benchmarks import (
    client_cost,
    contention,
    faults,
    lifecycle,
    lost_updates,
    openai_agents_sessions,
    per_operation,
    session_size,
    tasks_vs_threads,
)
from benchmarks.context import Bench, open_bench
from benchmarks.database import Database, open_database
from benchmarks.parameters import Parameters
from benchmarks.report import Report

RESULTS_PATH = Path(__file__).resolve().parent / "results.json"
QUICK_RESULTS_PATH = Path(tempfile.gettempdir()) / "agent_engine_bench_quick.json"

Section = Callable[[Bench, Report], None]
"""Measures something on the bench and adds its table(s) to the report."""

SECTIONS: tuple[Section, ...] = (
    per_operation.run,
    contention.run,
    session_size.run,
    lifecycle.run,
    lost_updates.run,
    client_cost.run,
    tasks_vs_threads.run,
    openai_agents_sessions.run,
    faults.run,
)


def main(sections: Sequence[Section] = SECTIONS, *, write_results: bool = True) -> int:
    """Run `sections` on a fresh database, then write the results; returns the exit status.

    `write_results=False` (a section run on its own) only prints the tables.
    """
    started = perf_counter()
    parameters = Parameters.from_env()
    report = Report()
    with open_database() as database:
        machine = _machine(database)
        _print_header(machine, parameters)
        with open_bench(database, parameters) as bench:
            for section in sections:
                section(bench, report)
    runtime = perf_counter() - started
    if not write_results:
        print(f"\nTotal runtime {runtime:.1f} s")
        return 0
    path = QUICK_RESULTS_PATH if parameters.quick else RESULTS_PATH
    report.write_json(
        path,
        {
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "runtime_seconds": round(runtime, 1),
            "machine": machine,
            "parameters": parameters.as_json(),
        },
    )
    print(f"\nTotal runtime {runtime:.1f} s; results written to {path}")
    return 0


def _machine(database: Database) -> dict[str, Any]:
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        "psycopg": version("psycopg"),
        "server": database.server_version,
        "database": database.description,
    }


def _print_header(machine: dict[str, Any], parameters: Parameters) -> None:
    mode = "quick smoke run (BENCH_QUICK)" if parameters.quick else "full run"
    print(f"# agent_engine benchmarks: {mode}\n")
    for key, value in machine.items():
        print(f"- {key}: {value}")
    print(f"- parameters: {parameters.as_json()}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
