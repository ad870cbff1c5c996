"""The transport seam: a request described as data, run by a transport, answered as JSON.

Every session operation is built once as a `Select`, `Update` or `Call` (table or function,
conditions, body, whether exactly one row is expected). A transport only turns that data
into its wire format (PostgREST over HTTP, or SQL over a direct connection), sends it in one
round trip, and hands back the JSON the database produced or a `Failure` carrying the
server's code. Building, parsing and error translation live outside the transports, so
they are shared by every transport, sync or async.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias, cast

from supabase import AsyncClient, Client

JSON: TypeAlias = Any
"""A decoded JSON value (or a JSONText): the edge where rows arrive before models parse them."""


@dataclass(frozen=True, slots=True)
class JSONText:
    """An answer still in JSON text, as the database wrote it.

    A transport may hand it over undecoded: an operation whose model reads JSON text parses
    it in one pass (pydantic's validate_json), where decoding to Python objects first and
    validating them after would walk the answer twice. Anything else decodes it.
    """

    text: bytes

    def decoded(self) -> JSON:
        """The JSON value (ValueError if the text is not JSON)."""
        return json.loads(self.text)


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


class TextArray(tuple[str, ...]):
    """A Call argument of SQL type text[]: PostgREST gets a JSON array (and casts it), the
    direct transport an array; a plain list would go as JSON there."""

    __slots__ = ()


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
    happened. `retryable`, when set, is the transport's own verdict and overrides the one
    derived from the code: the transport knows what the code cannot tell (an HTTP 503 from a
    gateway without a PostgREST body, a connection refused for bad credentials, a closed
    manager).
    """

    code: str | None
    message: str
    details: str | None = None
    hint: str | None = None
    unreachable: bool = False
    retryable: bool | None = None
    cause: BaseException | None = field(default=None, compare=False, repr=False)


CLOSED_MESSAGE = "the session manager is closed"
"""What every transport answers after close(): not retryable, nothing sent."""


def closed_failure(cause: BaseException | None = None) -> Failure:
    """The Failure of a call on a closed transport (the same on every transport)."""
    return Failure(code=None, message=CLOSED_MESSAGE, retryable=False, cause=cause)


def foreign_loop_failure() -> Failure:
    """The Failure of a call to an async manager from another event loop than its own.

    Its connections (sockets watched by its loop, futures, locks) belong to the loop that
    first used it while that loop runs; nothing is sent.
    """
    return Failure(
        code=None,
        message="this AsyncSessionManager belongs to another event loop (the first one that "
        "used it, still running): build one manager per event loop",
        retryable=False,
    )


class Transport(Protocol):
    """Runs one request in one round trip (one transaction) and returns JSON or a Failure."""

    def execute(self, request: Request) -> JSON | Failure:
        """Send `request`; never raises for database or network errors (returns Failure)."""
        ...

    def close(self) -> None:
        """Release connections the transport owns."""
        ...


# Redaction: a transport's errors are chained as causes, logged and rendered; the secret
# the transport holds (an API key, a database password) must not travel with them.

REDACTED = "***"
"""What a secret is replaced with."""


class RedactedError(Exception):
    """Stands in for an exception whose text showed a secret, to be chained in its place.

    Its message is the original exception's type name and text with every secret replaced
    by `***`. It has no cause or context: the original chain is what showed the secret.
    """


def redacted_text(text: str, secrets: Collection[str]) -> str:
    """`text` with each secret replaced by `***`; empty secrets are ignored.

    A secret is also found as exception messages quote it: inside a str or bytes repr (a
    line break shown as `\\n`, an accent as `\\xe9` or `\\xc3\\xa9`).
    """
    for spelling in _spellings(secrets):
        text = text.replace(spelling, REDACTED)
    return text


def redacted_cause(error: BaseException, secrets: Collection[str]) -> BaseException:
    """`error` itself if no secret shows in it, otherwise a RedactedError to chain instead.

    Looks at the str, repr, args and notes of `error` and of every exception in its
    `__cause__`/`__context__` chain (cycles included). Empty secrets are ignored. Use it on
    every exception a transport hands over as `Failure.cause`.
    """
    spellings = _spellings(secrets)
    if not any(spelling in text for text in _texts(error) for spelling in spellings):
        return error
    return RedactedError(f"{type(error).__name__}: {redacted_text(str(error), secrets)}")


def _spellings(secrets: Collection[str]) -> list[str]:
    """Each secret as written and as reprs quote it, longest first (so none is left half-masked)."""
    spellings: set[str] = set()
    for secret in secrets:
        if secret:
            encoded = secret.encode("utf-8", "surrogatepass")
            spellings.update((secret, repr(secret)[1:-1], ascii(secret)[1:-1], repr(encoded)[2:-1]))
    return sorted(spellings, key=len, reverse=True)


def _texts(error: BaseException) -> Iterator[str]:
    """The texts an exception chain shows when printed, logged or inspected."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        for part in (*current.args, *getattr(current, "__notes__", ())):
            yield str(part)
            yield repr(part)
        pending.extend(link for link in (current.__cause__, current.__context__) if link)


class AsyncTransport(Protocol):
    """The async twin of Transport: one request, one round trip, JSON or a Failure."""

    async def execute(self, request: Request) -> JSON | Failure:
        """Send `request`; never raises for database or network errors (returns Failure)."""
        ...

    async def aclose(self) -> None:
        """Release connections the transport owns."""
        ...


# What a manager accepts as its client, checked once at construction.

_FLAVOURS = {
    False: ("SessionManager", "supabase.Client", "create_admin_client", "close", "Transport"),
    True: (
        "AsyncSessionManager",
        "supabase.AsyncClient",
        "create_async_admin_client",
        "aclose",
        "AsyncTransport",
    ),
}


def as_transport(client: object) -> Transport:
    """`client` if it is a Transport; ValueError saying what to pass instead."""
    return cast(Transport, _checked_transport(client, asynchronous=False))


def as_async_transport(client: object) -> AsyncTransport:
    """`client` if it is an AsyncTransport; ValueError saying what to pass instead."""
    return cast(AsyncTransport, _checked_transport(client, asynchronous=True))


def _checked_transport(client: object, *, asynchronous: bool) -> object:
    manager, wanted, factory, close, kind = _FLAVOURS[asynchronous]
    other_manager, other_client, _, other_close, _ = _FLAVOURS[not asynchronous]
    execute = getattr(client, "execute", None)
    if callable(execute) and callable(getattr(client, close, None)):
        if inspect.iscoroutinefunction(execute) == asynchronous:
            return client
    elif not (callable(execute) and callable(getattr(client, other_close, None))) and not (
        isinstance(client, AsyncClient | Client)
    ):
        hint = (
            f" (to connect with a URL or DSN, use {manager}.from_env, from_postgres or {factory})"
            if isinstance(client, str)
            else ""
        )
        raise ValueError(
            f"client must be a {wanted} built with the service key or a {kind}, "
            f"got {type(client).__name__}{hint}"
        )
    raise ValueError(
        f"client is a {other_client} or a transport for {other_manager}; {manager} needs a "
        f"{wanted} ({factory}) or a {kind}"
    )
