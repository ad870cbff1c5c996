"""How `make bench` measures client cost and turns it into a ratio, and how busy each core was.

The sides take turns call by call, so they meet the same state of the machine, and a ratio
compares them block by block: a phase of the machine that slows some blocks, or one block
that something else disturbed, must not move it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial

import pytest

from benchmarks.timing import (
    AsyncCall,
    ClientCost,
    Latency,
    busy_shares,
    core_times,
    measure_async_client_cost,
    measure_async_throughput,
    measure_client_cost,
    measure_throughput,
    paired_ratio,
)

UNTIMED = Latency(iterations=1, median_ms=0.0, p95_ms=0.0)


def cost(*microseconds_per_call: float) -> ClientCost:
    """A side's CPU per call in each block, given in µs."""
    return ClientCost(tuple(us / 1_000_000 for us in microseconds_per_call), UNTIMED)


def ratio(top: ClientCost, bottom: ClientCost) -> float:
    """The client-cost table's ratio of two sides of one run."""
    return paired_ratio(top.cpu_seconds_per_call, bottom.cpu_seconds_per_call)


def test_a_slow_phase_that_takes_more_than_half_of_one_sides_median_does_not_move_the_ratio() -> (
    None
):
    # Blocks 3-5 ran in a slow phase (three times the CPU for both sides). The raw side's
    # median lands in the slow blocks, the library's in the fast ones: their quotient says
    # the library costs 0.4x the raw call, each block says 1.2x.
    raw = cost(100, 100, 300, 300, 300)
    library = cost(120, 120, 360, 360, 120)

    assert library.cpu_us_per_call / raw.cpu_us_per_call == pytest.approx(0.4)
    assert ratio(library, raw) == pytest.approx(1.2)


def test_one_disturbed_block_does_not_move_the_ratio() -> None:
    raw = cost(100, 100, 100, 100, 100)
    library = cost(125, 125, 500, 125, 125)

    assert ratio(library, raw) == pytest.approx(1.25)


def test_costs_of_different_runs_are_refused() -> None:
    with pytest.raises(ValueError, match="not one run: 3 and 2 rounds"):
        ratio(cost(120, 120, 120), cost(100, 100))


def recorder(calls: list[str], side: str, count: int) -> list[Callable[[], None]]:
    """`count` calls that each note which side and which call number ran."""
    return [partial(calls.append, f"{side}{number}") for number in range(count)]


def test_the_sides_take_turns_call_by_call_in_an_order_reversed_at_every_call() -> None:
    ran: list[str] = []

    costs = measure_client_cost([recorder(ran, "a", 6), recorder(ran, "b", 6)], warmup=2, blocks=2)

    assert ran == ["a0", "b0", "b1", "a1", "a2", "b2", "b3", "a3", "a4", "b4", "b5", "a5"]
    assert [len(side.cpu_seconds_per_call) for side in costs] == [2, 2]
    assert [side.latency.iterations for side in costs] == [4, 4]


def test_async_sides_take_turns_the_same_way() -> None:
    ran: list[str] = []

    def awaitable(calls: list[Callable[[], None]]) -> list[AsyncCall]:
        async def run(call: Callable[[], None]) -> None:
            call()

        return [partial(run, call) for call in calls]

    with asyncio.Runner() as runner:
        measure_async_client_cost(
            runner,
            [awaitable(recorder(ran, "a", 4)), awaitable(recorder(ran, "b", 4))],
            warmup=0,
            blocks=2,
        )

    assert ran == ["a0", "b0", "b1", "a1", "a2", "b2", "b3", "a3"]


def test_sides_with_different_numbers_of_calls_are_refused() -> None:
    with pytest.raises(ValueError, match="as many calls"):
        measure_client_cost([recorder([], "a", 6), recorder([], "b", 5)], warmup=1, blocks=2)


# /proc/stat: per core, user nice system idle iowait irq softirq steal guest guest_nice.
STAT_BEFORE = """cpu  1000 0 500 9000 100 0 50 20 0 0
cpu0 700 0 300 3000 50 0 30 10 0 0
cpu1 300 0 200 6000 50 0 20 10 0 0
intr 123456 0 0
ctxt 98765
"""
STAT_AFTER = """cpu  1500 0 700 9300 200 0 100 70 0 0
cpu0 1050 0 450 3000 50 0 50 10 0 0
cpu1 450 0 250 6300 150 0 50 60 0 0
intr 123999 0 0
ctxt 99999
"""


def test_each_core_is_read_apart_from_the_machine_line_busy_being_user_system_irq_softirq() -> None:
    assert core_times(STAT_BEFORE) == ((1030, 4090), (520, 6580))


def test_a_core_that_only_ran_is_fully_busy_and_idle_io_wait_and_stolen_time_are_not_busy() -> None:
    shares = busy_shares(core_times(STAT_BEFORE), core_times(STAT_AFTER))

    # core 0: 520 busy ticks, nothing else; core 1: 230 busy of 230 + 300 idle + 100 iowait
    # + 50 stolen.
    assert shares == pytest.approx((1.0, 230 / 680))


def test_throughput_runs_say_how_busy_each_core_of_the_machine_was() -> None:
    cores = len(core_times())
    threads = measure_throughput([lambda: None] * 2, operations_per_thread=50)
    with asyncio.Runner() as runner:
        tasks = measure_async_throughput(
            runner, [partial(asyncio.sleep, 0)] * 2, operations_per_task=50
        )

    assert cores >= 1
    for throughput in (threads, tasks):
        assert len(throughput.cores_busy) == cores
        assert all(0.0 <= share <= 1.0 for share in throughput.cores_busy)
