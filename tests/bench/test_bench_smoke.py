"""`make bench` keeps working: every section runs to the end in its quick mode.

The figures are not judged here (timings belong to `make bench`, as ratios); what is checked
is that each section still runs against the current API and SQL, and that the library and
the raw drivers still send the same requests (the Supabase section checks that itself).
Counts are judged, as they do not depend on the machine: the OpenAI Agents SDK adapter's
round trips per call and its order check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.counting import WIRE_TRACE_SUPPORTED
from benchmarks.parameters import Parameters
from benchmarks.run import QUICK_RESULTS_PATH, SECTIONS

pytestmark = pytest.mark.db

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


def test_every_bench_section_runs_to_the_end_in_quick_mode() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.run"],
        cwd=REPOSITORY_ROOT,
        # Quick mode writes its results to the temporary directory, never results.json.
        env={**os.environ, "BENCH_QUICK": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "Total runtime" in completed.stdout
    assert completed.stdout.count("\n### ") >= len(SECTIONS)
    sections = json.loads(QUICK_RESULTS_PATH.read_text(encoding="utf-8"))["sections"]
    assert_openai_agents_sessions(sections)


def assert_openai_agents_sessions(sections: dict[str, Any]) -> None:
    """AgentEngineSession: one round trip per call (two on a conversation's first), and
    concurrent writers on one session id lose, repeat and reorder nothing."""
    if WIRE_TRACE_SUPPORTED:
        calls = {row["call"]: row["agent_engine"] for row in rows(sections, "round_trips")}
        assert calls.pop("add_items, 1 item, first call for a new session id") == 2
        assert len(calls) == 4
        assert set(calls.values()) == {1}, calls

    quick = Parameters.smoke_run()
    (ours,) = [row for row in rows(sections, "order") if row["store"] == "agent_engine"]
    assert ours["items_stored"] == quick.threads * quick.order_check_writes_per_task
    assert ours["duplicates"] == ours["missing"] == 0
    assert ours["misordered"] == ours["out_of_insertion_order"] == 0


def rows(sections: dict[str, Any], table: str) -> list[dict[str, Any]]:
    return list(sections[f"openai_agents_{table}"]["rows"])
