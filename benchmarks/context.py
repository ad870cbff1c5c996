"""What every section gets: the manager under test, a workspace of its own, set-up helpers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from uuid import UUID, uuid4

import psycopg
from psycopg import sql

from agent_engine import AgentSessionWithState, SessionManager
from agent_engine import _schema as schema
from agent_engine._sync.postgres_transport import PostgresTransport
from benchmarks.counting import CountingConnection
from benchmarks.database import Database
from benchmarks.parameters import Parameters

AGENT_ID = "bench-agent"
COUNTER_MODE_PREFIX = "count-"
INITIAL_MODE = f"{COUNTER_MODE_PREFIX}0"
"""Sessions start here; the contention section counts in current_mode (count-1, count-2...)."""

_BULK_TURNS = sql.SQL(
    """
    insert into {turns} (session_id, workspace_id, turn_number, role, content, tokens_used)
    select %(session_id)s, %(workspace_id)s, n,
           case when n %% 2 = 1 then 'user' else 'assistant' end,
           'bulk message ' || n, %(tokens_per_turn)s
      from generate_series(1, %(count)s) as n
    """
)
_BULK_TOTALS = sql.SQL(
    """
    update {sessions}
       set turn_count = turn_count + %(count)s::integer,
           tokens_used = tokens_used + %(count)s::bigint * %(tokens_per_turn)s::bigint
     where workspace_id = %(workspace_id)s and id = %(session_id)s
    """
)
_BULK_INTENTS = sql.SQL(
    """
    update {states}
       set intents_seen = (
           select jsonb_agg(jsonb_build_object('intent', 'bulk-intent-' || n,
                                                'order', n,
                                                'seen_at', now()) order by n)
             from generate_series(1, %(count)s) as n)
     where workspace_id = %(workspace_id)s and session_id = %(session_id)s
    """
)


@dataclass(frozen=True)
class Bench:
    """The manager under test (no registry, a pool of `parameters.threads` connections)."""

    manager: SessionManager
    database: Database
    parameters: Parameters
    workspace_id: UUID = field(default_factory=uuid4)

    def new_session(self) -> AgentSessionWithState:
        """A new active session of a new conversation, in mode INITIAL_MODE."""
        return self.manager.create_session(
            workspace_id=self.workspace_id,
            agent_id=AGENT_ID,
            conversation_id=uuid4(),
            initial_mode=INITIAL_MODE,
        )

    def add_turns_in_bulk(self, session_id: UUID, count: int, *, tokens_per_turn: int = 10) -> None:
        """Give a session without turns `count` turns (1..count) and the matching totals.

        One INSERT ... SELECT generate_series instead of `count` add_turn calls, on a
        connection of its own (not counted), then ANALYZE so the planner knows the new size,
        as autovacuum would soon.
        """
        arguments = {
            "session_id": session_id,
            "workspace_id": self.workspace_id,
            "count": count,
            "tokens_per_turn": tokens_per_turn,
        }
        turns = sql.Identifier("public", schema.TURNS_TABLE)
        sessions = sql.Identifier("public", schema.SESSIONS_TABLE)
        with psycopg.connect(self.database.dsn) as connection:
            with connection.transaction():
                connection.execute(_BULK_TURNS.format(turns=turns), arguments)
                connection.execute(_BULK_TOTALS.format(sessions=sessions), arguments)
            connection.autocommit = True
            connection.execute(sql.SQL("analyze {}").format(turns))

    def add_intents_in_bulk(self, session_id: UUID, count: int) -> None:
        """Give a session without intents `count` of them (orders 1..count), in one UPDATE."""
        arguments = {"session_id": session_id, "workspace_id": self.workspace_id, "count": count}
        states = sql.Identifier("public", schema.STATE_TABLE)
        with psycopg.connect(self.database.dsn) as connection:
            connection.execute(_BULK_INTENTS.format(states=states), arguments)

    def remove_workspace(self, workspace_id: UUID) -> None:
        """Delete a workspace's sessions (a table's own workspace, once measured)."""
        with psycopg.connect(self.database.dsn) as connection:
            connection.execute(
                sql.SQL("delete from {} where workspace_id = %s").format(
                    sql.Identifier("public", schema.SESSIONS_TABLE)
                ),
                (workspace_id,),
            )

    def remove_rows(self) -> None:
        """Delete this run's sessions (their state and turns follow by cascade)."""
        with psycopg.connect(self.database.dsn) as connection:
            connection.execute(
                sql.SQL("delete from {} where workspace_id = %s").format(
                    sql.Identifier("public", schema.SESSIONS_TABLE)
                ),
                (self.workspace_id,),
            )


@contextmanager
def open_bench(database: Database, parameters: Parameters) -> Iterator[Bench]:
    """A Bench over the direct Postgres backend, its connections counted (see counting)."""
    transport = PostgresTransport.connect(
        database.dsn, pool_size=parameters.threads, connection_class=CountingConnection
    )
    with SessionManager(transport) as manager:
        bench = Bench(manager, database, parameters)
        try:
            yield bench
        finally:
            if not database.private:
                bench.remove_rows()
