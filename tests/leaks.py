"""Leak checks: does a secret, or any 8-character piece of it, show anywhere?

`observe(block)` runs code with every logger (the library's and its dependencies') at DEBUG
and records its error, log records and warnings; `Observed.assert_never_shows(secret)` looks
for the secret in the error's message, repr, args, attributes, to_dict(), every exception of
its __cause__/__context__ chain (with pydantic's structured errors), the log records and the
warnings. Shared by the settings, Supabase and direct-transport suites.
"""

from __future__ import annotations

import json
import logging
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import ValidationError

from agent_engine import AgentEngineError

FRAGMENT = 8
"""The length from which a piece of a secret counts as leaked."""


def fragments(secret: str) -> set[str]:
    """Every FRAGMENT-long piece of `secret` (the whole of it when shorter)."""
    if len(secret) <= FRAGMENT:
        return {secret}
    return {secret[start : start + FRAGMENT] for start in range(len(secret) - FRAGMENT + 1)}


def leaked_piece(secret: str, text: str) -> str | None:
    """The first piece of `secret` found in `text`, or None."""
    pieces = fragments(secret)
    if len(secret) <= FRAGMENT:
        return secret if secret in text else None
    return next(
        (text[at : at + FRAGMENT] for at in range(len(text)) if text[at : at + FRAGMENT] in pieces),
        None,
    )


def exception_chain(error: BaseException) -> list[BaseException]:
    """The error and everything reachable through __cause__ and __context__."""
    seen: list[BaseException] = []
    pending = [error]
    while pending:
        current = pending.pop()
        if any(current is known for known in seen):
            continue
        seen.append(current)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return seen


def renderings(error: BaseException) -> list[str]:
    """Every way an error is commonly shown or logged, for the whole chain."""
    texts: list[str] = []
    for link in exception_chain(error):
        texts += [str(link), repr(link), repr(link.args), repr(vars(link))]
        texts += traceback.format_exception_only(link)
        texts += list(getattr(link, "__notes__", []))
        if isinstance(link, AgentEngineError):
            texts.append(json.dumps(link.to_dict()))
        if isinstance(link, ValidationError):
            # errors() and json() keep the refused inputs even when str() hides them.
            texts += [link.json(), repr(link.errors())]
    return texts


@dataclass
class Observed:
    """What a block of code produced: its error, log records and warnings."""

    error: BaseException | None
    logs: list[logging.LogRecord]
    warning_texts: list[str]

    def texts(self) -> list[str]:
        texts = list(self.warning_texts)
        for record in self.logs:
            texts += [record.getMessage(), repr(record.args), str(record.msg)]
            if record.exc_info and record.exc_info[1] is not None:
                texts += renderings(record.exc_info[1])
        if self.error is not None:
            texts += renderings(self.error)
        return texts

    def assert_never_shows(self, secret: str) -> None:
        for text in self.texts():
            piece = leaked_piece(secret, text)
            assert piece is None, f"{piece!r} of the secret shown in: {text[:300]!r}"


class _Recorder(logging.Handler):
    """Keeps every record it is handed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def observe(block: Callable[[], object]) -> Observed:
    """Run `block` with every logger (the library's and its dependencies') at DEBUG.

    Every logger that exists when the block starts is set to DEBUG and enabled; the recorder
    sits on the root logger and on each logger that does not propagate to it. Loggers,
    levels and warning filters are restored afterwards.
    """
    loggers = [logging.root] + [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    saved = [(logger, logger.level, logger.disabled) for logger in loggers]
    recorder = _Recorder()
    hosts = [logging.root] + [logger for logger in loggers[1:] if not logger.propagate]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
    for logger in hosts:
        logger.addHandler(recorder)
    error: BaseException | None = None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                block()
            except Exception as raised:
                error = raised
    finally:
        for logger in hosts:
            logger.removeHandler(recorder)
        for logger, level, disabled in saved:
            logger.setLevel(level)
            logger.disabled = disabled
    return Observed(error, recorder.records, [str(warning.message) for warning in caught])
