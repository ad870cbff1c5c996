"""Settings: which keys act as service_role, and that the key never leaks."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import httpx
import pytest

from agent_engine import ConfigError, Settings, create_admin_client

URL = "https://abcdefghijklmnop.supabase.co"


def encode_jwt_part(part: object) -> str:
    """A JWT header or payload: base64url of the JSON, without padding."""
    return base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")


def make_jwt(role: str, *, alg: str = "HS256", **claims: object) -> str:
    """A legacy-key-shaped JWT for `role` (the signature is never checked by the client)."""
    header = encode_jwt_part({"alg": alg, "typ": "JWT"})
    return f"{header}.{encode_jwt_part({'role': role, **claims})}.c2lnbmF0dXJl"


SERVICE_JWT = make_jwt("service_role")
SECRET_KEY = "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz"


@pytest.mark.parametrize("key", [SERVICE_JWT, SECRET_KEY], ids=["legacy-jwt", "sb-secret"])
def test_service_role_jwt_and_secret_key_are_accepted(key: str) -> None:
    settings = Settings(supabase_url=URL, supabase_service_role_key=key)

    assert settings.supabase_service_role_key is not None
    assert settings.supabase_service_role_key.get_secret_value() == key


@pytest.mark.parametrize(
    ("key", "says"),
    [
        (make_jwt("anon"), "'anon'"),
        (make_jwt("authenticated"), "'authenticated'"),
        ("sb_publishable_abc123", "publishable"),
        ("not-a-key", "neither"),
        ("sb_secret_", "neither"),
        ("a.b.c", "neither"),
    ],
)
def test_keys_that_do_not_act_as_service_role_are_refused_naming_the_variable(
    key: str, says: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"SUPABASE_URL": URL, "SUPABASE_SERVICE_ROLE_KEY": key}, dotenv_path=None)

    assert raised.value.variable == "SUPABASE_SERVICE_ROLE_KEY"
    assert "SUPABASE_SERVICE_ROLE_KEY" in str(raised.value)
    assert says in str(raised.value)


@pytest.mark.parametrize("key", [make_jwt("anon"), "sb_publishable_Zx81kQ3vLmN0pQrStUvWx"])
def test_a_refused_key_is_not_echoed_in_the_error(key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings(supabase_url=URL, supabase_service_role_key=key)

    assert key not in str(raised.value)
    assert key not in repr(raised.value)
    assert key not in json.dumps(raised.value.to_dict())


def test_a_refused_secret_key_variable_is_named_as_such() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(
            {"SUPABASE_URL": URL, "SUPABASE_SECRET_KEY": "sb_publishable_x"}, dotenv_path=None
        )

    assert raised.value.variable == "SUPABASE_SECRET_KEY"


def test_from_env_reads_the_secret_key_variable_when_the_service_role_one_is_absent() -> None:
    settings = Settings.from_env(
        {"SUPABASE_URL": URL, "SUPABASE_SECRET_KEY": SECRET_KEY, "AGENT_ENGINE_TIMEOUT": "2.5"},
        dotenv_path=None,
    )

    assert settings.supabase_service_role_key is not None
    assert settings.supabase_service_role_key.get_secret_value() == SECRET_KEY
    assert settings.timeout == 2.5


def test_missing_url_or_key_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError) as no_url:
        Settings.from_env({"SUPABASE_SERVICE_ROLE_KEY": SERVICE_JWT}, dotenv_path=None)
    with pytest.raises(ConfigError) as no_key:
        Settings.from_env({"SUPABASE_URL": URL}, dotenv_path=None)

    assert no_url.value.variable == "SUPABASE_URL"
    assert no_key.value.variable == "SUPABASE_SERVICE_ROLE_KEY"
    assert "SUPABASE_SECRET_KEY" in str(no_key.value)


@pytest.mark.parametrize("url", ["ftp://x.supabase.co", "abcdefghijklmnop.supabase.co", ""])
def test_a_url_that_is_not_http_is_refused(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings(supabase_url=url, supabase_service_role_key=SERVICE_JWT)

    assert raised.value.variable == "SUPABASE_URL"


def test_a_timeout_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(
            {
                "SUPABASE_URL": URL,
                "SUPABASE_SECRET_KEY": SECRET_KEY,
                "AGENT_ENGINE_TIMEOUT": "soon",
            },
            dotenv_path=None,
        )

    assert raised.value.variable == "AGENT_ENGINE_TIMEOUT"


def test_dotenv_fills_what_the_environment_does_not_set(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        f"SUPABASE_URL=https://from-dotenv.supabase.co\nSUPABASE_SECRET_KEY={SECRET_KEY}\n"
    )

    settings = Settings.from_env({"SUPABASE_URL": URL}, dotenv_path=dotenv)

    assert settings.supabase_url == URL
    assert settings.supabase_service_role_key is not None
    assert settings.supabase_service_role_key.get_secret_value() == SECRET_KEY


def test_the_key_never_appears_in_repr_str_or_dump() -> None:
    settings = Settings(supabase_url=URL, supabase_service_role_key=SECRET_KEY)

    for rendering in (repr(settings), str(settings), str(settings.model_dump())):
        assert SECRET_KEY not in rendering


def test_admin_client_uses_http1_a_real_timeout_and_the_key_in_both_headers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = create_admin_client(
        Settings(supabase_url=URL, supabase_service_role_key=SECRET_KEY, timeout=2.5)
    )
    http = client.postgrest.session

    assert isinstance(http, httpx.Client)
    assert http.timeout == httpx.Timeout(2.5)
    assert http._transport._pool._http2 is False  # type: ignore[attr-defined]
    assert client.postgrest.headers["apikey"] == SECRET_KEY
    assert client.postgrest.headers["Authorization"] == f"Bearer {SECRET_KEY}"
    assert SECRET_KEY not in caplog.text


def test_database_url_alone_configures_the_direct_backend_and_stays_secret() -> None:
    dsn = "postgresql://postgres:hunter2-secret@db.abcdefghijklmnop.supabase.co:5432/postgres"

    settings = Settings.from_env(
        {"DATABASE_URL": dsn, "AGENT_ENGINE_POOL_SIZE": "6"}, dotenv_path=None
    )

    assert settings.supabase_url is None
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == dsn
    assert settings.pool_size == 6
    assert "hunter2-secret" not in repr(settings)


def test_neither_supabase_nor_database_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        Settings.from_env({}, dotenv_path=None)


def test_a_database_url_that_is_not_postgres_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings(database_url="mysql://root:pw-secret@localhost/db")

    assert raised.value.variable == "DATABASE_URL"
    assert "pw-secret" not in str(raised.value)
