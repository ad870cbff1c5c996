"""PostgREST answered by respx, to measure the Supabase client alone: no server, no network.

Each route answers one stored JSON value the way PostgREST does (an object, with PostgREST's
object media type, for a single-row read or write; the value itself for a function call),
so a call costs only what the client does: build the request, send it through httpx, read
the answer. The client is built the way the library's users build it
(`create_admin_client`: HTTP/1.1, GET retries off).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import respx
from pydantic import SecretStr
from supabase import Client

from agent_engine import Settings, create_admin_client
from agent_engine._transport import JSON, Request, Select, Update
from benchmarks.timing import Call

PROJECT_URL = "https://client-cost-benchmark.supabase.co"
"""Never contacted: respx answers every request before it leaves httpx."""
REST_URL = f"{PROJECT_URL}/rest/v1"
SERVICE_KEY = "sb_secret_client-cost-benchmark"
"""Made up, and never sent anywhere; shaped like a secret key so the client accepts it."""
OBJECT_MEDIA_TYPE = "application/vnd.pgrst.object+json"


@dataclass(frozen=True)
class MockPostgrest:
    """A service-role client whose PostgREST is a respx router."""

    router: respx.MockRouter
    client: Client

    def answer(self, request: Request, value: JSON) -> None:
        """From now on, answer `value` to whatever is sent where `request` goes."""
        method, path = _route(request)
        self.router.request(method, path).mock(return_value=_response(request, value))

    def check_same_request(self, library: Call, raw: Call) -> None:
        """Run both calls; raise RuntimeError unless they sent the same HTTP request.

        Compared: method, path, query parameters (in any order), the Accept and Prefer
        headers and the JSON body.
        """
        library()
        sent_by_library = _essentials(self.router.calls.last.request)
        raw()
        sent_raw = _essentials(self.router.calls.last.request)
        if sent_raw != sent_by_library:
            raise RuntimeError(
                f"the raw call does not send the library's request:\n"
                f"  library: {sent_by_library}\n  raw:     {sent_raw}"
            )

    def forget_calls(self) -> None:
        """Drop the calls respx recorded (it keeps every request and response)."""
        self.router.reset()


@contextmanager
def mock_postgrest() -> Iterator[MockPostgrest]:
    """A MockPostgrest with no route yet; the client's connections are closed at the end."""
    settings = Settings(supabase_url=PROJECT_URL, supabase_service_role_key=SecretStr(SERVICE_KEY))
    with respx.mock(base_url=REST_URL, assert_all_called=False) as router:
        client = create_admin_client(settings)
        try:
            yield MockPostgrest(router, client)
        finally:
            client.postgrest.session.close()


def _route(request: Request) -> tuple[str, str]:
    if isinstance(request, Update):
        return "PATCH", f"/{request.table}"
    if isinstance(request, Select):
        return "GET", f"/{request.table}"
    return "POST", f"/rpc/{request.function}"


def _response(request: Request, value: JSON) -> httpx.Response:
    single_row = isinstance(request, Update) or (isinstance(request, Select) and request.single)
    if not single_row:
        return httpx.Response(
            200, json=value, headers={"Content-Type": "application/json; charset=utf-8"}
        )
    return httpx.Response(
        200,
        json=value,
        headers={
            "Content-Type": f"{OBJECT_MEDIA_TYPE}; charset=utf-8",
            "Content-Range": "0-0/*",
        },
    )


def _essentials(request: httpx.Request) -> dict[str, Any]:
    return {
        "method": request.method,
        "path": request.url.path,
        "query": sorted(request.url.params.multi_items()),
        "accept": request.headers.get("accept"),
        "prefer": request.headers.get("prefer"),
        "body": json.loads(request.content) if request.content else None,
    }
