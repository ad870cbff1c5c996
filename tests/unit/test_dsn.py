"""parse_dsn and mask_dsn: Postgres connection strings checked and shown without the password.

parse_dsn is what Settings uses for DATABASE_URL and what other code calls for a DSN it is
given; mask_dsn renders one for a message that must name the server.
"""

from __future__ import annotations

import sys

import pytest

from agent_engine import ConfigError, Settings
from agent_engine._dsn import mask_dsn, parse_dsn
from tests.leaks import leaked_piece, observe

PASSWORD = "Hunter2-Sekr3t"


def short_id(value: object) -> str:
    """A readable test id, even for a huge parameter."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:50]}...({len(text)} chars)"


# parse_dsn: what it accepts and returns


@pytest.mark.parametrize(
    ("dsn", "parameters"),
    [
        (
            f"postgresql://postgres:{PASSWORD}@db.abcdefghijklmnop.supabase.co:5432/postgres",
            {
                "user": "postgres",
                "password": PASSWORD,
                "host": "db.abcdefghijklmnop.supabase.co",
                "port": "5432",
                "dbname": "postgres",
            },
        ),
        (
            "postgres://app@localhost/agents",
            {"user": "app", "host": "localhost", "dbname": "agents"},
        ),
        ("postgresql:///agents", {"dbname": "agents"}),
        ("postgresql://", {}),
        (
            "postgresql://user:p%40ss%2Fw%3Ard%20x@[::1]:6543/db?sslmode=require",
            {
                "user": "user",
                "password": "p@ss/w:rd x",
                "host": "::1",
                "port": "6543",
                "dbname": "db",
                "sslmode": "require",
            },
        ),
        (
            f"postgresql://user@host/db?password={PASSWORD}&application_name=a@b",
            {
                "user": "user",
                "password": PASSWORD,
                "host": "host",
                "dbname": "db",
                "application_name": "a@b",
            },
        ),
        (
            "postgresql://u:pw@h1:5432,h2/db?target_session_attrs=read-write",
            {
                "user": "u",
                "password": "pw",
                "host": "h1,h2",
                "port": "5432,",
                "dbname": "db",
                "target_session_attrs": "read-write",
            },
        ),
        (
            f"host=db.example.com port=6543 dbname=postgres user=app password={PASSWORD}",
            {
                "host": "db.example.com",
                "port": "6543",
                "dbname": "postgres",
                "user": "app",
                "password": PASSWORD,
            },
        ),
        (
            "host = localhost  password = 'it\\'s \\'quoted\\' x' dbname=db",
            {"host": "localhost", "password": "it's 'quoted' x", "dbname": "db"},
        ),
    ],
    ids=[
        "uri-with-password",
        "uri-without-password",
        "uri-socket",
        "uri-empty",
        "uri-percent-encoded-password-ipv6",
        "uri-password-in-query",
        "uri-multi-host",
        "conninfo",
        "conninfo-quoted",
    ],
)
def test_parse_dsn_returns_the_connection_parameters(dsn: str, parameters: dict[str, str]) -> None:
    assert parse_dsn(dsn) == parameters


def test_parse_dsn_ignores_surrounding_whitespace_instead_of_keeping_it_in_the_dbname() -> None:
    assert parse_dsn(f"  postgresql://u:{PASSWORD}@h/db\n")["dbname"] == "db"


# parse_dsn: what it refuses


@pytest.mark.parametrize(
    ("dsn", "says"),
    [
        (None, "not NoneType"),
        (5432, "not int"),
        (b"postgresql://u:pw@h/db", "not bytes"),
        ("", "empty"),
        (" \n\t ", "empty"),
        ("mysql://root:pw-Secret-1@localhost/db", "postgresql://"),
        ("http://db.example.com", "postgresql://"),
        ("POSTGRESQL://u:pw@h/db", "lower case"),
        ("jdbc:postgresql://h/db", "not a valid"),
        ("just-a-hostname", "not a valid"),
        ("postgresql://user:pa ss@host:notaport/db", "spaces"),
        ("postgresql://user:pass @host/db", "spaces"),
        ("postgresql://user:pass@host/d\tb", "control characters"),
        ("postgresql://[::1", "IPv6"),
        ("password='abc", "quoted value is not closed"),
        ("host=h password='abc dbname=db", "quoted value is not closed"),
        ("host=h nosuchoption=1", "unknown connection option"),
        ("postgresql://h/db?nosuchparam=1", "unknown parameter"),
        ("postgresql://h/db?password", "lacks '='"),
        ("postgresql://u:p%zz@h/db", "percent-encoding"),
        ("postgresql://u:p%ff@h/db", "UTF-8"),
        ("postgresql://u:p\udcff@h/db", "UTF-8"),
        ("postgresql://u:pw@h/d\x00b", "NUL"),
        ("postgresql://user:pass@host:notaport/db", "port"),
        ("postgresql://user:pass@host:99999/db", "port"),
        ("host=h port=0", "port"),
        ("postgresql://user:p@ss@host/db", "'@'"),
        ("postgresql://user:1234/5678@host/db", "'@'"),
    ],
    ids=short_id,
)
def test_parse_dsn_refuses_what_is_not_a_postgres_connection_string(dsn: object, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_dsn(dsn, variable="DATABASE_URL")

    assert raised.value.variable == "DATABASE_URL"
    assert "DATABASE_URL" in str(raised.value)
    assert says in str(raised.value)


def test_parse_dsn_without_a_variable_names_the_dsn_argument() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_dsn("mysql://localhost/db")

    assert raised.value.variable is None
    assert str(raised.value).startswith("dsn ")


@pytest.mark.parametrize(
    ("dsn", "password"),
    [
        ("postgresql://user:pa ss@host:notaport/db", "pa ss"),
        (f"postgresql://user:{PASSWORD} x@host/db", PASSWORD),
        ("postgresql://[::1", "[::1"),
        ("password='abc", "'abc"),
        (f"host=h password='{PASSWORD}", PASSWORD),
        (f"host=h password={PASSWORD} {PASSWORD}-tail", PASSWORD),
        (f"host=h {PASSWORD}=1", PASSWORD),
        (f"mysql://root:{PASSWORD}@localhost/db", PASSWORD),
        (f"{PASSWORD}://host/db", PASSWORD),
        (f"postgresql://u:{PASSWORD}@h/db?bogus={PASSWORD}", PASSWORD),
        (f"postgresql://u:{PASSWORD}\udcff@h/db", PASSWORD),
        (f"postgresql://u:{PASSWORD}@h:notaport/db", PASSWORD),
        (f"postgresql://u:{PASSWORD[:6]}@{PASSWORD[6:]}-x@h/db", PASSWORD[6:] + "-x"),
        (f"postgresql://u:{PASSWORD[:6]}/{PASSWORD[6:]}@h/db", PASSWORD),
        ("postgresql://u:" + "Zq8" * 30_000 + " @h/db", "Zq8" * 30_000),
        ("host=h password='" + "Zq8" * 30_000, "Zq8" * 30_000),
    ],
    ids=short_id,
)
def test_a_refused_dsn_never_shows_its_password_in_the_error_its_chain_or_logs(
    dsn: str, password: str
) -> None:
    observed = observe(lambda: parse_dsn(dsn, variable="DATABASE_URL"))

    assert isinstance(observed.error, ConfigError)
    observed.assert_never_shows(password)
    assert observed.error.__context__ is None
    cause = observed.error.__cause__
    assert cause is None or leaked_piece(dsn, str(cause)) is None


def test_a_libpq_parse_failure_is_chained_as_a_sanitised_description() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_dsn(f"host=h password='{PASSWORD}")

    assert isinstance(raised.value.__cause__, ValueError)
    assert "quoted value is not closed" in str(raised.value.__cause__)
    assert raised.value.__context__ is None


def test_without_psycopg_parse_dsn_only_checks_the_form(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.setitem(sys.modules, "psycopg.conninfo", None)

    assert parse_dsn("postgresql://u:pw@h/db") == {}
    assert parse_dsn("postgres://h/db") == {}
    assert parse_dsn("host=h dbname=db") == {}
    for refused in ("just-a-hostname", "mysql://root@h/db", "", None):
        with pytest.raises(ConfigError) as raised:
            parse_dsn(refused, variable="DATABASE_URL")
        assert raised.value.variable == "DATABASE_URL"


# Settings uses parse_dsn for DATABASE_URL


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://user:pa ss@host:notaport/db",
        f"postgresql://u:{PASSWORD}@h:notaport/db",
        "password='abc",
        "host=h nosuchoption=1",
        "postgresql://[::1",
    ],
)
def test_settings_refuse_a_malformed_database_url_at_start_up(dsn: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"DATABASE_URL": dsn}, dotenv_path=None)

    assert raised.value.variable == "DATABASE_URL"


@pytest.mark.parametrize("dsn", [5432, b"postgresql://u:pw@h/db"], ids=["int", "bytes"])
def test_settings_refuse_a_database_url_of_the_wrong_type(dsn: object) -> None:
    observed = observe(lambda: Settings(database_url=dsn))

    assert isinstance(observed.error, ConfigError)
    assert observed.error.variable == "DATABASE_URL"
    observed.assert_never_shows("postgresql://u:pw@h/db" if isinstance(dsn, bytes) else "5432")


def test_settings_strip_the_database_url() -> None:
    dsn = f"postgresql://postgres:{PASSWORD}@localhost:5432/postgres"

    settings = Settings.from_env({"DATABASE_URL": f"{dsn}\r\n"}, dotenv_path=None)
    constructed = Settings(database_url=f"  {dsn}\n")

    for each in (settings, constructed):
        assert each.database_url is not None
        assert each.database_url.get_secret_value() == dsn


# mask_dsn


@pytest.mark.parametrize(
    ("dsn", "masked"),
    [
        (
            f"postgresql://postgres:{PASSWORD}@db.x.supabase.co:5432/postgres",
            "postgresql://postgres:***@db.x.supabase.co:5432/postgres",
        ),
        ("postgresql://app@localhost/agents", "postgresql://app@localhost/agents"),
        ("postgresql://localhost/agents", "postgresql://localhost/agents"),
        ("postgresql://u:p%40ss%2Fw@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:@h/db", "postgresql://u:***@h/db"),
        (
            f"postgresql://u@h/db?sslmode=require&password={PASSWORD}&application_name=a@b",
            "postgresql://u@h/db?sslmode=require&password=***&application_name=a@b",
        ),
        (f"postgresql://h/db?pass%77ord={PASSWORD}", "postgresql://h/db?pass%77ord=***"),
        (f"postgresql://h/db?sslpassword={PASSWORD}", "postgresql://h/db?sslpassword=***"),
        (f"postgres://u:{PASSWORD}@h/db", "postgres://u:***@h/db"),
        (f"mysql://root:{PASSWORD}@h/db", "mysql://root:***@h/db"),
        (
            f"host=db.example.com port=5432 user=app password={PASSWORD} dbname=postgres",
            "host=db.example.com port=5432 user=app password=*** dbname=postgres",
        ),
        (
            f"host=h password='{PASSWORD} with \\'quotes\\'' dbname=db",
            "host=h password=*** dbname=db",
        ),
        (f"password = {PASSWORD}\\ x  host=h", "password = ***  host=h"),
        (f"host=h sslpassword={PASSWORD}", "host=h sslpassword=***"),
        (
            f"dbname='postgresql://u:{PASSWORD}@h/x' host=y",
            "dbname='postgresql://u:***@h/x' host=y",
        ),
        ("host=localhost dbname=agents", "host=localhost dbname=agents"),
    ],
    ids=[
        "uri",
        "uri-user-only",
        "uri-no-user",
        "uri-percent-encoded",
        "uri-empty-password",
        "uri-query-password",
        "uri-encoded-query-name",
        "uri-sslpassword",
        "postgres-scheme",
        "other-scheme",
        "conninfo",
        "conninfo-quoted",
        "conninfo-escaped-space",
        "conninfo-sslpassword",
        "conninfo-uri-value",
        "conninfo-no-password",
    ],
)
def test_mask_dsn_replaces_the_password_and_keeps_the_server(dsn: str, masked: str) -> None:
    assert mask_dsn(dsn) == masked


@pytest.mark.parametrize(
    ("dsn", "password"),
    [
        (f"postgresql://u:{PASSWORD[:6]}@{PASSWORD[6:]}@h/db", PASSWORD[6:]),
        (f"postgresql://u:{PASSWORD[:6]}/{PASSWORD[6:]}@h/db", PASSWORD),
        (f"postgresql://u:{PASSWORD}?x@h/db", PASSWORD),
        (f"host=h password='{PASSWORD}", PASSWORD),
        (f"host=h password={PASSWORD} {PASSWORD}-tail", PASSWORD),
        (f"host=h password={PASSWORD}\\", PASSWORD),
    ],
    ids=["unencoded-at", "unencoded-slash", "question-mark", "unclosed-quote", "space", "escape"],
)
def test_mask_dsn_masks_too_much_rather_than_too_little_on_malformed_input(
    dsn: str, password: str
) -> None:
    masked = mask_dsn(dsn)

    assert leaked_piece(password, masked) is None
    assert "***" in masked


@pytest.mark.parametrize(
    "dsn",
    [
        f"postgresql://postgres:{PASSWORD}@db.x.supabase.co:6543/postgres?sslmode=require",
        f"postgresql://u@h/db?password={PASSWORD}",
        f"host=h user=u password='{PASSWORD} x' dbname=db",
        f"postgresql://u:{PASSWORD.replace('-', '%2D')}@h/db",
    ],
)
def test_mask_dsn_output_parses_to_the_same_server_without_the_password(dsn: str) -> None:
    parsed, masked = parse_dsn(dsn), parse_dsn(mask_dsn(dsn))

    assert masked["password"] == "***"
    assert {k: v for k, v in masked.items() if k != "password"} == {
        k: v for k, v in parsed.items() if k != "password"
    }
