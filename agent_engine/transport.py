"""The transport seam: a request described as data, run by a transport, answered as JSON.

Every session operation is built once as a `Select`, `Update` or `Call` (table or function,
conditions, body, whether exactly one row is expected). A transport only turns that data
into its wire format (PostgREST over HTTP, or SQL over a direct connection), sends it in one
round trip, and hands back the JSON the database produced or a `Failure` carrying the
server's code. Building, parsing and error translation live outside the transports, so
they are shared by every transport, sync or async.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

JSON: TypeAlias = Any
"""A decoded JSON value: the edge where rows arrive before models parse them."""

NO_ROWS_CODE = "PGRST116"
"""PostgREST's code for "exactly one row was expected, none (or several) matched". The
direct transport reports a single-row request that matched nothing with the same code, so
one translation serves both."""


@dataclass(frozen=True, slots=True)
class Equals:
    """column = value"""

    column: str
    value: str | int


@dataclass(frozen=True, slots=True)
class GreaterThan:
    """column > value"""

    column: str
    value: int


@dataclass(frozen=True, slots=True)
class OneOf:
    """column = any of values (an empty tuple matches nothing)."""

    column: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    """(c1 and c2 ...) or (c3 and ...): at least one branch holds entirely."""

    branches: tuple[tuple[Equals | OneOf, ...], ...]


Condition: TypeAlias = Equals | GreaterThan | OneOf | AnyOf


@dataclass(frozen=True, slots=True)
class Embed:
    """Rows of a child table embedded under the parent row, keyed by `table`.

    `many=False` embeds one object (a one-to-one child), `many=True` an array, optionally
    filtered, ordered ascending by `order_by` and limited.
    """

    table: str
    many: bool
    conditions: tuple[Condition, ...] = ()
    order_by: str | None = None
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class Select:
    """Read rows of `table` matching all conditions, with child rows embedded.

    `single=True` (the default): exactly one row is expected and the answer is that row as
    an object; zero rows is a Failure with NO_ROWS_CODE. `single=False`: the answer is an
    array of at most `limit` rows.
    """

    table: str
    conditions: tuple[Condition, ...]
    columns: tuple[str, ...] = ("*",)
    embeds: tuple[Embed, ...] = ()
    single: bool = True
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class Update:
    """Set `values` on exactly one row matching all conditions and return the updated row.

    Zero matching rows is a Failure with NO_ROWS_CODE and changes nothing.
    """

    table: str
    values: Mapping[str, JSON]
    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Call:
    """Call a database function with named arguments; its JSON result is the answer."""

    function: str
    arguments: Mapping[str, JSON]


Request: TypeAlias = Select | Update | Call


@dataclass(frozen=True, slots=True)
class Failure:
    """What went wrong, as the server said it: a PostgREST code or SQLSTATE, never a secret.

    `unreachable` marks failures where the request may not have reached the database or its
    answer was lost (connection refused, dropped, timed out): the write may or may not have
    happened.
    """

    code: str | None
    message: str
    details: str | None = None
    hint: str | None = None
    unreachable: bool = False
    cause: BaseException | None = field(default=None, compare=False, repr=False)


class Transport(Protocol):
    """Runs one request in one round trip (one transaction) and returns JSON or a Failure."""

    def execute(self, request: Request) -> JSON | Failure:
        """Send `request`; never raises for database or network errors (returns Failure)."""
        ...

    def close(self) -> None:
        """Release connections the transport owns."""
        ...
