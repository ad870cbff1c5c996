"""Which status changes a session may go through, and how long to wait before retrying one.

closed is final. A paused or handed-off session can be resumed (a human hands the
conversation back to the bot); moving to the status a session already has is allowed.
"""

from __future__ import annotations

import random

from agent_engine._models import SessionStatus

_BACKOFF_BASE_SECONDS = 0.01
_BACKOFF_CAP_SECONDS = 0.5

_ENTERED_FROM: dict[SessionStatus, frozenset[SessionStatus]] = {
    SessionStatus.ACTIVE: frozenset(
        {SessionStatus.ACTIVE, SessionStatus.PAUSED, SessionStatus.HANDED_OFF}
    ),
    SessionStatus.PAUSED: frozenset({SessionStatus.PAUSED, SessionStatus.ACTIVE}),
    SessionStatus.HANDED_OFF: frozenset(
        {SessionStatus.HANDED_OFF, SessionStatus.ACTIVE, SessionStatus.PAUSED}
    ),
    SessionStatus.CLOSED: frozenset(
        {
            SessionStatus.CLOSED,
            SessionStatus.ACTIVE,
            SessionStatus.PAUSED,
            SessionStatus.HANDED_OFF,
        }
    ),
}


def statuses_leading_to(target: SessionStatus) -> tuple[str, ...]:
    """The statuses from which a session may move to `target`, in a stable order."""
    return tuple(status.value for status in SessionStatus if status in _ENTERED_FROM[target])


def may_change_status(current: SessionStatus, target: SessionStatus) -> bool:
    """Whether a session in `current` may move to `target`."""
    return current in _ENTERED_FROM[target]


def conflict_backoff(attempt: int) -> float:
    """Seconds to sleep after the `attempt`-th version conflict ("full jitter").

    A random share of an exponentially growing window, so writers that collided on one
    session spread out instead of colliding again in lockstep.
    """
    window = min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
    return random.uniform(0, window)  # noqa: S311 (jitter, not cryptography)
