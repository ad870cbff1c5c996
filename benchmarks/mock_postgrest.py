"""PostgREST answered by an httpx.MockTransport, to measure the Supabase client alone.

Each route answers one canned body the way PostgREST does (an object, with PostgREST's
object media type, for a single-row read or write; the value itself for a function call).
The mock sits where the socket would be: httpx builds, sends and reads every request and
response as it does on the wire, so a call costs only what the client does. The clients,
sync and async, are built with the options the library's own factories use
(`create_admin_client`: HTTP/1.1, no session handling, GET retries off); only their httpx
client's transport is the mock.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from supabase import AsyncClient, AsyncClientOptions, Client, ClientOptions, create_client

from agent_engine._transport import JSON, Request, Select, Update
from agent_engine.settings import _ADMIN_OPTIONS

PROJECT_URL = "https://client-cost-benchmark.supabase.co"
"""Never contacted: the mock answers every request before it would leave httpx."""
REST_PATH = "/rest/v1"
SERVICE_KEY = "sb_secret_client-cost-benchmark"
"""Made up, and never sent anywhere; shaped like a secret key so the client accepts it."""
OBJECT_MEDIA_TYPE = "application/vnd.pgrst.object+json"
TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class _Canned:
    headers: tuple[tuple[str, str], ...]
    content: bytes


class MockPostgrest:
    """Canned PostgREST answers by method and path, for a sync and an async service client."""

    def __init__(self) -> None:
        self._answers: dict[tuple[str, str], _Canned] = {}
        self.last_request: httpx.Request | None = None
        """The request the mock answered last (only the last one is kept)."""
        mock, timeout = httpx.MockTransport(self._handle), httpx.Timeout(TIMEOUT_SECONDS)
        http_client = httpx.Client(transport=mock, http2=False, timeout=timeout)
        self.client: Client = create_client(
            PROJECT_URL, SERVICE_KEY, ClientOptions(httpx_client=http_client, **_ADMIN_OPTIONS)
        )
        async_http_client = httpx.AsyncClient(transport=mock, http2=False, timeout=timeout)
        self.async_client = AsyncClient(
            PROJECT_URL,
            SERVICE_KEY,
            AsyncClientOptions(httpx_client=async_http_client, **_ADMIN_OPTIONS),
        )

    def answer(self, request: Request, value: JSON) -> None:
        """From now on, answer `value` to whatever is sent where `request` goes."""
        single_row = isinstance(request, Update) or (isinstance(request, Select) and request.single)
        content_type = OBJECT_MEDIA_TYPE if single_row else "application/json"
        headers = [("Content-Type", f"{content_type}; charset=utf-8")]
        if single_row:
            headers.append(("Content-Range", "0-0/*"))
        self._answers[_route(request)] = _Canned(tuple(headers), json.dumps(value).encode())

    def check_same_request(self, library: Callable[[], object], raw: Callable[[], object]) -> None:
        """Run both calls; raise RuntimeError unless they sent the same HTTP request.

        Compared: method, path, query parameters (in any order), the Accept and Prefer
        headers and the JSON body.
        """
        sent_by_library, sent_raw = (self._sent_by(call) for call in (library, raw))
        if sent_raw != sent_by_library:
            raise RuntimeError(
                f"the raw call does not send the library's request:\n"
                f"  library: {sent_by_library}\n  raw:     {sent_raw}"
            )

    def close(self) -> None:
        """Close the sync client's connections (the async client's: `aclose`)."""
        self.client.postgrest.session.close()

    async def aclose(self) -> None:
        await self.async_client.postgrest.session.aclose()

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.last_request = request
        canned = self._answers.get((request.method, request.url.path))
        if canned is None:
            return httpx.Response(404, json={"message": f"no answer for {request.url.path}"})
        return httpx.Response(200, headers=canned.headers, content=canned.content)

    def _sent_by(self, call: Callable[[], object]) -> dict[str, Any]:
        self.last_request = None
        call()
        request = self.last_request
        if request is None:
            raise RuntimeError("the call sent nothing")
        return {
            "method": request.method,
            "path": request.url.path,
            "query": sorted(request.url.params.multi_items()),
            "accept": request.headers.get("accept"),
            "prefer": request.headers.get("prefer"),
            "body": json.loads(request.content) if request.content else None,
        }


def _route(request: Request) -> tuple[str, str]:
    if isinstance(request, Update):
        return "PATCH", f"{REST_PATH}/{request.table}"
    if isinstance(request, Select):
        return "GET", f"{REST_PATH}/{request.table}"
    return "POST", f"{REST_PATH}/rpc/{request.function}"
