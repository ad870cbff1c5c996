"""Names of the database objects that supabase/migrations creates: the one place they live."""

from typing import Final

SESSIONS_TABLE: Final = "agent_sessions"
STATE_TABLE: Final = "session_state"
TURNS_TABLE: Final = "agent_turns"

CREATE_SESSION_FUNCTION: Final = "agent_engine_create_session"
GET_OR_CREATE_SESSION_FUNCTION: Final = "agent_engine_get_or_create_session"
APPEND_INTENT_FUNCTION: Final = "agent_engine_append_intent"
APPEND_TEMPLATE_FUNCTION: Final = "agent_engine_append_template"
MERGE_CAPTURED_DATA_FUNCTION: Final = "agent_engine_merge_captured_data"
ADD_TURN_FUNCTION: Final = "agent_engine_add_turn"
GET_RECENT_TURNS_FUNCTION: Final = "agent_engine_get_recent_turns"
POP_TURN_FUNCTION: Final = "agent_engine_pop_turn"
CLEAR_TURNS_FUNCTION: Final = "agent_engine_clear_turns"
DELETE_SESSION_FUNCTION: Final = "agent_engine_delete_session"
DELETE_CONTACT_DATA_FUNCTION: Final = "agent_engine_delete_contact_data"
ADD_TURNS_FUNCTION: Final = "agent_engine_add_turns"
LIST_SESSIONS_FUNCTION: Final = "agent_engine_list_sessions"
PURGE_SESSIONS_BATCH_FUNCTION: Final = "agent_engine_purge_sessions_batch"

SESSION_NOT_FOUND_SQLSTATE: Final = "PT404"
"""Raised by every function for a session that is missing or belongs to another workspace."""

IDEMPOTENCY_CONFLICT_SQLSTATE: Final = "PT409"
"""Raised by agent_engine_add_turn when an idempotency key is already stored for a different
turn; its DETAIL is {"turn_number": <the stored turn's number>}. PostgREST answers 409."""

SESSION_REFERENCE_COLUMN: Final = "session_id"
"""How session_state and agent_turns point at their session: (workspace_id, session_id)
references agent_sessions (workspace_id, id). PostgREST embeds along this foreign key; the
direct transport joins on it."""
