"""Settings: surrounding whitespace is stripped, and unusable URLs and keys fail at start-up.

Every refusal is a ConfigError naming the variable that was read (`variable` set), raised when
the settings are built, never at the first request.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from agent_engine import ConfigError, Settings, create_admin_client
from agent_engine.settings import check_service_key
from tests.unit.test_settings import SECRET_KEY, SERVICE_JWT, URL, encode_jwt_part, make_jwt

HOUR = 3600


def refusal(environ: dict[str, str]) -> ConfigError:
    """The ConfigError that Settings.from_env raises for `environ` (no .env file read)."""
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(environ, dotenv_path=None)
    return raised.value


def assert_names(error: ConfigError, variable: str) -> None:
    assert error.variable == variable
    assert variable in str(error)


# Surrounding whitespace


@pytest.mark.parametrize("padding", ["\n", "\r\n", " ", "\t", "  \n\n"])
@pytest.mark.parametrize("key", [SERVICE_JWT, SECRET_KEY], ids=["legacy-jwt", "sb-secret"])
def test_from_env_strips_surrounding_whitespace_from_url_and_key(padding: str, key: str) -> None:
    settings = Settings.from_env(
        {"SUPABASE_URL": f"{padding}{URL}{padding}", "SUPABASE_SERVICE_ROLE_KEY": key + padding},
        dotenv_path=None,
    )

    assert settings.supabase_url == URL
    assert settings.supabase_service_role_key is not None
    assert settings.supabase_service_role_key.get_secret_value() == key


def test_the_constructor_strips_surrounding_whitespace_from_url_and_key() -> None:
    plain = Settings(supabase_url=f" {URL}\n", supabase_service_role_key=f"\t{SECRET_KEY}\r\n")
    wrapped = Settings(supabase_url=URL, supabase_service_role_key=SecretStr(f"{SECRET_KEY}\n"))

    for settings in (plain, wrapped):
        assert settings.supabase_url == URL
        assert settings.supabase_service_role_key is not None
        assert settings.supabase_service_role_key.get_secret_value() == SECRET_KEY


def test_a_key_with_a_trailing_newline_in_a_dotenv_file_is_sent_without_it(
    tmp_path: Path,
) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(f'SUPABASE_URL={URL}\nSUPABASE_SECRET_KEY="{SECRET_KEY}\\n"\n')

    settings = Settings.from_env({}, dotenv_path=dotenv)
    client = create_admin_client(settings)

    assert client.postgrest.headers["apikey"] == SECRET_KEY
    client.postgrest.session.close()


def test_a_blank_service_role_variable_counts_as_unset_and_the_secret_key_is_read() -> None:
    settings = Settings.from_env(
        {
            "SUPABASE_URL": URL,
            "SUPABASE_SERVICE_ROLE_KEY": " \n",
            "SUPABASE_SECRET_KEY": SECRET_KEY,
        },
        dotenv_path=None,
    )

    assert settings.supabase_service_role_key is not None
    assert settings.supabase_service_role_key.get_secret_value() == SECRET_KEY


def test_a_blank_key_passed_to_the_constructor_is_refused_as_empty() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings(supabase_url=URL, supabase_service_role_key=" \n ")

    assert_names(raised.value, "SUPABASE_SERVICE_ROLE_KEY")
    assert "empty" in str(raised.value)


# Keys that cannot go into an HTTP header


@pytest.mark.parametrize(
    "key",
    [
        f"{SECRET_KEY[:20]} {SECRET_KEY[20:]}",
        f"{SECRET_KEY[:20]}\n{SECRET_KEY[20:]}",
        f"{SECRET_KEY[:20]}\t{SECRET_KEY[20:]}",
        f"{SECRET_KEY[:20]}\r\n{SECRET_KEY[20:]}",
        f"{SECRET_KEY[:20]}\xa0{SECRET_KEY[20:]}",
        f"{SERVICE_JWT[:30]}\n{SERVICE_JWT[30:]}",
    ],
    ids=["space", "newline", "tab", "crlf", "no-break-space", "jwt-newline"],
)
@pytest.mark.parametrize("variable", ["SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_SECRET_KEY"])
def test_whitespace_inside_a_key_is_refused_naming_the_variable(key: str, variable: str) -> None:
    error = refusal({"SUPABASE_URL": URL, variable: key})

    assert_names(error, variable)
    assert "whitespace" in str(error)


@pytest.mark.parametrize(
    "character",
    ["\x00", "\x01", "\x1b", "\x7f", "\u00e9", "\u200b", "\u2028", "\U0001f511", "\udcff"],
    ids=["nul", "soh", "escape", "del", "e-acute", "zero-width-space", "line-sep", "emoji", "surr"],
)
@pytest.mark.parametrize("key", [SECRET_KEY, SERVICE_JWT], ids=["sb-secret", "legacy-jwt"])
def test_a_character_that_cannot_go_in_an_http_header_is_refused(key: str, character: str) -> None:
    hostile = key[:25] + character + key[25:]

    with pytest.raises(ConfigError) as raised:
        Settings(supabase_url=URL, supabase_service_role_key=hostile)

    assert raised.value.variable == "SUPABASE_SERVICE_ROLE_KEY"
    assert "SUPABASE_SERVICE_ROLE_KEY" in str(raised.value)


def test_check_service_key_refuses_an_sb_secret_key_with_an_illegal_character() -> None:
    with pytest.raises(ConfigError) as raised:
        check_service_key(SECRET_KEY + "\u00e9", variable="SUPABASE_SECRET_KEY")

    assert raised.value.variable == "SUPABASE_SECRET_KEY"
    assert "HTTP header" in str(raised.value)


# JWT claims and header


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", " none "])
def test_an_unsigned_jwt_with_alg_none_is_refused_whatever_the_case(alg: str) -> None:
    unsigned = make_jwt("service_role", alg=alg)

    error = refusal({"SUPABASE_URL": URL, "SUPABASE_SERVICE_ROLE_KEY": unsigned})

    assert_names(error, "SUPABASE_SERVICE_ROLE_KEY")
    assert "alg 'none'" in str(error)


def test_an_unsigned_jwt_is_refused_even_without_a_signature_part() -> None:
    unsigned = f"{encode_jwt_part({'alg': 'none'})}.{encode_jwt_part({'role': 'service_role'})}."

    error = refusal({"SUPABASE_URL": URL, "SUPABASE_SECRET_KEY": unsigned})

    assert_names(error, "SUPABASE_SECRET_KEY")


@pytest.mark.parametrize("seconds_ago", [1, HOUR, 365 * 24 * HOUR])
@pytest.mark.parametrize("variable", ["SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_SECRET_KEY"])
def test_an_expired_service_role_jwt_is_refused_naming_the_variable_read(
    seconds_ago: int, variable: str
) -> None:
    expired = make_jwt("service_role", exp=int(time.time()) - seconds_ago)

    error = refusal({"SUPABASE_URL": URL, variable: expired})

    assert_names(error, variable)
    assert "expired" in str(error)


def test_an_expired_jwt_is_refused_by_the_constructor_too() -> None:
    expired = make_jwt("service_role", iat=1, exp=1_600_000_000)

    with pytest.raises(ConfigError) as raised:
        Settings(supabase_url=URL, supabase_service_role_key=expired)

    assert raised.value.variable == "SUPABASE_SERVICE_ROLE_KEY"
    assert "2020-09-13" in str(raised.value)


@pytest.mark.parametrize(
    "exp", ["2030-01-01", None, True, [1], float("nan"), float("-inf")], ids=repr
)
def test_a_jwt_whose_exp_is_not_a_number_is_refused(exp: object) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings(supabase_url=URL, supabase_service_role_key=make_jwt("service_role", exp=exp))

    assert raised.value.variable == "SUPABASE_SERVICE_ROLE_KEY"


@pytest.mark.parametrize(
    "claims",
    [{}, {"exp": int(time.time()) + HOUR}, {"exp": 2_000_000_000.5}, {"exp": 10**30}],
    ids=["no-exp", "exp-in-an-hour", "float-exp", "huge-exp"],
)
def test_a_service_role_jwt_without_exp_or_expiring_later_is_accepted(
    claims: dict[str, Any],
) -> None:
    key = make_jwt("service_role", **claims)

    settings = Settings(supabase_url=URL, supabase_service_role_key=key)

    assert settings.supabase_service_role_key is not None
    assert settings.supabase_service_role_key.get_secret_value() == key


@pytest.mark.parametrize("role", ["anon", "authenticated", "supabase_admin", "SERVICE_ROLE"])
def test_a_jwt_whose_role_is_not_service_role_is_refused_naming_the_variable(role: str) -> None:
    error = refusal({"SUPABASE_URL": URL, "SUPABASE_SECRET_KEY": make_jwt(role)})

    assert_names(error, "SUPABASE_SECRET_KEY")
    assert repr(role) in str(error)


def test_a_jwt_whose_header_is_not_json_is_refused() -> None:
    broken = f"bm90IGpzb24.{encode_jwt_part({'role': 'service_role'})}.c2lnbmF0dXJl"

    error = refusal({"SUPABASE_URL": URL, "SUPABASE_SERVICE_ROLE_KEY": broken})

    assert_names(error, "SUPABASE_SERVICE_ROLE_KEY")
    assert "neither" in str(error)


# The project URL


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pw-Secret-99@abcdefghijklmnop.supabase.co",
        "https://user@abcdefghijklmnop.supabase.co",
        f"https://service_role:{SECRET_KEY}@abcdefghijklmnop.supabase.co",
        "http://:pw-Secret-99@localhost:54321",
    ],
    ids=["user-password", "user", "key-as-password", "empty-user"],
)
def test_a_url_carrying_credentials_is_refused_without_echoing_them(url: str) -> None:
    error = refusal({"SUPABASE_URL": url, "SUPABASE_SECRET_KEY": SECRET_KEY})

    assert_names(error, "SUPABASE_URL")
    assert "user:password" in str(error)
    assert "pw-Secret-99" not in str(error)
    assert SECRET_KEY not in str(error)


@pytest.mark.parametrize(
    "url",
    ["https://abc\ndefghijklmnop.supabase.co", "https://x.supabase.co\r\nX-Evil: 1", "https://"],
    ids=["inner-newline", "header-injection", "no-host"],
)
def test_a_url_with_inner_whitespace_or_no_host_is_refused(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings(supabase_url=url, supabase_service_role_key=SECRET_KEY)

    assert raised.value.variable == "SUPABASE_URL"


@pytest.mark.parametrize("url", [URL, "http://127.0.0.1:54321", "https://x.supabase.co/"])
def test_plain_http_and_https_project_urls_are_accepted(url: str) -> None:
    assert Settings(supabase_url=url, supabase_service_role_key=SECRET_KEY).supabase_url == url


# create_admin_client checks again what validation was skipped for


def test_create_admin_client_refuses_a_key_that_skipped_validation() -> None:
    valid = Settings(supabase_url=URL, supabase_service_role_key=SECRET_KEY)
    copied = valid.model_copy(update={"supabase_service_role_key": SecretStr(SECRET_KEY + "\n")})

    with pytest.raises(ConfigError) as raised:
        create_admin_client(copied)

    assert raised.value.variable == "SUPABASE_SERVICE_ROLE_KEY"


def test_create_admin_client_refuses_a_url_that_skipped_validation() -> None:
    constructed = Settings.model_construct(
        supabase_url="https://u:pw@x.supabase.co",
        supabase_service_role_key=SecretStr(SECRET_KEY),
    )

    with pytest.raises(ConfigError) as raised:
        create_admin_client(constructed)

    assert raised.value.variable == "SUPABASE_URL"


def test_create_admin_client_names_the_missing_key_variable() -> None:
    constructed = Settings.model_construct(supabase_url=URL)

    with pytest.raises(ConfigError) as raised:
        create_admin_client(constructed)

    assert raised.value.variable == "SUPABASE_SERVICE_ROLE_KEY"
