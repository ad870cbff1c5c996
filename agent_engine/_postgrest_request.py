"""The Supabase transport's requests and its reading of answers, shared by its twins.

Each request becomes one PostgREST call through postgrest-py's builders. Single-row
requests use `.single()`, which sends `Accept: application/vnd.pgrst.object+json`, so
PostgREST itself refuses (and rolls back) a write that would touch zero or several rows
with PGRST116.

The transports send the request postgrest-py built and read the HTTP answer here:
postgrest-py's APIError drops the HTTP status, which is all a gateway's error page (or a
`{"message": ...}` without a code) says, and its `execute()` hands back an HTML page or an
empty body as if it were data. Every outcome is JSON or a Failure; no httpx or decoding
exception escapes, and no Failure carries the client's key.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, overload

import httpx
from postgrest import APIError, AsyncPostgrestClient, SyncPostgrestClient
from postgrest.base_request_builder import RequestConfig
from postgrest.exceptions import APIErrorFromJSON, generate_default_error_message
from postgrest.utils import sanitize_param
from pydantic import ValidationError
from supabase import AsyncClient, Client

from agent_engine._errors import ConfigError
from agent_engine._transport import (
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
from agent_engine.settings import is_sendable_key

_GATEWAY_STATUSES = frozenset({429, 502, 503, 504, 520})
"""Statuses that gateways in front of PostgREST (Cloudflare, Kong, Supavisor) answer for a
passing condition, with a body of their own rather than a PostgREST code."""

_TOO_MANY_REQUESTS = 429

HTTPX_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.CookieConflict, httpx.StreamError)
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


def prepared(client: Client | AsyncClient, request: Request) -> RequestConfig[Any]:
    """The HTTP request postgrest-py's builders make of `request`, not yet sent."""
    builder: Any
    if isinstance(request, Call):
        builder = client.rpc(request.function, dict(request.arguments))
    elif isinstance(request, Update):
        builder = client.table(request.table).update(dict(request.values))
        builder = _filtered(builder, request.conditions).single()
    else:
        builder = _select(client, request)
    config: RequestConfig[Any] = builder.request
    return config


def _select(client: Client | AsyncClient, request: Select) -> Any:
    columns = ",".join([*request.columns, *(f"{embed.table}(*)" for embed in request.embeds)])
    builder: Any = _filtered(client.table(request.table).select(columns), request.conditions)
    for embed in request.embeds:
        builder = _embedded(builder, embed)
    if request.limit is not None:
        builder = builder.limit(request.limit)
    return builder.single() if request.single else builder


def redacted(failure: Failure, secrets: list[str]) -> Failure:
    """`failure` without any of `secrets` in its texts or its cause."""
    return replace(
        failure,
        message=redacted_text(failure.message, secrets),
        details=None if failure.details is None else redacted_text(failure.details, secrets),
        hint=None if failure.hint is None else redacted_text(failure.hint, secrets),
        cause=None if failure.cause is None else redacted_cause(failure.cause, secrets),
    )


def secrets_of(
    client: Client | AsyncClient, postgrest: SyncPostgrestClient | AsyncPostgrestClient
) -> list[str]:
    """The key and the credentials actually sent, read now: an auth event can swap them."""
    secrets = [client.supabase_key]
    for headers in (postgrest.headers, postgrest.session.headers):
        authorization = headers.get("authorization", "")
        secrets += [headers.get("apikey", ""), authorization]
        secrets.append(authorization.removeprefix("Bearer "))
    return secrets


@overload
def postgrest_of(client: Client) -> SyncPostgrestClient: ...
@overload
def postgrest_of(client: AsyncClient) -> AsyncPostgrestClient: ...
def postgrest_of(client: Client | AsyncClient) -> SyncPostgrestClient | AsyncPostgrestClient:
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


def exception_failure(error: Exception) -> Failure:
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


def closed_client_failure(error: RuntimeError, *, manager_closed: bool) -> Failure:
    """The Failure of a call whose HTTP client was closed (by the manager or its owner)."""
    if manager_closed:
        return closed_failure(error)
    message = "the Supabase client's HTTP client is closed"
    return Failure(code=None, message=message, retryable=False, cause=error)


def answer(request: Request, response: httpx.Response) -> JSON | Failure:
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
