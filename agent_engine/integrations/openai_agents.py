"""agent_engine as the session store of the OpenAI Agents SDK.

    from agent_engine.integrations.openai_agents import AgentEngineSession

    session = AgentEngineSession("whatsapp:+5511999990000", manager, workspace_id=workspace)
    result = await Runner.run(agent, "Do you have size 42?", session=session)

Needs the extra: ``pip install "agent_engine[openai-agents]"`` (openai-agents >= 0.24). The
core of agent_engine never imports this module.

What is stored: the SDK's session id names a conversation; the conversation has one active
agent_engine session per workspace and agent, created on first use (get-or-create), and each
SDK item is one turn of it, numbered in the order the database stored it. The raw item is kept
in the turn's metadata and given back exactly; role and content are derived from it for
people reading the turns. Token usage the run reports goes to the turn of the first item a
model produced in each stored batch, so the session's tokens_used adds up the run's.
"""

from __future__ import annotations

import uuid
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar, cast

from agent_engine._async.session_manager import AsyncSessionManager
from agent_engine._errors import SessionNotFoundError
from agent_engine._models import MAX_PAGE_SIZE, AgentTurn, NewTurns
from agent_engine.integrations._openai_items import is_model_output, item_of, turn_of

try:
    from agents.items import TResponseInputItem
    from agents.memory import SessionSettings
    from agents.run_context import RunContextWrapper
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "agent_engine.integrations.openai_agents needs the OpenAI Agents SDK: "
        'pip install "agent_engine[openai-agents]"'
    ) from error

__all__ = [
    "DEFAULT_AGENT_ID",
    "DEFAULT_MODE",
    "SESSION_ID_NAMESPACE",
    "AgentEngineSession",
    "conversation_id_of",
]

SESSION_ID_NAMESPACE = uuid.UUID("d4b7e8d3-e350-55c8-9f94-ec6af2262f56")
"""The uuid5 namespace that maps an SDK session id that is not a UUID to a conversation id.
Fixed forever: changing it would orphan every stored conversation."""

DEFAULT_AGENT_ID = "openai-agents"
"""The agent_id of the sessions the adapter creates, unless given."""

DEFAULT_MODE = "conversation"
"""The current_mode of a new session when the manager has no registry (with one, the
agent's initial_state)."""

_SESSION_IDS_KEPT = 10_000
"""How many conversations' session row ids a manager's adapters remember (least recently
used first out): enough for a busy instance, bounded for one that sees millions."""

Result = TypeVar("Result")
WorkspaceFromContext = Callable[[Any], uuid.UUID | str]
"""Given the run's context object (what was passed to Runner.run(context=...)), its
workspace id."""


def conversation_id_of(session_id: str) -> uuid.UUID:
    """The conversation id of an SDK session id: a UUID as is (any spelling), anything
    else through uuid5(SESSION_ID_NAMESPACE, session_id), so the same string always names
    the same conversation, in every process."""
    try:
        return uuid.UUID(session_id)
    except ValueError:
        return uuid.uuid5(SESSION_ID_NAMESPACE, session_id)


class _SessionIds:
    """Which session row serves a (workspace, agent, conversation), remembered per manager
    so that a session object built per request costs no extra round trip after the first."""

    def __init__(self) -> None:
        self._ids: OrderedDict[tuple[uuid.UUID, str, uuid.UUID], uuid.UUID] = OrderedDict()

    def get(self, key: tuple[uuid.UUID, str, uuid.UUID]) -> uuid.UUID | None:
        session_id = self._ids.get(key)
        if session_id is not None:
            self._ids.move_to_end(key)
        return session_id

    def put(self, key: tuple[uuid.UUID, str, uuid.UUID], session_id: uuid.UUID) -> None:
        self._ids[key] = session_id
        self._ids.move_to_end(key)
        if len(self._ids) > _SESSION_IDS_KEPT:
            self._ids.popitem(last=False)

    def forget(self, key: tuple[uuid.UUID, str, uuid.UUID], session_id: uuid.UUID) -> None:
        if self._ids.get(key) == session_id:
            del self._ids[key]


_session_ids: weakref.WeakKeyDictionary[AsyncSessionManager, _SessionIds] = (
    weakref.WeakKeyDictionary()
)


