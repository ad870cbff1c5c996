"""Postgres connection strings: checked before use, and shown only with the password masked.

libpq's own parse errors quote the connection string, password included, and a DSN is often
echoed into logs by whoever handles such an error; so a DSN is parsed here first, and refused
with a message that names what is wrong without showing it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from agent_engine._errors import ConfigError

CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
"""ASCII control characters: never part of a URL or DSN that reaches a log unescaped."""

# libpq takes a URI only with these exact, lower-case prefixes; anything else is parsed as
# key=value pairs.
_DSN_URI_PREFIXES = ("postgresql://", "postgres://")
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
# libpq parameters whose value is a secret (sslpassword unlocks the client certificate key).
_SECRET_DSN_PARAMETERS = frozenset({"password", "sslpassword"})
_MASK = "***"

# libpq's parse errors quote the DSN, so they are never shown: each known one is replaced by
# a fixed description (libpq's text may also be translated; then the generic one is used).
_LIBPQ_PARSE_PROBLEMS = (
    ("unterminated quoted string", "a quoted value is not closed"),
    ('matching "]"', "an IPv6 host address lacks its closing ]"),
    ("IPv6 host address may not be empty", "an IPv6 host address is empty"),
    ('missing key/value separator "="', "a query parameter lacks '='"),
    ("invalid URI query parameter", "the query string names an unknown parameter"),
    ('missing "="', "a key=value pair lacks '='"),
    ("invalid connection option", "it names an unknown connection option"),
    ("invalid percent-encoded token", "it holds an invalid percent-encoding (%XX)"),
    ("forbidden value %00", "it holds %00"),
)


def parse_dsn(dsn: object, *, variable: str | None = None) -> dict[str, str]:
    """Check a Postgres connection string and return its parameters (password included).

    Accepts a `postgresql://` or `postgres://` URI or libpq key=value pairs; surrounding
    whitespace is ignored. The parameters come from psycopg's `conninfo_to_dict`; without
    psycopg (an optional extra) only the form is checked and `{}` is returned. Raises
    ConfigError with `variable` set to `variable` (messages name it, or the argument `dsn`
    when it is None) for a non-str, a blank string, another scheme, a string libpq cannot
    parse, an unencoded `@` outside the URI's user:password part, or a port that is not a
    number. Neither the DSN nor libpq's message (which quotes it) reaches the error, its cause
    chain or a log: a parse failure is chained as a fixed description only.
    """
    name = variable or "dsn"
    expected = (
        "expected postgresql://user:password@host:port/dbname or key=value pairs "
        "such as 'host=... dbname=...'"
    )
    if not isinstance(dsn, str):
        raise ConfigError(
            f"{name} must be a Postgres connection string (str), not {type(dsn).__name__}",
            variable=variable,
        )
    text = dsn.strip()
    if not text:
        raise ConfigError(f"{name} is empty; {expected}", variable=variable)
    if _URI_SCHEME.match(text) and not text.startswith(_DSN_URI_PREFIXES):
        # The scheme is not named: in a malformed string it could be part of a password.
        raise ConfigError(
            f"{name} must start with postgresql:// or postgres:// (lower case); {expected}",
            variable=variable,
        )
    if "\x00" in text:
        # libpq would silently cut the string at the NUL.
        raise ConfigError(f"{name} contains a NUL character", variable=variable)
    if text.startswith(_DSN_URI_PREFIXES) and (
        CONTROL_CHARACTER.search(text) or any(character.isspace() for character in text)
    ):
        # libpq drops some spaces silently (`user:pw @host` connects with "pw") and keeps
        # control characters in names: a URI must percent-encode them.
        raise ConfigError(
            f"{name} contains spaces or control characters inside the URI; percent-encode "
            "them (a space is %20)",
            variable=variable,
        )
    parser = _conninfo_parser()
    if parser is None:
        if text.startswith(_DSN_URI_PREFIXES) or "=" in text:
            return {}
        raise ConfigError(
            f"{name} is not a Postgres connection string; {expected}", variable=variable
        )
    parse, parse_errors = parser
    problem: str | None = None
    try:
        parameters = parse(text)
    except parse_errors as error:
        problem = _libpq_problem(error)
    if problem is not None:
        # Raised here, outside the except block, so that libpq's error (which quotes the
        # DSN) is not even the __context__; the cause is a description without the DSN.
        raise ConfigError(
            f"{name} is not a valid Postgres connection string: {problem}; {expected}",
            variable=variable,
        ) from ValueError(f"libpq could not parse the connection string: {problem}")
    if text.startswith(_DSN_URI_PREFIXES) and _has_stray_at_sign(text):
        raise ConfigError(
            f"{name} has an '@' outside its user:password@ part, so libpq would read part of "
            "the password as the host or database; percent-encode '@', '/' and ':' in the "
            "password (%40, %2F, %3A)",
            variable=variable,
        )
    port = str(parameters.get("port", ""))
    if not all(_is_port(entry) for entry in port.split(",")):
        raise ConfigError(
            f"{name} has a port that is not a number from 1 to 65535 (a ':' or '/' in an "
            "unencoded password?)",
            variable=variable,
        )
    return {keyword: str(value) for keyword, value in parameters.items()}


def _conninfo_parser() -> (
    tuple[Callable[[str], dict[str, Any]], tuple[type[Exception], ...]] | None
):
    """psycopg's conninfo_to_dict and the errors it raises, or None without psycopg."""
    # Imported here: psycopg is the optional `postgres` extra.
    try:
        from psycopg import Error as PsycopgError
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        return None
    # ProgrammingError: libpq's parse error; UnicodeError: surrogates, or a percent-encoded
    # value that is not UTF-8 (the error holds the text it could not convert).
    return conninfo_to_dict, (PsycopgError, UnicodeError)


