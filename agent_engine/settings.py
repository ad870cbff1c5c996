"""Settings, the service-key and DSN checks, and the admin Supabase client built from them.

The session store writes with the service role, so a wrong key must fail at start-up with a
message naming the variable, never later with a 42501 in the middle of a conversation. The
key and the database password never appear in a message, repr, chained cause or log.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Self
from urllib.parse import urlsplit

import httpx
from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from supabase import AsyncClient, AsyncClientOptions, Client, ClientOptions, create_client

from agent_engine._dsn import CONTROL_CHARACTER, parse_dsn
from agent_engine._errors import ConfigError

URL_VARIABLE = "SUPABASE_URL"
SERVICE_ROLE_KEY_VARIABLE = "SUPABASE_SERVICE_ROLE_KEY"
SECRET_KEY_VARIABLE = "SUPABASE_SECRET_KEY"  # noqa: S105 (a variable name)
DATABASE_URL_VARIABLE = "DATABASE_URL"
TIMEOUT_VARIABLE = "AGENT_ENGINE_TIMEOUT"
POOL_SIZE_VARIABLE = "AGENT_ENGINE_POOL_SIZE"

DEFAULT_POOL_SIZE = 4
"""Direct Postgres connections per process: Supabase advises a few; raise it for many threads."""
DEFAULT_TIMEOUT = 10.0
"""Seconds a call may take, on either transport."""
MAX_TIMEOUT = 3600.0
"""The longest timeout accepted: a call that may wait longer than an hour is a bug."""

Timeout = Annotated[float, Field(gt=0, le=MAX_TIMEOUT, allow_inf_nan=False)]
"""Seconds, finite and positive."""
PoolSize = Annotated[int, Field(strict=True, ge=1)]
"""A number of connections: an int (not a bool), at least 1."""
IdleWindow = Annotated[float, Field(ge=0, allow_inf_nan=False)]
"""Seconds a pooled connection may sit idle before its checkout pings it."""


class _Arguments(BaseModel):
    """Numbers a public function takes as keyword arguments, validated together."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def of(cls, **values: object) -> Self:
        """Validated values; raises ConfigError naming each refused argument."""
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            items = error.errors(include_url=False)
            raise ConfigError(
                "; ".join(f"{item['loc'][0]}: {item['msg']}" for item in items),
                variable=str(items[0]["loc"][0]),
            ) from error


class ConnectionLimits(_Arguments):
    """How many direct connections, and how long a call may take: from_postgres's numbers."""

    pool_size: PoolSize = DEFAULT_POOL_SIZE
    timeout: Timeout = DEFAULT_TIMEOUT
    check_idle_after: IdleWindow = 1.0


DEFAULT_MIGRATION_LOCK_TIMEOUT = 10.0
"""Seconds `migrate` waits for each lock a migration needs (a table live traffic writes to,
say) before it gives up, retryably, rather than queue that traffic behind its wait."""


class MigrationLimits(_Arguments):
    """How long apply_migrations waits for a lock."""

    lock_timeout: Timeout = DEFAULT_MIGRATION_LOCK_TIMEOUT


_SECRET_KEY_PREFIX = "sb_secret_"  # noqa: S105 (a key prefix)
_PUBLISHABLE_KEY_PREFIX = "sb_publishable_"

# A key travels in the apikey and Authorization headers: only visible ASCII can go there
# unchanged (httpx refuses non-ASCII with an error that holds the whole value, h11 refuses
# control characters echoing the header).
_HEADER_SAFE_KEY = re.compile(r"[\x21-\x7e]+")


def check_service_key(key: str, *, variable: str) -> None:
    """Accept a key that acts as service_role; raise ConfigError naming `variable` otherwise.

    Accepted: a new secret key (`sb_secret_...`) or a legacy JWT whose `role` claim is
    `service_role`, whose `alg` is not `none` and whose `exp`, if any, is in the future. The
    key must be visible ASCII without whitespace (it goes into HTTP headers as is): callers
    strip surrounding whitespace first. The JWT's signature is not checked here (the server
    does that); the claims are read only to refuse a useless key early. Messages never contain
    the key, and no exception is chained (a decoding error could hold part of it).
    """
    problem = _service_key_problem(key, variable)
    if problem is not None:
        raise ConfigError(problem, variable=variable)


