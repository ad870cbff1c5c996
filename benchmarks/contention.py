"""Many writers, one session: guarded updates of a counter kept in current_mode.

Each writer makes `contention_updates_per_thread` successful increments of the counter
(count-0, count-1, ...), either through `mutate_session` (read, change, guarded write,
jittered backoff on conflict, at most 5 attempts; a conflict that escapes is retried by the
writer) or through a bare loop of get_session + update_session_with_version that retries at
once. No increment may be lost: the final counter must equal the successful updates and the
final version must be 1 + that number.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from agent_engine import AgentSessionWithState, VersionConflictError
from benchmarks.context import COUNTER_MODE_PREFIX, Bench
from benchmarks.counting import ROUND_TRIPS
from benchmarks.report import Report, Row
from benchmarks.timing import Call, measure_throughput


def _count(session: AgentSessionWithState) -> int:
    return int(session.current_mode.removeprefix(COUNTER_MODE_PREFIX))


def _increment(session: AgentSessionWithState) -> dict[str, Any]:
    return {"current_mode": f"{COUNTER_MODE_PREFIX}{_count(session) + 1}"}


@dataclass
class Tally:
    """Thread-safe counts of one strategy's writes."""

    attempts: int = 0
    """Guarded writes tried (each follows a fresh read)."""
    successes: int = 0
    escaped_conflicts: int = 0
    """VersionConflictErrors that reached the writer's own code."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, *, attempts: int = 0, successes: int = 0, escaped_conflicts: int = 0) -> None:
        """Add to the counts."""
        with self._lock:
            self.attempts += attempts
            self.successes += successes
            self.escaped_conflicts += escaped_conflicts

    @property
    def conflicts(self) -> int:
        """Guarded writes that raised VersionConflictError: every attempt that did not win."""
        return self.attempts - self.successes


Strategy = Callable[[Bench, UUID, Tally], Call]
"""Builds one writer's call, which makes exactly one successful increment."""


def _with_mutate_session(bench: Bench, session_id: UUID, tally: Tally) -> Call:
    def change(session: AgentSessionWithState) -> Mapping[str, Any]:
        tally.add(attempts=1)  # mutate_session writes once after each call of change
        return _increment(session)

    def call() -> None:
        while True:
            try:
                bench.manager.mutate_session(session_id, change, workspace_id=bench.workspace_id)
            except VersionConflictError:
                tally.add(escaped_conflicts=1)  # its attempts ran out: start over
                continue
            tally.add(successes=1)
            return

    return call


def _with_bare_retry_loop(bench: Bench, session_id: UUID, tally: Tally) -> Call:
    manager, workspace_id = bench.manager, bench.workspace_id

    def call() -> None:
        while True:
            session = manager.get_session(session_id, workspace_id=workspace_id)
            tally.add(attempts=1)
            try:
                manager.update_session_with_version(
                    session_id, session.version, workspace_id=workspace_id, **_increment(session)
                )
            except VersionConflictError:
                tally.add(escaped_conflicts=1)  # re-read and try again, no backoff
                continue
            tally.add(successes=1)
            return

    return call


STRATEGIES: tuple[tuple[str, Strategy], ...] = (
    ("mutate_session (backoff, 5 attempts)", _with_mutate_session),
    ("get_session + update_session_with_version, immediate retry", _with_bare_retry_loop),
)


def run(bench: Bench, report: Report) -> None:
    """Run each strategy on a fresh session and print one table."""
    rows = [_contend(bench, name, strategy) for name, strategy in STRATEGIES]
    threads = bench.parameters.threads
    report.table(
        "contention",
        f"Contention: {threads} writers, one session, "
        f"{bench.parameters.contention_updates_per_thread} increments each",
        rows,
        notes=(
            "conflicts: guarded writes that raised VersionConflictError; retries: writes tried "
            "again from a fresh read (every conflict is retried, so the two are equal); "
            "escaped: conflicts that reached the writer's code rather than being retried "
            "inside mutate_session. consistent: final counter = successful updates and final "
            "version = 1 + successful updates.",
        ),
    )


def _contend(bench: Bench, name: str, strategy: Strategy) -> Row:
    parameters = bench.parameters
    session = bench.new_session()
    tally = Tally()
    writers = [strategy(bench, session.id, tally) for _ in range(parameters.threads)]
    throughput, round_trips = ROUND_TRIPS.counted(
        lambda: measure_throughput(
            writers, operations_per_thread=parameters.contention_updates_per_thread
        )
    )
    final = bench.manager.get_session(session.id, workspace_id=bench.workspace_id)
    return {
        "strategy": name,
        "successful_updates": tally.successes,
        "conflicts": tally.conflicts,
        "retries": tally.conflicts,
        "escaped_conflicts": tally.escaped_conflicts,
        "conflict_rate": tally.conflicts / tally.attempts,
        "round_trips_per_update": round_trips.per(tally.successes)["round_trips_per_op"],
        "updates_per_s": throughput.per_second,
        "final_version": final.version,
        "final_counter": _count(final),
        "consistent": final.version == 1 + tally.successes and _count(final) == tally.successes,
    }
