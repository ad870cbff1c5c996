"""Prepared mode of the direct transport: each statement prepared once per connection, by
name, then only executed; shared by the transport's twins.

A statement's first call on a connection is one simple-protocol message that sets the
session's timeout, prepares the statement under a name of this connection's and executes it
with its values quoted in (`set statement_timeout = N; prepare agent_engine_1 as ...; execute
agent_engine_1(...)`). Later calls send only the name and the values as text (Bind and
Execute of the extended protocol): no SQL to parse or plan, nothing to quote, no cursor. A
call whose time left differs from the session's timeout (a new connection, a call that
waited for one) sends the setting and an EXECUTE in one message instead. Either way one
round trip.

The message runs in one implicit transaction: if its statement fails, the setting is rolled
back, so the timeout is unknown until the message succeeds; a PREPARE is not transactional
and outlives the rollback. Names are numbered per connection and never reused, so a PREPARE
whose answer was lost (an interrupted call) can never clash with a later one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from weakref import WeakKeyDictionary

from psycopg import pq
from psycopg.pq.abc import PGconn, PGresult

from agent_engine._postgres_exchange import Message
from agent_engine._postgres_sql import FAILED, Parameter, Statement, array_text, literals

_OK = int(pq.ExecStatus.COMMAND_OK)
_NO_SUCH_STATEMENT = b"26000"


@dataclass(slots=True)
class PreparedCall:
    """One call's message in prepared mode, and what it sets up on the session."""

    message: Message
    text: bytes
    """The `Statement.text` it runs."""
    name: bytes
    prepares: bool
    """Whether the message prepares the statement (its first call on the connection)."""
    timeout: int | None
    """The session timeout the message sets, in ms; None: it sets none."""


@dataclass(slots=True)
class PreparedSession:
    """What prepared mode set up on one connection's session, as far as it knows."""

    timeout: int | None = None
    """The session's statement_timeout in ms; None: unknown (new, or a change in flight)."""
    names: dict[bytes, bytes] = field(default_factory=dict)
    """The name each statement (its `Statement.text`) is prepared under."""
    prepares_sent: int = 0
    """How many PREPAREs were sent: the next one's name is numbered after them."""

    def call(
        self,
        statement: Statement,
        parameters: Sequence[Parameter],
        milliseconds: int,
        pgconn: PGconn,
    ) -> PreparedCall:
        """The message that runs `statement` with `parameters` within `milliseconds`."""
        name = self.names.get(statement.text)
        if name is not None and self.timeout == milliseconds:
            values = [_text_value(value) for value in parameters]
            return PreparedCall((name, values), statement.text, name, False, None)
        prepares = name is None
        if name is None:
            self.prepares_sent += 1
            name = b"agent_engine_%d" % self.prepares_sent
        self.timeout = None  # unknown until the message's transaction commits
        message = b"set statement_timeout = %d; " % milliseconds
        if prepares:
            message += b"prepare %s as %s; " % (name, statement.prepared_text)
        arguments = literals(parameters, pgconn)
        message += b"execute " + name
        if arguments:
            message += b"(" + b", ".join(arguments) + b")"
        return PreparedCall(message, statement.text, name, prepares, milliseconds)

    def settle(self, call: PreparedCall, results: Sequence[PGresult]) -> bool:
        """Record what `call`'s message set up, from its results (an error ends them).

        True if it ran nothing because its statement was gone: something dropped the
        session's statements (DEALLOCATE, DISCARD ALL), so they are forgotten, to be
        prepared again by messages that also set the timeout (which DISCARD ALL resets),
        and the call can be sent again at once.
        """
        last = results[-1]
        if call.prepares and len(results) >= 2 and results[1].status == _OK:
            self.names[call.text] = call.name
        if last.status != FAILED:
            if call.timeout is not None:
                self.timeout = call.timeout
            return False
        if call.prepares or last.error_field(pq.DiagnosticField.SQLSTATE) != _NO_SUCH_STATEMENT:
            return False
        self.names.clear()
        return True


class PreparedSessions:
    """The PreparedSession of each connection of a prepared-mode transport."""

    def __init__(self) -> None:
        self._sessions: WeakKeyDictionary[object, PreparedSession] = WeakKeyDictionary()

    def of(self, connection: object) -> PreparedSession:
        """`connection`'s session (a new connection: nothing known)."""
        session = self._sessions.get(connection)
        if session is None:
            session = self._sessions[connection] = PreparedSession()
        return session


def _text_value(value: Parameter) -> bytes | None:
    """A bound value in the protocol's text format."""
    if value is None:
        return None
    return (value if isinstance(value, str) else array_text(value)).encode()
