"""The reads and the data lifecycle: a page of list_sessions at 100 and 100,000 sessions, the
full history of 10,000 turns next to a raw psycopg fetch of the same rows, and purge.

Sessions and turns are inserted in bulk (INSERT ... SELECT generate_series, then ANALYZE),
each table in a workspace of its own. Run it alone with `python -m benchmarks.lifecycle`.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from agent_engine import _schema as schema
from benchmarks.context import Bench
from benchmarks.report import Report, Row
from benchmarks.timing import Call, Latency, measure_latency

SESSION_COUNTS = (100, 100_000)
HISTORY_TURNS = 10_000
PURGED_SESSIONS = 2_000
TURNS_PER_PURGED_SESSION = 10
PAGE = 50

_BULK_SESSIONS = sql.SQL(
    """
    with made as (
        insert into {sessions} (workspace_id, agent_id, conversation_id, contact_id, status,
                                current_mode, last_activity_at)
        select %(workspace_id)s, 'bench', gen_random_uuid(), gen_random_uuid(), %(status)s,
               'greeting', %(since)s::timestamptz - n * interval '1 second'
          from generate_series(1, %(count)s) as n
        returning id, workspace_id
    )
    insert into {states} (session_id, workspace_id) select id, workspace_id from made
    """
)
_BULK_TURNS_OF_WORKSPACE = sql.SQL(
    """
    insert into {turns} (session_id, workspace_id, turn_number, role, content, tokens_used)
    select s.id, s.workspace_id, n, 'user', 'bulk message ' || n, 10
      from {sessions} as s, generate_series(1, %(count)s) as n
     where s.workspace_id = %(workspace_id)s
    """
)


def run(bench: Bench, report: Report) -> None:
    """Time list pages, the full history and purge; one table each."""
    report.table(
        "list_sessions",
        f"list_sessions: a page of {PAGE} at {' and '.join(f'{n:,}' for n in SESSION_COUNTS)} "
        "sessions in the workspace",
        _list_rows(bench),
        notes=(
            "Median and p95 wall latency in ms of the first page and of a page reached by "
            "the cursor of the first; ratio: median at the largest / at the smallest count. "
            "Keyset pagination on (workspace_id, last_activity_at desc, id desc).",
        ),
    )
    report.table(
        "full_history",
        f"Reading a history of {HISTORY_TURNS:,} turns: get_turns() vs a raw psycopg fetch",
        [_history_row(bench)],
        notes=(
            "Median wall time in ms of 11 reads each, alternating; raw: `select * from "
            "agent_turns where session_id = ... and workspace_id = ... order by turn_number` "
            "fetched into dicts (psycopg's dict_row); library: get_turns() into AgentTurn "
            "models. ratio: library / raw.",
        ),
    )
    report.table(
        "purge",
        f"purge_sessions: {PURGED_SESSIONS:,} closed sessions of "
        f"{TURNS_PER_PURGED_SESSION} turns each",
        [_purge_row(bench)],
        notes=(
            "Wall time of one purge_sessions call (batches of 1,000, each its own "
            "transaction) deleting the sessions with their state and turns.",
        ),
    )


def _insert_sessions(
    bench: Bench, workspace_id: UUID, count: int, *, status: str = "active", since: datetime
) -> None:
    arguments = {"workspace_id": workspace_id, "count": count, "status": status, "since": since}
    with psycopg.connect(bench.database.dsn) as connection:
        connection.execute(
            _BULK_SESSIONS.format(
                sessions=sql.Identifier("public", schema.SESSIONS_TABLE),
                states=sql.Identifier("public", schema.STATE_TABLE),
            ),
            arguments,
        )
        connection.commit()
        connection.autocommit = True
        connection.execute(
            sql.SQL("analyze {}").format(sql.Identifier("public", schema.SESSIONS_TABLE))
        )


def _list_rows(bench: Bench) -> list[Row]:
    iterations, warmup = bench.parameters.scaling_iterations // 10, bench.parameters.warmup
    first: dict[int, Latency] = {}
    later: dict[int, Latency] = {}
    for count in SESSION_COUNTS:
        workspace_id = uuid4()
        _insert_sessions(bench, workspace_id, count, since=datetime.now(UTC))
        first[count] = measure_latency(
            _pager(bench, workspace_id, None), iterations=iterations, warmup=warmup
        )
        cursor = bench.manager.list_sessions(workspace_id=workspace_id, limit=PAGE).next_cursor
        later[count] = measure_latency(
            _pager(bench, workspace_id, cursor), iterations=iterations, warmup=warmup
        )
        bench.remove_workspace(workspace_id)
    smallest, largest = SESSION_COUNTS[0], SESSION_COUNTS[-1]
    return [
        {
            "page": name,
            **{f"median_ms_at_{count}": latencies[count].median_ms for count in SESSION_COUNTS},
            **{f"p95_ms_at_{count}": latencies[count].p95_ms for count in SESSION_COUNTS},
            "ratio": latencies[largest].median_ms / latencies[smallest].median_ms,
        }
        for name, latencies in (("first", first), ("second (by cursor)", later))
    ]


def _pager(bench: Bench, workspace_id: UUID, cursor: str | None) -> Call:
    return lambda: bench.manager.list_sessions(workspace_id=workspace_id, limit=PAGE, cursor=cursor)


def _history_row(bench: Bench) -> Row:
    session = bench.new_session()
    bench.add_turns_in_bulk(session.id, HISTORY_TURNS)
    query = sql.SQL(
        "select * from {} where session_id = %s and workspace_id = %s order by turn_number"
    ).format(sql.Identifier("public", schema.TURNS_TABLE))
    library: list[float] = []
    raw: list[float] = []
    with psycopg.connect(bench.database.dsn, autocommit=True, row_factory=dict_row) as connection:
        for _ in range(11):
            started = time.perf_counter()
            turns = bench.manager.get_turns(session.id, workspace_id=bench.workspace_id)
            library.append(time.perf_counter() - started)
            started = time.perf_counter()
            rows = connection.execute(query, (session.id, bench.workspace_id)).fetchall()
            raw.append(time.perf_counter() - started)
    assert len(turns) == len(rows) == HISTORY_TURNS
    library_ms, raw_ms = statistics.median(library) * 1000, statistics.median(raw) * 1000
    return {
        "turns": HISTORY_TURNS,
        "library_ms": library_ms,
        "raw_ms": raw_ms,
        "ratio": library_ms / raw_ms,
    }


def _purge_row(bench: Bench) -> Row:
    workspace_id = uuid4()
    long_ago = datetime.now(UTC) - timedelta(days=365)
    _insert_sessions(bench, workspace_id, PURGED_SESSIONS, status="closed", since=long_ago)
    with psycopg.connect(bench.database.dsn, autocommit=True) as connection:
        connection.execute(
            _BULK_TURNS_OF_WORKSPACE.format(
                turns=sql.Identifier("public", schema.TURNS_TABLE),
                sessions=sql.Identifier("public", schema.SESSIONS_TABLE),
            ),
            {"workspace_id": workspace_id, "count": TURNS_PER_PURGED_SESSION},
        )
    started = time.perf_counter()
    removed = bench.manager.purge_sessions(older_than=timedelta(days=30), workspace_id=workspace_id)
    seconds = time.perf_counter() - started
    assert removed == PURGED_SESSIONS
    return {
        "sessions": removed,
        "turns": removed * TURNS_PER_PURGED_SESSION,
        "seconds": seconds,
        "sessions_per_s": removed / seconds,
    }


def main() -> int:
    """Run this section alone on a fresh database: prints its tables, writes no file."""
    from benchmarks import run as bench_run  # run imports this module: import it late

    return bench_run.main((run,), write_results=False)


if __name__ == "__main__":
    sys.exit(main())