def _libpq_problem(error: Exception) -> str:
    """A fixed description of libpq's parse error, without any part of the DSN."""
    if isinstance(error, UnicodeError):
        return "it holds characters that are not valid UTF-8"
    text = str(error)
    return next(
        (problem for marker, problem in _LIBPQ_PARSE_PROBLEMS if marker in text),
        "libpq cannot parse it",
    )


def _has_stray_at_sign(uri: str) -> bool:
    """Whether a raw '@' follows the part libpq reads as user:password (before the query)."""
    rest = uri.split("://", 1)[1]
    # libpq ends the user:password part at the first '@' unless a '/' comes first.
    end = next((index for index, character in enumerate(rest) if character in "@/"), len(rest))
    after = rest[end + 1 :] if end < len(rest) and rest[end] == "@" else rest
    return "@" in after.split("?", 1)[0]


def _is_port(entry: str) -> bool:
    # An empty entry is libpq's default port (a multi-host list may leave some out).
    return entry == "" or (entry.isascii() and entry.isdigit() and 1 <= int(entry) <= 65535)


def mask_dsn(dsn: str) -> str:
    """The DSN with its password replaced by `***`, for messages that must name the server.

    Masks the password of a URI's user:password@ part, `password=`/`sslpassword=` in a URI's
    query string (percent-encoded names too) and in key=value pairs (quoted or not, and inside
    a value that is itself a URI). Errs towards masking too much: in a URI, everything up to
    the last '@' before the query counts as user:password; in key=value pairs, everything
    after the first piece libpq could not parse is masked.
    """
    if _URI_SCHEME.match(dsn.lstrip()):
        return _mask_uri(dsn)
    return _mask_key_values(dsn)


def _mask_uri(uri: str) -> str:
    scheme_end = uri.index("://") + 3
    prefix, rest = uri[:scheme_end], uri[scheme_end:]
    query_start = rest.find("?")
    userinfo_end = rest.rfind("@", 0, query_start if query_start >= 0 else len(rest))
    if userinfo_end < 0:
        # libpq's own rule, which lets a password contain '?': the first '@' unless '/' first.
        first = next((index for index, character in enumerate(rest) if character in "@/"), -1)
        userinfo_end = first if first >= 0 and rest[first] == "@" else -1
    if userinfo_end >= 0:
        user, colon, _password = rest[:userinfo_end].partition(":")
        rest = f"{user}{colon}{_MASK if colon else ''}{rest[userinfo_end:]}"
    location, question_mark, query = rest.partition("?")
    if not question_mark:
        return prefix + location
    parameters = []
    for parameter in query.split("&"):
        keyword, equals, _value = parameter.partition("=")
        if equals and unquote(keyword).strip().lower() in _SECRET_DSN_PARAMETERS:
            parameter = f"{keyword}={_MASK}"
        parameters.append(parameter)
    return f"{prefix}{location}?{'&'.join(parameters)}"


def _mask_key_values(conninfo: str) -> str:
    """Mask secret values in libpq key=value pairs, following libpq's quoting rules."""
    pieces: list[str] = []
    index, length = 0, len(conninfo)
    while index < length:
        start = index
        while index < length and conninfo[index].isspace():
            index += 1
        while index < length and not conninfo[index].isspace() and conninfo[index] != "=":
            index += 1
        keyword = conninfo[start:index].strip()
        while index < length and conninfo[index].isspace():
            index += 1
        if not keyword or index >= length or conninfo[index] != "=":
            # Not a pair libpq would accept: whatever follows may be a password's remainder.
            if conninfo[start:].strip():
                pieces.append(conninfo[start : len(conninfo) - len(conninfo[start:].lstrip())])
                pieces.append(_MASK)
            return "".join(pieces)
        index += 1
        while index < length and conninfo[index].isspace():
            index += 1
        value_start = index
        index = _end_of_value(conninfo, index)
        value = conninfo[value_start:index]
        if keyword.lower() in _SECRET_DSN_PARAMETERS:
            value = _MASK
        elif "://" in value:
            value = _mask_uri(value)
        pieces.append(conninfo[start:value_start] + value)
    return "".join(pieces)


def _end_of_value(conninfo: str, index: int) -> int:
    """Where the value starting at `index` ends (libpq: quoted, or up to whitespace)."""
    length = len(conninfo)
    quoted = index < length and conninfo[index] == "'"
    if quoted:
        index += 1
    while index < length:
        character = conninfo[index]
        if character == "\\":
            index += 2
            continue
        if quoted and character == "'":
            return index + 1
        if not quoted and character.isspace():
            return index
        index += 1
    # An unclosed quote runs to the end, as libpq reads it (and is masked whole).
    return length
