"""Cost by session size: sessions of 10 to 100,000 turns, and of 10 to 10,000 intents.

Turns live in their own table: totals are running columns of the session row and pages are
read through the (workspace_id, session_id, turn_number) index, so these operations should
take about as long on the largest session as on the smallest. Intents are one jsonb array
in the session's state row: every append rewrites (and re-checks) the whole array and every
read of the state returns all of it, so that table is expected to grow; it is there to
show by how much.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

from agent_engine import TurnRole
from benchmarks.context import Bench
from benchmarks.report import Report, Row
from benchmarks.timing import Call, Latency, measure_latency

FLAT_RATIO_LIMIT = 3.0
"""Largest/smallest median above this is reported as WARN (timings are noisy: not a failure)."""

PAGE = 20

Probe = Callable[[Bench, UUID, int], Call]
"""Builds the call for a session id of the given size."""
Fill = Callable[[Bench, UUID, int], None]
"""Gives a new session the given number of turns or intents."""


@dataclass(frozen=True, slots=True)
class Dimension:
    """What grows (turns or intents), the sizes tried and the operations timed at each."""

    key: str
    what: str
    filled_by: str
    sizes: tuple[int, ...]
    iterations: int
    fill: Fill
    probes: tuple[tuple[str, Probe], ...]


def _get_total_tokens_used(bench: Bench, session_id: UUID, size: int) -> Call:
    return lambda: bench.manager.get_total_tokens_used(session_id, workspace_id=bench.workspace_id)


def _get_session(bench: Bench, session_id: UUID, size: int) -> Call:
    return lambda: bench.manager.get_session(session_id, workspace_id=bench.workspace_id)


def _get_state(bench: Bench, session_id: UUID, size: int) -> Call:
    return lambda: bench.manager.get_state(session_id, workspace_id=bench.workspace_id)


def _first_page(bench: Bench, session_id: UUID, size: int) -> Call:
    return lambda: bench.manager.get_turns(session_id, workspace_id=bench.workspace_id, limit=PAGE)


def _last_page(bench: Bench, session_id: UUID, size: int) -> Call:
    return lambda: bench.manager.get_turns(
        session_id, workspace_id=bench.workspace_id, limit=PAGE, after_turn=max(0, size - PAGE)
    )


def _recent_turns(bench: Bench, session_id: UUID, size: int) -> Call:
    return lambda: bench.manager.get_recent_turns(
        session_id, workspace_id=bench.workspace_id, limit=PAGE
    )


def _add_turn(bench: Bench, session_id: UUID, size: int) -> Call:
    return lambda: bench.manager.add_turn(
        session_id, workspace_id=bench.workspace_id, role=TurnRole.ASSISTANT, content="Yes."
    )


def _add_intent_seen(bench: Bench, session_id: UUID, size: int) -> Call:
    return lambda: bench.manager.add_intent_seen(
        session_id, "pricing", workspace_id=bench.workspace_id
    )


def dimensions(bench: Bench) -> tuple[Dimension, ...]:
    """Turns (must stay flat), then intents (grow with the array, shown for the record)."""
    parameters = bench.parameters
    return (
        Dimension(
            "turn_scaling",
            "turns",
            "one INSERT ... SELECT generate_series, session totals set to match, then ANALYZE",
            parameters.turn_counts,
            parameters.scaling_iterations,
            lambda bench, session_id, size: bench.add_turns_in_bulk(session_id, size),
            (
                ("get_total_tokens_used", _get_total_tokens_used),
                ("get_session", _get_session),
                (f"get_turns(limit={PAGE})", _first_page),
                (f"get_turns(limit={PAGE}, after_turn=n-{PAGE}) (latest page)", _last_page),
                (f"get_recent_turns(limit={PAGE})", _recent_turns),
                ("add_turn (next number = max + 1)", _add_turn),
            ),
        ),
        Dimension(
            "state_scaling",
            "intents in session_state.intents_seen",
            "one UPDATE setting intents_seen to a jsonb_agg over generate_series",
            parameters.intent_counts,
            parameters.state_iterations,
            lambda bench, session_id, size: bench.add_intents_in_bulk(session_id, size),
            (
                ("get_total_tokens_used (control: session row only)", _get_total_tokens_used),
                ("get_state", _get_state),
                ("get_session (state embedded)", _get_session),
                ("add_intent_seen", _add_intent_seen),
            ),
        ),
    )


def run(bench: Bench, report: Report) -> None:
    """Time every probe of each dimension at each size and print one table per dimension."""
    for dimension in dimensions(bench):
        _run_dimension(bench, dimension, report)


def _run_dimension(bench: Bench, dimension: Dimension, report: Report) -> None:
    sizes = dimension.sizes
    sessions = {size: _session_of_size(bench, dimension, size) for size in sizes}
    # Probe by probe, reads first: writing probes come last so they do not resize the
    # sessions the reads see.
    rows = [
        _row(name, {size: _time(bench, dimension, probe, sessions[size], size) for size in sizes})
        for name, probe in dimension.probes
    ]
    report.table(
        dimension.key,
        f"Cost by session size ({', '.join(f'{size:,}' for size in sizes)} {dimension.what})",
        rows,
        notes=(
            f"ratio: median at {sizes[-1]:,} / median at {sizes[0]:,}; FLAT up to "
            f"{FLAT_RATIO_LIMIT:g}x, WARN above. Sessions filled by {dimension.filled_by}; "
            f"{dimension.iterations} timed calls per operation and size.",
        ),
    )


def _session_of_size(bench: Bench, dimension: Dimension, size: int) -> UUID:
    session = bench.new_session()
    dimension.fill(bench, session.id, size)
    return session.id


def _time(bench: Bench, dimension: Dimension, probe: Probe, session_id: UUID, size: int) -> Latency:
    return measure_latency(
        probe(bench, session_id, size),
        iterations=dimension.iterations,
        warmup=max(1, dimension.iterations // 10),
    )


def _row(name: str, by_size: dict[int, Latency]) -> Row:
    row: Row = {"operation": name}
    for size, latency in by_size.items():
        row[f"median_ms_{size}"] = latency.median_ms
        row[f"p95_ms_{size}"] = latency.p95_ms
    ratio = by_size[max(by_size)].median_ms / by_size[min(by_size)].median_ms
    row["ratio"] = ratio
    row["verdict"] = "FLAT" if ratio <= FLAT_RATIO_LIMIT else "WARN"
    return row