def is_sendable_key(key: str) -> bool:
    """Whether `key` can travel in the apikey and Authorization headers unchanged."""
    return _HEADER_SAFE_KEY.fullmatch(key) is not None


def _service_key_problem(key: str, variable: str) -> str | None:
    """Why `key` cannot act as service_role (a message without the key), or None."""
    if not key:
        return f"{variable} is empty"
    if any(character.isspace() for character in key):
        return (
            f"{variable} contains whitespace inside the key (a line break or space pasted "
            "with it?); a key is one unbroken token"
        )
    if not is_sendable_key(key):
        return (
            f"{variable} contains a character that cannot be sent in an HTTP header "
            "(a control or non-ASCII character); copy the key again from the dashboard"
        )
    if key.startswith(_SECRET_KEY_PREFIX) and len(key) > len(_SECRET_KEY_PREFIX):
        return None
    if key.startswith(_PUBLISHABLE_KEY_PREFIX):
        return (
            f"{variable} holds a publishable key (sb_publishable_...), which is meant for "
            "browsers and mobile apps; the session store needs the secret key (sb_secret_...) "
            "or the legacy service_role JWT"
        )
    jwt = _read_jwt(key)
    neither = f"{variable} is neither a secret key (sb_secret_...) nor a service_role JWT"
    if jwt is None:
        return neither
    header, claims = jwt
    algorithm = header.get("alg")
    if not isinstance(algorithm, str):
        return neither
    if algorithm.strip().lower() == "none":
        return (
            f"{variable} holds an unsigned JWT (alg 'none'); use the service_role key "
            "from the project's API settings"
        )
    role = claims.get("role")
    if not isinstance(role, str):
        return neither
    if role != "service_role":
        return (
            f"{variable} holds a JWT for role {role[:40]!r}; the session store needs the "
            "service_role key (or a secret key, sb_secret_...)"
        )
    return _expiry_problem(claims, variable)


