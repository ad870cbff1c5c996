"""PostgREST's error answer, as its `Error.hs` makes it: one builder for the unit suites'
canned responses and the emulator's answers."""

from __future__ import annotations

import json

import httpx

JSON_CONTENT_TYPE = "application/json; charset=utf-8"


def error_response(
    status: int,
    code: str,
    message: str,
    details: str | None = None,
    hint: str | None = None,
) -> httpx.Response:
    """A PostgREST error: always the four keys (null when empty), its code in Proxy-Status,
    and on 401 a WWW-Authenticate challenge that describes a rejected JWT (PGRST30x)."""
    headers = [("Content-Type", JSON_CONTENT_TYPE), ("Proxy-Status", f"PostgREST; error={code}")]
    if status == 401:
        rejected_jwt = code.startswith("PGRST30")
        challenge = (
            f'Bearer error="invalid_token", error_description="{message}"'
            if rejected_jwt
            else "Bearer"
        )
        headers.append(("WWW-Authenticate", challenge))
    body = {"code": code, "details": details, "hint": hint, "message": message}
    return httpx.Response(status, headers=headers, content=json.dumps(body).encode())
