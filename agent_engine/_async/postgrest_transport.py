"""Runs requests through a service-role supabase client (PostgREST over HTTP).

Only the sending lives here; what each request looks like and how an answer or an httpx
exception is read are `_postgrest_request`'s, shared by the async and the sync transport.
"""

from __future__ import annotations

import httpx
from postgrest.base_request_builder import RequestConfig
from supabase import AsyncClient

from agent_engine._postgrest_request import (
    HTTPX_ERRORS,
    answer,
    closed_client_failure,
    exception_failure,
    postgrest_of,
    prepared,
    redacted,
    secrets_of,
)
from agent_engine._transport import JSON, Failure, Request, closed_failure


class AsyncPostgrestTransport:
    """The Supabase transport: every call builds its own request.

    `owns_client`: close the client's HTTP connections on `aclose()` (true when the manager
    created the client itself). After `aclose()` every call is a non-retryable Failure
    saying the manager is closed, and nothing is sent, whoever owns the client. Raises
    ConfigError (without the key) if the client's key cannot be sent in an HTTP header.
    """

    def __init__(self, client: AsyncClient, *, owns_client: bool = False) -> None:
        self._client = client
        self._owns_client = owns_client
        self._closed = False
        # Build the lazily-created PostgREST sub-client now, not racily on first use.
        self._postgrest = postgrest_of(client)

    async def execute(self, request: Request) -> JSON | Failure:
        """Send `request` as one HTTP call; API, network and decoding errors become a Failure."""
        if self._closed:
            return closed_failure()
        try:
            # Sent once: postgrest-py's own retry of GETs sleeps 1, 2, 4 s, past any timeout;
            # a retryable Failure lets the caller decide instead.
            config: RequestConfig[httpx.AsyncClient] = prepared(self._client, request)
            response = await config.send(httpx.Headers())
        except HTTPX_ERRORS as error:
            return self._redacted(exception_failure(error))
        except RuntimeError as error:
            # httpx's "Cannot send a request, as the client has been closed": the manager
            # was closed meanwhile, or the owner of a client passed in closed it.
            if not self._postgrest.session.is_closed:
                raise
            return self._redacted(closed_client_failure(error, manager_closed=self._closed))
        outcome = answer(request, response)
        return self._redacted(outcome) if isinstance(outcome, Failure) else outcome

    async def aclose(self) -> None:
        """Refuse every later call; close the HTTP connections if this transport owns them."""
        self._closed = True
        if self._owns_client:
            await self._postgrest.session.aclose()

    def _redacted(self, failure: Failure) -> Failure:
        return redacted(failure, secrets_of(self._client, self._postgrest))
