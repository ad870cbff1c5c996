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
DATABASE_URL_VARIABLE = "DATABASE_URL"
TIMEOUT_VARIABLE = "AGENT_ENGINE_TIMEOUT"
POOL_SIZE_VARIABLE = "AGENT_ENGINE_POOL_SIZE"

DEFAULT_POOL_SIZE = 4
"""Direct Postgres connections per process: Supabase advises a few; raise it for many threads."""

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
    """How to reach the session store: a Supabase project, a Postgres DSN, or both.

    Supabase: `supabase_url` with a key that acts as service_role. Direct Postgres:
    `database_url` (the direct connection or the Supavisor pooler string). Raises
    ConfigError (naming the variable) for a URL that is not http(s), a key that does not act
    as service_role, a DSN that is not a Postgres one, or neither way configured. `repr`/
    `str` show the key and the DSN as `**********`.
    """

    model_config = ConfigDict(frozen=True)

    supabase_url: str | None = None
    supabase_service_role_key: SecretStr | None = None
    database_url: SecretStr | None = None
    timeout: float = Field(default=10.0, gt=0)
    pool_size: int = Field(default=DEFAULT_POOL_SIZE, ge=1)

    _key_variable: str = PrivateAttr(default=SERVICE_ROLE_KEY_VARIABLE)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.supabase_url is not None:
            self._check_supabase(self.supabase_url)
        elif self.supabase_service_role_key is not None:
            raise ConfigError(f"{URL_VARIABLE} is not set", variable=URL_VARIABLE)
        if self.database_url is not None:
            _check_dsn(self.database_url.get_secret_value())
        elif self.supabase_url is None:
            raise ConfigError(
                f"set {URL_VARIABLE} and {SERVICE_ROLE_KEY_VARIABLE} (Supabase), "
                f"or {DATABASE_URL_VARIABLE} (direct Postgres)",
                variable=URL_VARIABLE,
            )
        return self

    def _check_supabase(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"{URL_VARIABLE} must be an http(s) URL such as https://<project>.supabase.co",
                variable=URL_VARIABLE,
            )
        if self.supabase_service_role_key is None:
            raise ConfigError(
                f"{SERVICE_ROLE_KEY_VARIABLE} (or {SECRET_KEY_VARIABLE}) is not set",
                variable=SERVICE_ROLE_KEY_VARIABLE,
            )
        check_service_key(
            self.supabase_service_role_key.get_secret_value(), variable=self._key_variable
        )

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, dotenv_path: str | Path | None = ".env"
    ) -> Settings:
        """Read the settings from the environment and `.env`.

        Variables: SUPABASE_URL with SUPABASE_SERVICE_ROLE_KEY (or SUPABASE_SECRET_KEY);
        DATABASE_URL; optionally AGENT_ENGINE_TIMEOUT (seconds) and AGENT_ENGINE_POOL_SIZE.
        Values come from `environ` (default: os.environ) and, for variables not set there,
        from the `.env` file (python-dotenv) if it exists; os.environ is never modified.
        """
        values = _read_environment(environ, dotenv_path)
        variable = next(
            (name for name in (SERVICE_ROLE_KEY_VARIABLE, SECRET_KEY_VARIABLE) if values.get(name)),
            SERVICE_ROLE_KEY_VARIABLE,
        )
        fields: dict[str, Any] = {
            "supabase_url": values.get(URL_VARIABLE) or None,
            "supabase_service_role_key": values.get(variable) or None,
            "database_url": values.get(DATABASE_URL_VARIABLE) or None,
        }
        if values.get(TIMEOUT_VARIABLE):
            fields["timeout"] = _parse_number(values[TIMEOUT_VARIABLE], TIMEOUT_VARIABLE, float)
        if values.get(POOL_SIZE_VARIABLE):
            fields["pool_size"] = _parse_number(values[POOL_SIZE_VARIABLE], POOL_SIZE_VARIABLE, int)
        return cls.model_validate(fields, context={"key_variable": variable})

    def model_post_init(self, context: Any) -> None:
        if isinstance(context, dict) and "key_variable" in context:
            self._key_variable = str(context["key_variable"])


def _check_dsn(dsn: str) -> None:
    """Refuse what is not a Postgres URI or conninfo string (without echoing it)."""
    if not (dsn.startswith(("postgresql://", "postgres://")) or "=" in dsn):
        raise ConfigError(
            f"{DATABASE_URL_VARIABLE} must be a Postgres connection string "
            "(postgresql://user:password@host:port/dbname)",
            variable=DATABASE_URL_VARIABLE,
        )


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


def _parse_number(raw: str, variable: str, kind: type[float] | type[int]) -> float | int:
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(
            f"{variable} must be a {kind.__name__}, got {raw!r}", variable=variable
        ) from None


def create_admin_client(settings: Settings) -> Client:
    """A service-role Supabase client for server-side use.

    It injects its own httpx client with a real timeout (supabase-py truncates float
    timeouts passed the other way) and HTTP/1.1: idle HTTP/2 connections are dropped by the
    gateway ("Server disconnected") and one HTTP/2 connection shared by threads breaks. The
    client's own retry of GET requests (sleeping 1, 2, 4 s) is off: errors say whether they
    are retryable and the caller decides. Never sign a user in with this client.
    Raises ConfigError if the settings name no Supabase project.
    """
    if settings.supabase_url is None or settings.supabase_service_role_key is None:
        raise ConfigError(f"{URL_VARIABLE} is not set", variable=URL_VARIABLE)
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