def _expiry_problem(claims: dict[str, Any], variable: str) -> str | None:
    """Why the JWT's `exp` claim makes it unusable, or None (a JWT without exp never expires)."""
    if "exp" not in claims:
        return None
    expiry = claims["exp"]
    # NaN and infinities are valid JSON for Python's parser but no NumericDate.
    if (
        isinstance(expiry, bool)
        or not isinstance(expiry, int | float)
        or (isinstance(expiry, float) and not math.isfinite(expiry))
    ):
        return f"{variable} holds a JWT whose exp claim is not a number of seconds"
    if expiry > time.time():
        return None
    # Dates before 1970 are not worth the overflow cases of datetime.
    when = (
        datetime.fromtimestamp(expiry, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if expiry >= 0
        else "before 1970"
    )
    return f"{variable} holds a JWT that expired ({when}); use the project's current key"


def _read_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The header and claims of a JWT-shaped string, or None if it is not a readable JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    header = _decode_jwt_part(parts[0])
    claims = _decode_jwt_part(parts[1])
    if header is None or claims is None:
        return None
    return header, claims


def _decode_jwt_part(part: str) -> dict[str, Any] | None:
    """A base64url-encoded JSON object, or None. Never raises: the errors quote the input."""
    try:
        decoded = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    # RecursionError: deeply nested JSON in a hostile payload.
    except (binascii.Error, ValueError, RecursionError):
        return None
    return decoded if isinstance(decoded, dict) else None


def _supabase_url_problem(url: str) -> str | None:
    """Why `url` cannot be the project URL (a message without the URL), or None."""
    expected = f"{URL_VARIABLE} must be an http(s) URL such as https://<project>.supabase.co"
    if CONTROL_CHARACTER.search(url) or any(character.isspace() for character in url):
        return f"{URL_VARIABLE} contains whitespace or control characters; {expected}"
    try:
        parts = urlsplit(url)
        # .port raises for a port that is not a number (its message quotes the URL).
        _ = parts.port
    except ValueError:
        return expected
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return expected
    if "@" in parts.netloc:
        # A key or a password in the URL would end up in logs of every request's URL.
        return (
            f"{URL_VARIABLE} must not carry credentials (user:password@); the key goes in "
            f"{SERVICE_ROLE_KEY_VARIABLE} or {SECRET_KEY_VARIABLE}"
        )
    return None


class Settings(BaseModel):
    """How to reach the session store: a Supabase project, a Postgres DSN, or both.

    Supabase: `supabase_url` with a key that acts as service_role. Direct Postgres:
    `database_url` (the direct connection or the Supavisor pooler string). Surrounding
    whitespace of the URL, key and DSN is stripped. Raises ConfigError (naming the variable,
    never echoing a value) for a URL that is not http(s) or carries user:password, a key that
    does not act as service_role or cannot go into an HTTP header (see check_service_key), a
    DSN that parse_dsn refuses, a value of the wrong type, or neither way configured.
    `repr`/`str` show the key and the DSN as `**********`.
    """

    model_config = ConfigDict(frozen=True, hide_input_in_errors=True)

    supabase_url: str | None = None
    supabase_service_role_key: SecretStr | None = None
    database_url: SecretStr | None = None
    timeout: Timeout = DEFAULT_TIMEOUT
    pool_size: PoolSize = DEFAULT_POOL_SIZE

    _key_variable: str = PrivateAttr(default=SERVICE_ROLE_KEY_VARIABLE)

    @model_validator(mode="wrap")
    @classmethod
    def _refuse_as_config_error(
        cls, data: Any, handler: ModelWrapValidatorHandler[Self], info: ValidationInfo[Any]
    ) -> Self:
        # pydantic's ValidationError keeps every refused input in errors() and json() (hiding
        # it only from str), so it is turned into a ConfigError naming the variables, raised
        # outside the except block so that it is not even the __context__.
        try:
            return handler(data)
        except ValidationError as error:
            refused = error
        context = info.context if isinstance(info.context, dict) else {}
        key_variable = str(context.get("key_variable", SERVICE_ROLE_KEY_VARIABLE))
        items = refused.errors(include_url=False, include_input=False)
        variables = [_variable_of(item["loc"], key_variable) for item in items]
        config_error = ConfigError(
            "; ".join(
                f"{variable or 'settings'}: {item['msg']}"
                for variable, item in zip(variables, items, strict=True)
            ),
            variable=variables[0] if variables else None,
        )
        if all(variable in (TIMEOUT_VARIABLE, POOL_SIZE_VARIABLE) for variable in variables):
            # Only numbers were refused: nothing secret in the cause, keep it.
            raise config_error from refused
        raise config_error

    @field_validator("supabase_url", "supabase_service_role_key", "database_url", mode="before")
    @classmethod
    def _refuse_what_is_not_text(cls, value: object) -> object:
        # pydantic would turn bytes into str and then check (or echo) what they decode to.
        # Not `strict=True` on the fields: that would make type checkers refuse a str key.
        if value is None or isinstance(value, str | SecretStr):
            return value
        raise PydanticCustomError("string_type", "Input should be a valid string")

    @field_validator("supabase_url", mode="after")
    @classmethod
    def _strip_url(cls, url: str | None) -> str | None:
        # A value pasted with a newline or copied from a .env file with trailing blanks.
        return None if url is None else url.strip()

    @field_validator("supabase_service_role_key", "database_url", mode="after")
    @classmethod
    def _strip_secret(cls, secret: SecretStr | None) -> SecretStr | None:
        return None if secret is None else SecretStr(secret.get_secret_value().strip())

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.supabase_url is not None:
            self._check_supabase(self.supabase_url)
        elif self.supabase_service_role_key is not None:
            raise ConfigError(f"{URL_VARIABLE} is not set", variable=URL_VARIABLE)
        if self.database_url is not None:
            parse_dsn(self.database_url.get_secret_value(), variable=DATABASE_URL_VARIABLE)
        elif self.supabase_url is None:
            raise ConfigError(
                f"set {URL_VARIABLE} and {SERVICE_ROLE_KEY_VARIABLE} (Supabase), "
                f"or {DATABASE_URL_VARIABLE} (direct Postgres)",
                variable=URL_VARIABLE,
            )
        return self

    def _check_supabase(self, url: str) -> None:
        problem = _supabase_url_problem(url)
        if problem is not None:
            raise ConfigError(problem, variable=URL_VARIABLE)
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
        Surrounding whitespace is stripped; a blank variable counts as unset. Raises
        ConfigError as the constructor does, naming the key variable actually read.
        """
        environment = _read_environment(environ, dotenv_path)

        def read(name: str) -> str | None:
            # A key copied from a .env file may carry a newline; blank counts as unset.
            return environment.get(name, "").strip() or None

        variable = next(
            (name for name in (SERVICE_ROLE_KEY_VARIABLE, SECRET_KEY_VARIABLE) if read(name)),
            SERVICE_ROLE_KEY_VARIABLE,
        )
        fields: dict[str, Any] = {
            "supabase_url": read(URL_VARIABLE),
            "supabase_service_role_key": read(variable),
            "database_url": read(DATABASE_URL_VARIABLE),
        }
        timeout, pool_size = read(TIMEOUT_VARIABLE), read(POOL_SIZE_VARIABLE)
        if timeout is not None:
            fields["timeout"] = _parse_number(timeout, TIMEOUT_VARIABLE, float)
        if pool_size is not None:
            fields["pool_size"] = _parse_number(pool_size, POOL_SIZE_VARIABLE, int)
        return cls.model_validate(fields, context={"key_variable": variable})

    def model_post_init(self, context: Any) -> None:
        if isinstance(context, dict) and "key_variable" in context:
            self._key_variable = str(context["key_variable"])


def _variable_of(location: tuple[int | str, ...], key_variable: str) -> str | None:
    """The environment variable behind a pydantic error location (None: the whole input)."""
    if not location:
        return None
    return {
        "supabase_url": URL_VARIABLE,
        "supabase_service_role_key": key_variable,
        "database_url": DATABASE_URL_VARIABLE,
        "timeout": TIMEOUT_VARIABLE,
        "pool_size": POOL_SIZE_VARIABLE,
    }.get(str(location[0]))


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
    except ValueError as error:
        raise ConfigError(
            f"{variable} must be a {kind.__name__}, got {raw[:40]!r}", variable=variable
        ) from error


def create_admin_client(settings: Settings) -> Client:
    """A service-role Supabase client for server-side use.

    It injects its own httpx client with a real timeout (supabase-py truncates float
    timeouts passed the other way) and HTTP/1.1: idle HTTP/2 connections are dropped by the
    gateway ("Server disconnected") and one HTTP/2 connection shared by threads breaks. The
    client's own retry of GET requests (sleeping 1, 2, 4 s) is off: errors say whether they
    are retryable and the caller decides. Never sign a user in with this client.
    Raises ConfigError if the settings name no Supabase project, or if the URL or key is
    unusable (checked again: `model_copy(update=...)` and `model_construct` skip validation).
    """
    url, key = _admin_credentials(settings)
    http_client = httpx.Client(http2=False, timeout=httpx.Timeout(settings.timeout))
    try:
        return create_client(url, key, ClientOptions(httpx_client=http_client, **_ADMIN_OPTIONS))
    except BaseException:
        # Our client would otherwise stay open with nobody to close it.
        http_client.close()
        raise


def create_async_admin_client(settings: Settings) -> AsyncClient:
    """The async twin of create_admin_client: a service-role supabase.AsyncClient.

    Same checks, same injected HTTP/1.1 client with a finite timeout (an httpx.AsyncClient),
    same retry policy. A plain function: the client is built without a round trip (the
    service key is its authorization from the start), so no event loop is needed yet.
    """
    url, key = _admin_credentials(settings)
    http_client = httpx.AsyncClient(http2=False, timeout=httpx.Timeout(settings.timeout))
    options = AsyncClientOptions(httpx_client=http_client, **_ADMIN_OPTIONS)
    # The constructor, not supabase.acreate_client: that one only adds a read of a stored
    # user session, which a service-role client never has.
    return AsyncClient(url, key, options)


_ADMIN_OPTIONS: dict[str, Any] = {
    "auto_refresh_token": False,
    "persist_session": False,
    "postgrest_client_retry": False,
}
"""What a service-role client never does: refresh or store a user session, retry GETs."""


def _admin_credentials(settings: Settings) -> tuple[str, str]:
    """The project URL and service key, checked; ConfigError naming what is missing."""
    if settings.supabase_url is None:
        raise ConfigError(f"{URL_VARIABLE} is not set", variable=URL_VARIABLE)
    if settings.supabase_service_role_key is None:
        raise ConfigError(
            f"{SERVICE_ROLE_KEY_VARIABLE} (or {SECRET_KEY_VARIABLE}) is not set",
            variable=SERVICE_ROLE_KEY_VARIABLE,
        )
    settings._check_supabase(settings.supabase_url)
    return settings.supabase_url, settings.supabase_service_role_key.get_secret_value()
