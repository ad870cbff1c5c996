"""How `make bench` turns blocks of timed calls into the client-cost ratio.

A ratio compares the two sides round by round: a phase of the machine that slows every
side's blocks of some rounds, or one block that something else disturbed, must not move it.
"""

from __future__ import annotations

import pytest

from benchmarks.timing import ClientCost, Latency, paired_ratio

UNTIMED = Latency(iterations=1, median_ms=0.0, p95_ms=0.0)


def cost(*microseconds_per_call: float) -> ClientCost:
    """A side's CPU per call in each round, given in µs."""
    return ClientCost(tuple(us / 1_000_000 for us in microseconds_per_call), UNTIMED)


def ratio(top: ClientCost, bottom: ClientCost) -> float:
    """The client-cost table's ratio of two sides of one run."""
    return paired_ratio(top.cpu_seconds_per_call, bottom.cpu_seconds_per_call)


def test_a_slow_phase_that_takes_more_than_half_of_one_sides_median_does_not_move_the_ratio() -> (
    None
):
    # Rounds 3-5 ran in a slow phase (three times the CPU for both sides). The raw side's
    # median lands in the slow rounds, the library's in the fast ones: their quotient says
    # the library costs 0.4x the raw call, each round says 1.2x.
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
