"""The transports' redaction helpers: a secret never travels in a chained cause.

`redacted_cause` keeps an exception that shows no secret (identity: callers may match on it)
and otherwise stands a RedactedError in for it, looking where a secret shows when an
exception is printed or logged: str, repr, args, notes and the whole cause/context chain.
"""

from __future__ import annotations

import pytest

from agent_engine._transport import RedactedError, redacted_cause, redacted_text

SECRET = "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz"


def test_an_exception_without_the_secret_is_returned_unchanged() -> None:
    error = ConnectionError("[Errno 111] Connection refused")
    error.__context__ = KeyError("apikey")

    assert redacted_cause(error, [SECRET]) is error


def test_empty_secrets_are_ignored() -> None:
    error = ValueError("anything at all")

    assert redacted_cause(error, ["", SECRET]) is error
    assert redacted_text("anything at all", [""]) == "anything at all"


def test_a_secret_in_the_message_is_masked_in_a_substitute_without_cause_or_context() -> None:
    error = ValueError(f"Invalid API key {SECRET}")
    error.__cause__ = OSError("underneath")

    substitute = redacted_cause(error, [SECRET])

    assert isinstance(substitute, RedactedError)
    assert str(substitute) == "ValueError: Invalid API key ***"
    assert substitute.__cause__ is None
    assert substitute.__context__ is None


def test_a_secret_only_in_args_is_found() -> None:
    # UnicodeEncodeError's str names the position, its args hold the whole string.
    try:
        SECRET.replace("N7", "é").encode("ascii")
    except UnicodeEncodeError as error:
        substitute = redacted_cause(error, [SECRET.replace("N7", "é")])

    assert isinstance(substitute, RedactedError)
    assert "é" not in repr(substitute)
    assert str(substitute).startswith("UnicodeEncodeError: 'ascii' codec can't encode")


def test_a_secret_deep_in_a_chain_with_a_cycle_is_found() -> None:
    inner = RuntimeError(f"sent Bearer {SECRET}")
    middle = OSError("transport failed")
    outer = ConnectionError("request failed")
    outer.__cause__ = middle
    middle.__context__ = inner
    inner.__context__ = outer  # respx and retry loops do make cycles

    substitute = redacted_cause(outer, [SECRET])

    assert isinstance(substitute, RedactedError)
    assert str(substitute) == "ConnectionError: request failed"


def test_a_secret_in_a_note_is_found() -> None:
    error = ValueError("failed")
    error.add_note(f"headers: apikey={SECRET}")

    assert isinstance(redacted_cause(error, [SECRET]), RedactedError)


@pytest.mark.parametrize(
    ("secret", "quoted"),
    [
        ("key\nwith-break", "Illegal header value b'key\\nwith-break'"),
        ("key-é-accent", "value b'key-\\xc3\\xa9-accent'"),
        ("key-é-accent", "value 'key-\\xe9-accent'"),
        ("key\twith-tab", "value 'key\\twith-tab'"),
    ],
    ids=["line break in bytes repr", "accent in bytes repr", "accent in ascii", "tab in repr"],
)
def test_a_secret_quoted_by_a_repr_is_found_and_masked(secret: str, quoted: str) -> None:
    error = ValueError(quoted)

    substitute = redacted_cause(error, [secret])

    assert isinstance(substitute, RedactedError)
    assert "***" in str(substitute)
    assert "accent" not in str(substitute)
    assert "with-" not in str(substitute)


def test_redacted_text_masks_the_longest_spelling_first() -> None:
    token = "abc.def.ghi"

    masked = redacted_text(
        f"Authorization: Bearer {token}; apikey={token}", [token, "Bearer " + token]
    )

    assert masked == "Authorization: ***; apikey=***"
