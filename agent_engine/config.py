"""Settings, the service-key check, and the admin Supabase client built from them.

The session store writes with the service role, so a wrong key must fail at start-up with a
message naming the variable, never later with a 42501 in the middle of a conversation. The
key itself never appears in a message, repr or log.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, model_validator
from supabase import Client, ClientOptions, create_client

from agent_engine.errors import ConfigError

URL_VARIABLE = "SUPABASE_URL"
SERVICE_ROLE_KEY_VARIABLE = "SUPABASE_SERVICE_ROLE_KEY"
SECRET_KEY_VARIABLE = "SUPABASE_SECRET_KEY"  # noqa: S105 (a variable name)
TIMEOUT_VARIABLE = "AGENT_ENGINE_TIMEOUT"

_SECRET_KEY_PREFIX = "sb_secret_"  # noqa: S105 (a key prefix)
_PUBLISHABLE_KEY_PREFIX = "sb_publishable_"


def check_service_key(key: str, *, variable: str) -> None:
    """Accept a key that acts as service_role; raise ConfigError naming `variable` otherwise.

    Accepted: a new secret key (`sb_secret_...`) or a legacy JWT whose `role` claim is
    `service_role`. The JWT's signature is not checked here (the server does that); the claim
    is read only to refuse an anon or authenticated key early. Messages never contain the key.
    """
    if key.startswith(_SECRET_KEY_PREFIX) and len(key) > len(_SECRET_KEY_PREFIX):
        return
    if key.startswith(_PUBLISHABLE_KEY_PREFIX):
        raise ConfigError(
            f"{variable} holds a publishable key (sb_publishable_...), which is meant for "
            "browsers and mobile apps; the session store needs the secret key (sb_secret_...) "
            "or the legacy service_role JWT",
            variable=variable,
        )
    role = _jwt_role(key)
    if role == "service_role":
        return
    if role is not None:
        raise ConfigError(
            f"{variable} holds a JWT for role {role!r}; the session store needs the "
            "service_role key (or a secret key, sb_secret_...)",
            variable=variable,
        )
    raise ConfigError(
        f"{variable} is neither a secret key (sb_secret_...) nor a service_role JWT",
        variable=variable,
    )


def _jwt_role(token: str) -> str | None:
    """The `role` claim of a JWT-shaped string, or None if it is not a readable JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    role = claims.get("role") if isinstance(claims, dict) else None
    return role if isinstance(role, str) else None


class Settings(BaseModel):
    """Where the Supabase project is and how to reach it as service_role.

    Raises ConfigError (naming the variable) for a URL that is not http(s) or a key that does
    not act as service_role. `repr`/`str` show the key as `**********`.
    """

    model_config = ConfigDict(frozen=True)

    supabase_url: str
    supabase_service_role_key: SecretStr
    timeout: float = Field(default=10.0, gt=0)

    _key_variable: str = PrivateAttr(default=SERVICE_ROLE_KEY_VARIABLE)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        parts = urlsplit(self.supabase_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"{URL_VARIABLE} must be an http(s) URL such as https://<project>.supabase.co",
                variable=URL_VARIABLE,
            )
        check_service_key(
            self.supabase_service_role_key.get_secret_value(), variable=self._key_variable
        )
        return self

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, dotenv_path: str | Path | None = ".env"
    ) -> Settings:
        """Read SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY (or SUPABASE_SECRET_KEY).

        Values come from `environ` (default: os.environ) and, for variables not set there,
        from the `.env` file (python-dotenv) if it exists; os.environ is never modified.
        AGENT_ENGINE_TIMEOUT optionally sets the request timeout in seconds.
        """
        values = _read_environment(environ, dotenv_path)
        url = values.get(URL_VARIABLE)
        if not url:
            raise ConfigError(f"{URL_VARIABLE} is not set", variable=URL_VARIABLE)
        variable = next(
            (name for name in (SERVICE_ROLE_KEY_VARIABLE, SECRET_KEY_VARIABLE) if values.get(name)),
            None,
        )
        if variable is None:
            raise ConfigError(
                f"{SERVICE_ROLE_KEY_VARIABLE} (or {SECRET_KEY_VARIABLE}) is not set",
                variable=SERVICE_ROLE_KEY_VARIABLE,
            )
        fields: dict[str, Any] = {
            "supabase_url": url,
            "supabase_service_role_key": values[variable],
        }
        if values.get(TIMEOUT_VARIABLE):
            fields["timeout"] = _parse_timeout(values[TIMEOUT_VARIABLE])
        return cls.model_validate(fields, context={"key_variable": variable})

    def model_post_init(self, context: Any) -> None:
        if isinstance(context, dict) and "key_variable" in context:
            self._key_variable = str(context["key_variable"])


def _read_environment(
    environ: Mapping[str, str] | None, dotenv_path: str | Path | None
) -> dict[str, str]:
    values: dict[str, str] = {}
    if dotenv_path is not None and Path(dotenv_path).is_file():
        values.update(
            {name: value for name, value in dotenv_values(dotenv_path).items() if value is not None}
        )
    values.update(os.environ if environ is None else environ)
    return values


def _parse_timeout(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(
            f"{TIMEOUT_VARIABLE} must be a number of seconds, got {raw!r}",
            variable=TIMEOUT_VARIABLE,
        ) from None


def create_admin_client(settings: Settings) -> Client:
    """A service-role Supabase client for server-side use.

    It injects its own httpx client with a real timeout (supabase-py truncates float
    timeouts passed the other way) and HTTP/1.1: idle HTTP/2 connections are dropped by the
    gateway ("Server disconnected") and one HTTP/2 connection shared by threads breaks. The
    client's own retry of GET requests (sleeping 1, 2, 4 s) is off: errors say whether they
    are retryable and the caller decides. Never sign a user in with this client.
    """
    http_client = httpx.Client(http2=False, timeout=httpx.Timeout(settings.timeout))
    options = ClientOptions(
        httpx_client=http_client,
        auto_refresh_token=False,
        persist_session=False,
        postgrest_client_retry=False,
    )
    return create_client(
        settings.supabase_url, settings.supabase_service_role_key.get_secret_value(), options
    )