class AgentEngineSession:
    """An OpenAI Agents SDK `Session` stored by an AsyncSessionManager (either transport).

    `session_id` is the SDK's id of the conversation (a phone number, a thread id...; see
    conversation_id_of). The workspace is either fixed (`workspace_id`) or read from each
    run's context (`workspace_from_context`, called with the object given to
    `Runner.run(context=...)`): the SDK then passes its run context to every call. Exactly
    one of the two is required, and two workspaces never see each other's items, even under
    the same session id.

    Costs: add_items is one round trip (add_turns: one transaction, consecutive numbers,
    all or nothing; batches above 1,000 items are stored 1,000 at a time), get_items with a
    limit is one (get_recent_turns), without one it reads the whole history in one,
    pop_item is pop_turn and clear_session is clear_turns. The first call for a
    conversation in a process adds one get-or-create round trip; the session row's id is
    then remembered by the manager. A session deleted since (delete_session, erasure,
    retention) is created anew on the next call.

    A session that is closed (close_session) keeps its turns; an adapter that remembers it
    keeps using it, while a new process starts a new session for the conversation.
    """

    session_settings: SessionSettings | None

    def __init__(
        self,
        session_id: str,
        manager: AsyncSessionManager,
        *,
        workspace_id: uuid.UUID | str | None = None,
        workspace_from_context: WorkspaceFromContext | None = None,
        agent_id: str = DEFAULT_AGENT_ID,
        initial_mode: str | None = None,
        contact_id: uuid.UUID | str | None = None,
        session_settings: SessionSettings | None = None,
    ) -> None:
        """Raises ValueError for a blank session id, a manager that is not an
        AsyncSessionManager, or not exactly one of workspace_id and workspace_from_context."""
        if not isinstance(session_id, str) or not session_id.strip():
            raise ValueError("session_id must be a non-blank string")
        if not isinstance(manager, AsyncSessionManager):
            raise ValueError(
                f"manager must be an AsyncSessionManager, got {type(manager).__name__}"
            )
        if (workspace_id is None) == (workspace_from_context is None):
            raise ValueError("give exactly one of workspace_id and workspace_from_context")
        self.session_id = session_id
        self.session_settings = session_settings
        self._manager = manager
        self._conversation_id = conversation_id_of(session_id)
        self._workspace_id = None if workspace_id is None else _workspace(workspace_id)
        self._workspace_from_context = workspace_from_context
        self._agent_id = agent_id
        # Without a registry a new session needs a mode; with one, the agent's initial state.
        has_registry = manager._registry is not None
        self._initial_mode = (
            initial_mode if initial_mode is not None or has_registry else DEFAULT_MODE
        )
        self._contact_id = contact_id
        self._session_ids = _session_ids.setdefault(manager, _SessionIds())
        # Per run: the run's total tokens already written to a turn.
        self._tokens_recorded: weakref.WeakKeyDictionary[RunContextWrapper[Any], int] = (
            weakref.WeakKeyDictionary()
        )

    async def get_items(
        self, limit: int | None = None, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> list[TResponseInputItem]:
        """The conversation's items, oldest first: the newest `limit` (else the
        session_settings' limit) or all of them."""
        if limit is None and self.session_settings is not None:
            limit = self.session_settings.limit
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise ValueError(f"limit must be an integer or None, got {type(limit).__name__}")
        if limit is not None and limit <= 0:
            return []
        workspace_id = self._workspace_for(wrapper)

        async def read(session_id: uuid.UUID) -> list[AgentTurn]:
            if limit is not None and limit <= MAX_PAGE_SIZE:
                return await self._manager.get_recent_turns(
                    session_id, workspace_id=workspace_id, limit=limit
                )
            turns = await self._manager.get_turns(session_id, workspace_id=workspace_id)
            return turns if limit is None else turns[-limit:]

        turns = await self._on_session(workspace_id, read)
        return [_item(turn) for turn in turns]

    async def add_items(
        self, items: list[TResponseInputItem], *, wrapper: RunContextWrapper[Any] | None = None
    ) -> None:
        """Appends the items as turns, in one round trip and one transaction (per 1,000)."""
        if not items:
            return
        workspace_id = self._workspace_for(wrapper)
        turns = [turn_of(cast(Mapping[str, Any], item)) for item in items]
        batches = [
            turns[start : start + MAX_PAGE_SIZE] for start in range(0, len(turns), MAX_PAGE_SIZE)
        ]
        if len(batches) > 1 or self._session_ids.get(self._key(workspace_id)) is None:
            # add_turns checks a batch before sending it; when something else would be sent
            # first (a conversation's get-or-create, an earlier batch), every batch is
            # checked here too, so that bad input is refused before any request.
            for batch in batches:
                NewTurns.model_validate({"turns": batch})
        run_total = self._charge_tokens(items, turns, wrapper)

        async def store(session_id: uuid.UUID) -> None:
            for batch in batches:
                await self._manager.add_turns(session_id, batch, workspace_id=workspace_id)

        await self._on_session(workspace_id, store)
        if wrapper is not None and run_total is not None:
            self._tokens_recorded[wrapper] = run_total

    async def pop_item(
        self, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> TResponseInputItem | None:
        """Removes and returns the newest item, or None when there is none."""
        workspace_id = self._workspace_for(wrapper)

        async def pop(session_id: uuid.UUID) -> AgentTurn | None:
            return await self._manager.pop_turn(session_id, workspace_id=workspace_id)

        turn = await self._on_session(workspace_id, pop)
        return None if turn is None else _item(turn)

    async def clear_session(self, *, wrapper: RunContextWrapper[Any] | None = None) -> None:
        """Removes every item (the session row stays, its totals back to zero)."""
        workspace_id = self._workspace_for(wrapper)

        async def clear(session_id: uuid.UUID) -> int:
            return await self._manager.clear_turns(session_id, workspace_id=workspace_id)

        await self._on_session(workspace_id, clear)

    def _workspace_for(self, wrapper: RunContextWrapper[Any] | None) -> uuid.UUID:
        if self._workspace_id is not None:
            return self._workspace_id
        if wrapper is None:
            raise ValueError(
                f"session {self.session_id!r} takes its workspace from the run context, and "
                "this call has none: call it from a run, or build the session with workspace_id"
            )
        assert self._workspace_from_context is not None
        return _workspace(self._workspace_from_context(wrapper.context))

    def _key(self, workspace_id: uuid.UUID) -> tuple[uuid.UUID, str, uuid.UUID]:
        """Which conversation's session row, in the manager's memory of them."""
        return (workspace_id, self._agent_id, self._conversation_id)

    async def _on_session(
        self,
        workspace_id: uuid.UUID,
        call: Callable[[uuid.UUID], Awaitable[Result]],
    ) -> Result:
        """Runs `call` on the conversation's session row, found or created first if this
        manager does not know it, and again once on a new row if the known one is gone."""
        key = self._key(workspace_id)
        known = self._session_ids.get(key)
        if known is not None:
            try:
                return await call(known)
            except SessionNotFoundError:
                # Deleted since (delete_session, erasure, retention): nothing was done on
                # it, so the call can go to a new session.
                self._session_ids.forget(key, known)
        session = await self._manager.get_or_create_session(
            workspace_id=workspace_id,
            agent_id=self._agent_id,
            conversation_id=self._conversation_id,
            contact_id=self._contact_id,
            initial_mode=self._initial_mode,
        )
        self._session_ids.put(key, session.id)
        return await call(session.id)

    def _charge_tokens(
        self,
        items: list[TResponseInputItem],
        turns: list[dict[str, Any]],
        wrapper: RunContextWrapper[Any] | None,
    ) -> int | None:
        """Puts the tokens the run used since its last stored batch on the first model
        output of this batch; the run's new total to remember once stored, or None."""
        if wrapper is None:
            return None
        run_total = wrapper.usage.total_tokens
        unrecorded = run_total - self._tokens_recorded.get(wrapper, 0)
        if unrecorded <= 0:
            return None
        for item, turn in zip(items, turns, strict=True):
            if is_model_output(cast(Mapping[str, Any], item)):
                turn["tokens_used"] = unrecorded
                return run_total
        return None  # only input or tool output: the tokens go with the model's next item


def _workspace(value: uuid.UUID | str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        raise ValueError(f"workspace id must be a UUID, got {value!r}") from None


def _item(turn: AgentTurn) -> TResponseInputItem:
    return cast(TResponseInputItem, item_of(turn.role, turn.content, turn.metadata))
