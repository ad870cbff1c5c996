"""Runs requests through a service-role supabase.Client (PostgREST over HTTP).

Only the wire format lives here: each request becomes one PostgREST call through
postgrest-py's builders. Single-row requests use `.single()`, which sends
`Accept: application/vnd.pgrst.object+json`, so PostgREST itself refuses (and rolls back)
a write that would touch zero or several rows with PGRST116.
"""

from __future__ import annotations

from typing import Any

import httpx
from postgrest import APIError
from postgrest.utils import sanitize_param
from supabase import Client

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
)


class PostgrestTransport:
    """The Supabase transport. Thread-safe: every call builds its own request.

    `owns_client`: close the client's HTTP connections on `close()` (true when the manager
    created the client itself).
    """

    def __init__(self, client: Client, *, owns_client: bool = False) -> None:
        self._client = client
        self._owns_client = owns_client
        # Build the lazily-created PostgREST sub-client now, not racily on first use.
        self._postgrest = client.postgrest

    def execute(self, request: Request) -> JSON | Failure:
        """Send `request` as one HTTP call; API and network errors become a Failure."""
        try:
            return self._send(request)
        except APIError as error:
            return Failure(
                code=error.code,
                message=error.message or "PostgREST reported an error without a message",
                details=None if error.details is None else str(error.details),
                hint=error.hint,
                cause=error,
            )
        except httpx.TransportError as error:
            return Failure(
                code=None,
                message=f"could not complete the request to PostgREST ({type(error).__name__})",
                unreachable=True,
                cause=error,
            )

    def close(self) -> None:
        """Close the HTTP connections if this transport owns the client."""
        if self._owns_client:
            self._postgrest.session.close()

    def _send(self, request: Request) -> JSON:
        if isinstance(request, Call):
            return self._client.rpc(request.function, dict(request.arguments)).execute().data
        if isinstance(request, Update):
            builder: Any = self._client.table(request.table).update(dict(request.values))
            return _filtered(builder, request.conditions).single().execute().data
        return self._select(request)

    def _select(self, request: Select) -> JSON:
        columns = ",".join([*request.columns, *(f"{embed.table}(*)" for embed in request.embeds)])
        builder: Any = _filtered(
            self._client.table(request.table).select(columns), request.conditions
        )
        for embed in request.embeds:
            builder = _embedded(builder, embed)
        if request.limit is not None:
            builder = builder.limit(request.limit)
        if request.single:
            return builder.single().execute().data
        return builder.execute().data


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
