"""Settings and create_admin_client never show a secret, not even part of it.

For hostile inputs (wrong types, values in the wrong field, control characters, undecodable
JWTs, huge keys) the secret must not appear, nor any 8-character piece of it, in the error's
message, repr, to_dict(), any exception of its __cause__/__context__ chain (with pydantic's
structured errors), a warning, or a log record of any logger at DEBUG level.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from agent_engine import ConfigError, Settings, create_admin_client
from tests.leaks import leaked_piece, observe
from tests.unit.test_settings import SECRET_KEY, SERVICE_JWT, URL, encode_jwt_part, make_jwt

SECRET_BODY = SECRET_KEY.removeprefix("sb_secret_")
"""What is secret in SECRET_KEY (the prefix is printed in help texts on purpose)."""

NOT_JSON_JWT = f"{encode_jwt_part({'alg': 'HS256'})}.bm90LWpzb24tUTd4S2pMbXA.c2lnX1p4OXFXMnY"


def build(**fields: Any) -> Callable[[], Settings]:
    return lambda: Settings(**fields)


def build_from_env(environ: dict[str, str]) -> Callable[[], Settings]:
    return lambda: Settings.from_env(environ, dotenv_path=None)


# Hostile keys: (what the caller passed, the secret to look for)

HUGE_SECRET = "sb_secret_" + "Hq7" * 40_000 + "\n" + "Zt2" * 40_000
HUGE_JWT = make_jwt("anon", filler="Pw9xQ" * 50_000)

HOSTILE_KEYS: dict[str, tuple[object, str]] = {
    "int": (918273645546372819, "918273645546372819"),
    "float": (9182736455.46372819, "9182736455"),
    "bytes": (SECRET_KEY.encode(), SECRET_BODY),
    "bytearray": (bytearray(SERVICE_JWT.encode()), SERVICE_JWT),
    "list": ([SECRET_KEY], SECRET_BODY),
    "dict": ({"key": SECRET_KEY}, SECRET_BODY),
    "newline-inside": (f"{SECRET_KEY[:22]}\n{SECRET_KEY[22:]}", SECRET_BODY),
    "trailing-newline-and-nul": (f"{SECRET_KEY}\x00\n", SECRET_BODY),
    "non-ascii": (f"{SECRET_KEY}\u00e9", SECRET_BODY),
    "jwt-not-json-payload": (NOT_JSON_JWT, NOT_JSON_JWT),
    "jwt-alg-none": (make_jwt("service_role", alg="none"), make_jwt("service_role", alg="none")),
    "jwt-expired": (make_jwt("service_role", exp=1), make_jwt("service_role", exp=1)),
    "jwt-anon": (make_jwt("anon"), make_jwt("anon")),
    "publishable": ("sb_publishable_Zx81kQ3vLmN0pQrStUvWx", "Zx81kQ3vLmN0pQrStUvWx"),
    "url-in-key-field": ("https://qzk7wpx3mhnv.supabase.co", "qzk7wpx3mhnv"),
    "huge-sb-secret": (HUGE_SECRET, HUGE_SECRET.removeprefix("sb_secret_")),
    "huge-jwt": (HUGE_JWT, HUGE_JWT),
}


@pytest.mark.parametrize(("key", "secret"), HOSTILE_KEYS.values(), ids=HOSTILE_KEYS.keys())
def test_a_hostile_key_is_refused_with_a_config_error_that_shows_none_of_it(
    key: object, secret: str
) -> None:
    observed = observe(build(supabase_url=URL, supabase_service_role_key=key))

    assert isinstance(observed.error, ConfigError)
    assert observed.error.variable == "SUPABASE_SERVICE_ROLE_KEY"
    observed.assert_never_shows(secret)


@pytest.mark.parametrize(
    ("key", "secret"),
    [(v, s) for v, s in HOSTILE_KEYS.values() if isinstance(v, str)],
    ids=[name for name, (v, _) in HOSTILE_KEYS.items() if isinstance(v, str)],
)
def test_a_hostile_key_read_from_the_environment_shows_none_of_it(key: str, secret: str) -> None:
    environ = {"SUPABASE_URL": URL, "SUPABASE_SECRET_KEY": key}

    observed = observe(build_from_env(environ))

    assert isinstance(observed.error, ConfigError)
    assert observed.error.variable == "SUPABASE_SECRET_KEY"
    observed.assert_never_shows(secret)


@pytest.mark.parametrize(
    "key",
    [SECRET_KEY, SERVICE_JWT, 918273645546372819, SECRET_KEY.encode(), f"{SECRET_KEY}\x00"],
    ids=["sb-secret", "legacy-jwt", "int", "bytes", "nul"],
)
def test_a_key_put_in_the_url_field_by_mistake_is_refused_without_showing_it(key: object) -> None:
    secret = SECRET_BODY if key != SERVICE_JWT else SERVICE_JWT

    observed = observe(build(supabase_url=key, supabase_service_role_key=SECRET_KEY))

    assert isinstance(observed.error, ConfigError)
    assert observed.error.variable == "SUPABASE_URL"
    observed.assert_never_shows(secret)


def test_a_url_with_the_key_as_password_is_refused_without_showing_it() -> None:
    url = f"https://service_role:{SECRET_KEY}@abcdefghijklmnop.supabase.co"

    observed = observe(build_from_env({"SUPABASE_URL": url, "SUPABASE_SECRET_KEY": SECRET_KEY}))

    assert isinstance(observed.error, ConfigError)
    assert observed.error.variable == "SUPABASE_URL"
    observed.assert_never_shows(SECRET_BODY)


def test_several_refused_fields_are_named_together_without_values() -> None:
    observed = observe(
        build(supabase_url=b"https://x.supabase.co", supabase_service_role_key=918273645546372819)
    )

    assert isinstance(observed.error, ConfigError)
    assert observed.error.variable == "SUPABASE_URL"
    assert "SUPABASE_SERVICE_ROLE_KEY" in str(observed.error)
    observed.assert_never_shows("918273645546372819")


def test_a_refused_number_is_a_config_error_naming_its_variable_with_the_cause_chained() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings(supabase_url=URL, supabase_service_role_key=SECRET_KEY, pool_size=0)

    assert raised.value.variable == "AGENT_ENGINE_POOL_SIZE"
    assert isinstance(raised.value.__cause__, ValidationError)


def test_a_refused_key_chains_no_validation_error_holding_it() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings(supabase_url=URL, supabase_service_role_key=SECRET_KEY.encode())

    assert raised.value.__cause__ is None
    assert raised.value.__context__ is None


def test_settings_that_are_not_a_mapping_are_a_config_error_that_does_not_echo_them() -> None:
    observed = observe(lambda: Settings.model_validate(SECRET_KEY))

    assert isinstance(observed.error, ConfigError)
    observed.assert_never_shows(SECRET_BODY)


# Accepted keys: nothing is shown while building the settings and the client either


@pytest.mark.parametrize(
    "key",
    [SECRET_KEY, SERVICE_JWT, f"  {SECRET_KEY}\r\n", SecretStr(SERVICE_JWT), HUGE_SECRET[:60_000]],
    ids=["sb-secret", "legacy-jwt", "padded", "secret-str", "huge"],
)
def test_building_settings_and_the_admin_client_logs_and_shows_no_part_of_the_key(
    key: str | SecretStr,
) -> None:
    raw = key.get_secret_value() if isinstance(key, SecretStr) else key
    secret = raw.strip().removeprefix("sb_secret_")
    built: list[Any] = []

    def build_client() -> None:
        settings = Settings.from_env(
            {"SUPABASE_URL": URL, "SUPABASE_SERVICE_ROLE_KEY": raw}, dotenv_path=None
        )
        built.append(settings)
        built.append(create_admin_client(settings))

    observed = observe(build_client)

    assert observed.error is None
    observed.assert_never_shows(secret)
    settings, client = built
    for rendering in (repr(settings), str(settings), str(settings.model_dump())):
        assert leaked_piece(secret, rendering) is None
    assert leaked_piece(secret, settings.model_dump_json()) is None
    client.postgrest.session.close()


def test_create_admin_client_refusing_an_unvalidated_key_shows_none_of_it() -> None:
    hostile = Settings.model_construct(
        supabase_url=URL, supabase_service_role_key=SecretStr(f"{SECRET_KEY}\u00e9\n")
    )

    observed = observe(lambda: create_admin_client(hostile))

    assert isinstance(observed.error, ConfigError)
    observed.assert_never_shows(SECRET_BODY)


def test_the_leak_checker_itself_finds_a_fragment_in_a_chained_cause() -> None:
    def leaky() -> None:
        try:
            raise ValueError(f"bad key ...{SECRET_BODY[-9:]}")
        except ValueError as error:
            raise ConfigError("refused") from error

    observed = observe(leaky)

    with pytest.raises(AssertionError, match="of the secret shown"):
        observed.assert_never_shows(SECRET_BODY)


@pytest.mark.parametrize("propagate", [True, False])
def test_the_leak_checker_sees_debug_records_of_dependency_loggers(propagate: bool) -> None:
    quiet = logging.getLogger("hpack.quiet_dependency")
    quiet.setLevel(logging.WARNING)
    quiet.propagate = propagate
    try:
        observed = observe(lambda: quiet.debug("header %s", SECRET_KEY))
    finally:
        quiet.propagate = True
        quiet.setLevel(logging.NOTSET)

    with pytest.raises(AssertionError, match="of the secret shown"):
        observed.assert_never_shows(SECRET_BODY)
