"""Runs requests through a service-role supabase.Client (PostgREST over HTTP).

Only the wire format lives here: each request becomes one PostgREST call through
postgrest-py's builders. Single-row requests use `.single()`, which sends
`Accept: application/vnd.pgrst.object+json`, so PostgREST itself refuses (and rolls back)
a write that would touch zero or several rows with PGRST116.

The transport sends the request postgrest-py built and reads the HTTP answer itself:
postgrest-py's APIError drops the HTTP status, which is all a gateway's error page (or a
`{"message": ...}` without a code) says, and its `execute()` hands back an HTML page or an
empty body as if it were data. Every outcome is JSON or a Failure; no httpx or decoding
exception escapes, and no Failure carries the client's key.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import httpx
from postgrest import APIError, SyncPostgrestClient
from postgrest.base_request_builder import RequestConfig
from postgrest.exceptions import APIErrorFromJSON, generate_default_error_message
from postgrest.utils import sanitize_param
from pydantic import ValidationError
from supabase import Client

from agent_engine.config import is_sendable_key
from agent_engine.errors import ConfigError
from agent_engine.transport import (
    JSON,
    AnyOf,
    Call,
    Condition,
    Embed,
    Equals,
    Failure,
    GreaterThan,
    OneOf,
    Request,
    Select,
    Update,
    closed_failure,
    redacted_cause,
    redacted_text,
)

_GATEWAY_STATUSES = frozenset({429, 502, 503, 504, 520})
"""Statuses that gateways in front of PostgREST (Cloudflare, Kong, Supavisor) answer for a
passing condition, with a body of their own rather than a PostgREST code."""

_TOO_MANY_REQUESTS = 429

_HTTPX_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.CookieConflict, httpx.StreamError)
"""Every exception httpx defines (StreamError, a RuntimeError, is caught before the handler
of the closed client's RuntimeError)."""

_LOCAL_TRANSPORT_ERRORS = (httpx.LocalProtocolError, httpx.UnsupportedProtocol)
"""Transport errors that this side caused (an illegal header, a URL scheme httpx cannot
speak): sending the same request again fails the same way."""

_JSON_NAMES: dict[type, str] = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "number",
    float: "number",
    type(None): "null",
}


class PostgrestTransport:
    """The Supabase transport. Thread-safe: every call builds its own request.

    `owns_client`: close the client's HTTP connections on `close()` (true when the manager
    created the client itself). After `close()` every call is a non-retryable Failure saying
    the manager is closed, and nothing is sent, whoever owns the client. Raises ConfigError
    (without the key) if the client's key cannot be sent in an HTTP header.
    """

    def __init__(self, client: Client, *, owns_client: bool = False) -> None:
        self._client = client
        self._owns_client = owns_client
        self._closed = False
        # Build the lazily-created PostgREST sub-client now, not racily on first use.
        self._postgrest = _postgrest_of(client)

    def execute(self, request: Request) -> JSON | Failure:
        """Send `request` as one HTTP call; API, network and decoding errors become a Failure."""
        if self._closed:
            return closed_failure()
        try:
            # Sent once: postgrest-py's own retry of GETs sleeps 1, 2, 4 s, past any timeout;
            # a retryable Failure lets the caller decide instead.
            response = self._prepared(request).send(httpx.Headers())
        except _HTTPX_ERRORS as error:
            return self._redacted(_exception_failure(error))
        except RuntimeError as error:
            # httpx's "Cannot send a request, as the client has been closed": the manager
            # was closed meanwhile, or the owner of a client passed in closed it.
            if not self._postgrest.session.is_closed:
                raise
            return self._redacted(_closed_client_failure(error, manager_closed=self._closed))
        outcome = _answer(request, response)
        return self._redacted(outcome) if isinstance(outcome, Failure) else outcome

    def close(self) -> None:
        """Refuse every later call; close the HTTP connections if this transport owns them."""
        self._closed = True
        if self._owns_client:
            self._postgrest.session.close()

    def _prepared(self, request: Request) -> RequestConfig[httpx.Client]:
        """The HTTP request postgrest-py's builders make of `request`, not yet sent."""
        builder: Any
        if isinstance(request, Call):
            builder = self._client.rpc(request.function, dict(request.arguments))
        elif isinstance(request, Update):
            builder = self._client.table(request.table).update(dict(request.values))
            builder = _filtered(builder, request.conditions).single()
        else:
            builder = self._select(request)
        config: RequestConfig[httpx.Client] = builder.request
        return config

    def _select(self, request: Select) -> Any:
        columns = ",".join([*request.columns, *(f"{embed.table}(*)" for embed in request.embeds)])
        builder: Any = _filtered(
            self._client.table(request.table).select(columns), request.conditions
        )
        for embed in request.embeds:
            builder = _embedded(builder, embed)
        if request.limit is not None:
            builder = builder.limit(request.limit)
        return builder.single() if request.single else builder

    def _redacted(self, failure: Failure) -> Failure:
        """`failure` without the client's key in its texts or its cause."""
        secrets = self._secrets()
        return replace(
            failure,
            message=redacted_text(failure.message, secrets),
            details=None if failure.details is None else redacted_text(failure.details, secrets),
            hint=None if failure.hint is None else redacted_text(failure.hint, secrets),
            cause=None if failure.cause is None else redacted_cause(failure.cause, secrets),
        )

    def _secrets(self) -> list[str]:
        """The key and the credentials actually sent, read now: an auth event can swap them."""
        secrets = [self._client.supabase_key]
        for headers in (self._postgrest.headers, self._postgrest.session.headers):
            authorization = headers.get("authorization", "")
            secrets += [headers.get("apikey", ""), authorization]
            secrets.append(authorization.removeprefix("Bearer "))
        return secrets


