"""How much each section does: the full run, or a smoke run with BENCH_QUICK=1."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

QUICK_VARIABLE = "BENCH_QUICK"


@dataclass(frozen=True, slots=True)
class Parameters:
    """Iteration counts and sizes; the same for every operation of a section."""

    quick: bool
    threads: int
    """Writer/reader threads in the concurrent cases, and the pool size."""
    warmup: int
    """Untimed calls before timing (per thread in the throughput runs)."""
    iterations: int
    """Timed calls per operation for the latency of one caller."""
    operations_per_thread: int
    """Calls per thread (or task) in the throughput runs (1 thread and `threads` threads)."""
    throughput_rounds: int
    """Rounds alternating threads and tasks in the tasks-vs-threads section (median kept)."""
    contention_updates_per_thread: int
    """Successful guarded updates each writer makes on the one shared session."""
    turn_counts: tuple[int, ...]
    """Turns stored in the sessions of the size section, smallest first."""
    scaling_iterations: int
    """Timed calls per operation and size in the turns table of the size section."""
    intent_counts: tuple[int, ...]
    """Intents stored in the sessions of the size section's state table, smallest first."""
    state_iterations: int
    """Timed calls per operation and size in the state table (each call reads it all)."""
    intents_per_thread: int
    """Intents each thread appends in the lost-update section."""
    client_cost_calls: int
    """Timed calls per operation and side (library, raw driver) in the client-cost section."""
    client_cost_blocks: int
    """Blocks those calls are split into (the sides take turns call by call in each); CPU
    per call is the median over the blocks, a ratio the median over the blocks of the two
    sides' ratio in each (timing.paired_ratio)."""
    order_check_writes_per_task: int
    """add_items calls each of the concurrent tasks makes on one shared SDK session."""

    @classmethod
    def from_env(cls) -> Parameters:
        """The full run, or the smoke run when BENCH_QUICK is set to anything but 0."""
        quick = os.environ.get(QUICK_VARIABLE, "").strip() not in ("", "0")
        return cls.smoke_run() if quick else cls.full_run()

    @classmethod
    def full_run(cls) -> Parameters:
        """Sized for about two minutes on a 2-core machine."""
        return cls(
            quick=False,
            threads=8,
            warmup=50,
            iterations=1_000,
            operations_per_thread=300,
            throughput_rounds=5,
            contention_updates_per_thread=50,
            turn_counts=(10, 1_000, 100_000),
            scaling_iterations=1_000,
            intent_counts=(10, 1_000, 10_000),
            state_iterations=40,
            intents_per_thread=50,
            client_cost_calls=2_000,
            client_cost_blocks=20,
            order_check_writes_per_task=50,
        )

    @classmethod
    def smoke_run(cls) -> Parameters:
        """Every code path once or a few times, in seconds; the numbers mean little."""
        return cls(
            quick=True,
            threads=8,
            warmup=3,
            iterations=20,
            operations_per_thread=5,
            throughput_rounds=1,
            contention_updates_per_thread=3,
            turn_counts=(10, 1_000, 10_000),
            scaling_iterations=20,
            intent_counts=(10, 1_000),
            state_iterations=5,
            intents_per_thread=50,
            client_cost_calls=20,
            client_cost_blocks=2,
            order_check_writes_per_task=50,
        )

    def as_json(self) -> dict[str, Any]:
        """The parameters for results.json."""
        return asdict(self)
