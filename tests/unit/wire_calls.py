"""The manager calls of the unit suites, one per kind of request on the wire, with the route
each is sent to: shared by the error and failure suites of the Supabase path."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import respx

from agent_engine import SessionManager
from tests.unit.conftest import AGENT_ID, Ids


@dataclass(frozen=True)
class WireCall:
    """A manager call and the route it sends to; `names_session` when it has a session id."""

    name: str
    method: str
    path: str
    run: Callable[[SessionManager, Ids], object]
    names_session: bool = True

    def route(self, api: respx.MockRouter) -> respx.Route:
        return api.route(method=self.method, path=self.path)


GET_SESSION = WireCall(
    "get_session",
    "GET",
    "/agent_sessions",
    lambda manager, ids: manager.get_session(ids.session_id, workspace_id=ids.workspace_id),
)
GET_SESSION_BY_CONVERSATION = WireCall(
    "get_session_by_conversation",
    "GET",
    "/agent_sessions",
    lambda manager, ids: manager.get_session_by_conversation(
        ids.conversation_id, AGENT_ID, workspace_id=ids.workspace_id
    ),
    names_session=False,
)
UPDATE_SESSION_WITH_VERSION = WireCall(
    "update_session_with_version",
    "PATCH",
    "/agent_sessions",
    lambda manager, ids: manager.update_session_with_version(
        ids.session_id, 2, workspace_id=ids.workspace_id, current_mode="scheduling"
    ),
)
UPDATE_STATE = WireCall(
    "update_state",
    "PATCH",
    "/session_state",
    lambda manager, ids: manager.update_state(
        ids.session_id, workspace_id=ids.workspace_id, templates_sent=["welcome_v2"]
    ),
)
CREATE_SESSION = WireCall(
    "create_session",
    "POST",
    "/rpc/agent_engine_create_session",
    lambda manager, ids: manager.create_session(
        workspace_id=ids.workspace_id,
        agent_id=AGENT_ID,
        conversation_id=ids.conversation_id,
        initial_mode="greeting",
    ),
    names_session=False,
)
ADD_TURN = WireCall(
    "add_turn",
    "POST",
    "/rpc/agent_engine_add_turn",
    lambda manager, ids: manager.add_turn(
        ids.session_id, workspace_id=ids.workspace_id, role="user", content="hello"
    ),
)
GET_TURNS = WireCall(
    "get_turns",
    "GET",
    "/agent_sessions",
    lambda manager, ids: manager.get_turns(ids.session_id, workspace_id=ids.workspace_id),
)

WIRE_CALLS = [
    GET_SESSION,
    GET_SESSION_BY_CONVERSATION,
    UPDATE_SESSION_WITH_VERSION,
    UPDATE_STATE,
    CREATE_SESSION,
    ADD_TURN,
]
"""One call per kind of request on the wire: read one, read many, guarded PATCH, PATCH, RPC."""