def _postgrest_of(client: Client) -> SyncPostgrestClient:
    """`client.postgrest`; ConfigError if its key cannot be sent, before anything is sent.

    httpx refuses such a key only when sending (h11's "Illegal header value" quoting it,
    which httpcore logs at DEBUG level) or while building the sub-client (a
    UnicodeEncodeError holding it): neither may happen with the key in it.
    """
    problem: BaseException | None = None
    if is_sendable_key(client.supabase_key):
        try:
            return client.postgrest
        except UnicodeEncodeError as error:  # a non-ASCII value among the client's headers
            problem = redacted_cause(error, [client.supabase_key])
    # Raised outside the handler, so the original error is not kept as __context__ either.
    raise ConfigError(
        "the Supabase client's API key or headers cannot be sent over HTTP: a key is visible "
        "ASCII only (look for a line break, a space or an accent copied with it)"
    ) from problem


def _exception_failure(error: Exception) -> Failure:
    """What an httpx exception means: network and timeouts may pass, local mistakes do not."""
    if isinstance(error, httpx.HTTPStatusError):
        # Only an event hook of the user's client raises it (the body is gone by then).
        message = f"the HTTP client refused the answer ({type(error).__name__})"
        return _without_code(
            Failure(code=None, message=message, cause=error), error.response.status_code
        )
    passing = isinstance(error, httpx.TransportError) and not isinstance(
        error, _LOCAL_TRANSPORT_ERRORS
    )
    if passing:
        message = f"could not complete the request to PostgREST ({type(error).__name__})"
    else:
        message = f"the request to PostgREST could not be made or read ({type(error).__name__})"
    # A lost connection or a timeout leaves a write's fate unknown: `unreachable`.
    return Failure(code=None, message=message, unreachable=passing, retryable=passing, cause=error)


def _closed_client_failure(error: RuntimeError, *, manager_closed: bool) -> Failure:
    if manager_closed:
        return closed_failure(error)
    message = "the Supabase client's HTTP client is closed"
    return Failure(code=None, message=message, retryable=False, cause=error)


def _answer(request: Request, response: httpx.Response) -> JSON | Failure:
    """The JSON answer of the shape `request` promises, or a Failure saying what came instead."""
    if not response.is_success:
        return _error_failure(response)
    if response.status_code == 204 and isinstance(request, Call):
        return None  # a void function; a Select or an Update always answers a body
    try:
        answer = json.loads(response.content)
    except ValueError as error:  # JSONDecodeError, or bytes that are not text at all
        return _unreadable(response, "is not JSON", error)
    expected = _expected_type(request)
    if expected is not None and not isinstance(answer, expected):
        got, wanted = _json_name(type(answer)), _json_name(expected)
        return _unreadable(response, f"is a JSON {got} where a JSON {wanted} was expected")
    return answer


def _expected_type(request: Request) -> type[dict[str, Any]] | type[list[Any]] | None:
    if isinstance(request, Update) or (isinstance(request, Select) and request.single):
        return dict
    if isinstance(request, Select):
        return list
    return None  # a function's result may be any JSON: its parser checks it


def _json_name(kind: type) -> str:
    return _JSON_NAMES.get(kind, kind.__name__)


def _unreadable(response: httpx.Response, what: str, cause: Exception | None = None) -> Failure:
    # A proxy's page or a truncated body, unchanged if asked again: not retryable.
    content_type = response.headers.get("content-type", "no content type")
    return Failure(
        code=None,
        message=f"the answer (HTTP {response.status_code}, {content_type}) {what}",
        retryable=False,
        cause=cause,
    )


def _error_failure(response: httpx.Response) -> Failure:
    """An error answer, read the way postgrest-py reads it, with the HTTP status kept."""
    try:
        error = APIError(dict(APIErrorFromJSON.model_validate_json(response.content)))
    except ValidationError:
        # Not PostgREST's JSON (an HTML page, text, an empty body): postgrest-py takes the
        # Proxy-Status header's code, else the status as code, and the body as details.
        error = APIError(generate_default_error_message(response))
    failure = Failure(
        code=error.code or None,
        message=error.message or "PostgREST reported an error without a message",
        details=None if error.details is None else str(error.details),
        hint=error.hint,
        cause=error,
    )
    # postgrest-py's stand-in code for a body without one is the status itself.
    if failure.code is not None and failure.code != str(response.status_code):
        return failure  # PostgREST's own code decides, as on every transport
    return _without_code(failure, response.status_code)


def _without_code(failure: Failure, status: int) -> Failure:
    """`failure` of an answer without a PostgREST code: the HTTP status decides and is named."""
    passing = status in _GATEWAY_STATUSES
    return replace(
        failure,
        message=f"{failure.message} (HTTP {status})",
        # Refused before it ran (429), or the gateway lost the answer and the write's fate.
        unreachable=passing and status != _TOO_MANY_REQUESTS,
        retryable=True if passing else None,
    )


def _filtered(builder: Any, conditions: tuple[Condition, ...], prefix: str = "") -> Any:
    for condition in conditions:
        if isinstance(condition, Equals):
            builder = builder.eq(prefix + condition.column, condition.value)
        elif isinstance(condition, GreaterThan):
            builder = builder.gt(prefix + condition.column, condition.value)
        elif isinstance(condition, OneOf):
            builder = builder.in_(prefix + condition.column, condition.values)
        else:
            builder = builder.or_(_any_of(condition))
    return builder


def _embedded(builder: Any, embed: Embed) -> Any:
    builder = _filtered(builder, embed.conditions, prefix=f"{embed.table}.")
    if embed.order_by is not None:
        builder = builder.order(embed.order_by, foreign_table=embed.table)
    if embed.limit is not None:
        builder = builder.limit(embed.limit, foreign_table=embed.table)
    return builder


def _any_of(condition: AnyOf) -> str:
    """PostgREST's logical-tree syntax: `and(a.eq.x,b.in.(y,z)),and(...)`."""
    branches = []
    for branch in condition.branches:
        parts = []
        for part in branch:
            if isinstance(part, Equals):
                parts.append(f"{part.column}.eq.{sanitize_param(part.value)}")
            else:
                values = ",".join(sanitize_param(value) for value in part.values)
                parts.append(f"{part.column}.in.({values})")
        branches.append(f"and({','.join(parts)})")
    return ",".join(branches)
