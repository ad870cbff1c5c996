"""The version-guarded update: one PATCH on success; on no match (406 PGRST116) a re-read says why.

PostgREST answers a PATCH with `Accept: application/vnd.pgrst.object+json` that matched no row
with 406 PGRST116 and changes nothing; the manager then reads version, status, current_mode and
agent_id once to tell a lost race from a missing session or a forbidden transition.
"""

from __future__ import annotations

import json

import httpx
import pytest
import respx

from agent_engine import (
    InvalidTransitionError,
    SessionAlreadyActiveError,
    SessionError,
    SessionManager,
    SessionNotFoundError,
    VersionConflictError,
)
from tests.postgrest_responses import error_response
from tests.unit.conftest import (
    AGENT_ID,
    OBJECT_MEDIA_TYPE,
    OTHER_AGENT_ID,
    Ids,
    Rows,
    assert_service_key_sent,
    no_rows_response,
    object_response,
    query_items,
)

SECOND_LOOK_COLUMNS = "version,status,current_mode,agent_id"


def _second_look_row(
    version: int, status: str = "active", current_mode: str = "qualifying", agent_id: str = AGENT_ID
) -> dict[str, object]:
    return {
        "version": version,
        "status": status,
        "current_mode": current_mode,
        "agent_id": agent_id,
    }


def _assert_second_look(request: httpx.Request, ids: Ids) -> None:
    assert request.method == "GET"
    assert request.url.path == "/rest/v1/agent_sessions"
    assert query_items(request) == sorted(
        [
            ("select", SECOND_LOOK_COLUMNS),
            ("id", f"eq.{ids.session_id}"),
            ("workspace_id", f"eq.{ids.workspace_id}"),
        ]
    )
    assert request.headers["accept"] == OBJECT_MEDIA_TYPE
    assert_service_key_sent(request)


def test_guarded_update_that_matches_returns_the_new_version_in_one_round_trip(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    api.patch("/agent_sessions").mock(
        return_value=object_response(rows.session(version=12, current_mode="scheduling"))
    )

    session = manager.update_session_with_version(
        ids.session_id, 11, workspace_id=ids.workspace_id, current_mode="scheduling"
    )

    assert session.version == 12
    assert api.calls.call_count == 1


def test_guarded_update_on_stale_version_raises_conflict_with_actual_version(
    manager: SessionManager, api: respx.MockRouter, ids: Ids
) -> None:
    patch = api.patch("/agent_sessions").mock(return_value=no_rows_response())
    look = api.get("/agent_sessions").mock(return_value=object_response(_second_look_row(5)))

    with pytest.raises(VersionConflictError) as caught:
        manager.update_session_with_version(
            ids.session_id, 3, workspace_id=ids.workspace_id, current_mode="scheduling"
        )

    error = caught.value
    assert error.expected_version == 3
    assert error.actual_version == 5
    assert error.retryable is True
    assert error.code == "PGRST116"
    assert error.session_id == ids.session_id
    assert error.workspace_id == ids.workspace_id
    assert json.loads(json.dumps(error.to_dict())) == {
        "error": "VersionConflictError",
        "retryable": True,
        "message": str(error),
        "session_id": str(ids.session_id),
        "workspace_id": str(ids.workspace_id),
        "code": "PGRST116",
        "expected_version": 3,
        "actual_version": 5,
    }
    assert api.calls.call_count == 2
    assert [call.request.method for call in api.calls] == ["PATCH", "GET"]
    assert patch.call_count == 1
    _assert_second_look(look.calls.last.request, ids)


def test_guarded_update_of_a_missing_session_raises_not_found_after_the_re_read(
    manager: SessionManager, api: respx.MockRouter, ids: Ids
) -> None:
    api.patch("/agent_sessions").mock(return_value=no_rows_response())
    look = api.get("/agent_sessions").mock(return_value=no_rows_response())

    with pytest.raises(SessionNotFoundError) as caught:
        manager.close_session(ids.session_id, 3, workspace_id=ids.workspace_id)

    assert not isinstance(caught.value, VersionConflictError)
    assert caught.value.session_id == ids.session_id
    assert caught.value.workspace_id == ids.workspace_id
    assert caught.value.code == "PGRST116"
    assert caught.value.retryable is False
    assert api.calls.call_count == 2
    _assert_second_look(look.calls.last.request, ids)


def test_resuming_a_closed_session_raises_invalid_transition_from_closed_to_active(
    manager: SessionManager, api: respx.MockRouter, ids: Ids
) -> None:
    api.patch("/agent_sessions").mock(return_value=no_rows_response())
    api.get("/agent_sessions").mock(
        return_value=object_response(_second_look_row(3, status="closed"))
    )

    with pytest.raises(InvalidTransitionError) as caught:
        manager.resume_session(ids.session_id, 3, workspace_id=ids.workspace_id)

    error = caught.value
    assert error.from_value == "closed"
    assert error.to_value == "active"
    assert error.retryable is False
    assert error.session_id == ids.session_id
    assert error.workspace_id == ids.workspace_id
    assert json.loads(json.dumps(error.to_dict()))["from_value"] == "closed"
    assert api.calls.call_count == 2


def test_pausing_a_handed_off_session_raises_invalid_transition(
    manager: SessionManager, api: respx.MockRouter, ids: Ids
) -> None:
    api.patch("/agent_sessions").mock(return_value=no_rows_response())
    api.get("/agent_sessions").mock(
        return_value=object_response(_second_look_row(8, status="handed_off"))
    )

    with pytest.raises(InvalidTransitionError) as caught:
        manager.pause_session(ids.session_id, 8, workspace_id=ids.workspace_id)

    assert (caught.value.from_value, caught.value.to_value) == ("handed_off", "paused")


def test_a_forbidden_status_at_another_version_is_reported_as_a_conflict_to_re_read(
    manager: SessionManager, api: respx.MockRouter, ids: Ids
) -> None:
    # The row moved on since the caller read it: the caller's view is stale, so the answer
    # is a retryable conflict, not a verdict on a transition it did not see.
    api.patch("/agent_sessions").mock(return_value=no_rows_response())
    api.get("/agent_sessions").mock(
        return_value=object_response(_second_look_row(4, status="closed"))
    )

    with pytest.raises(VersionConflictError) as caught:
        manager.resume_session(ids.session_id, 3, workspace_id=ids.workspace_id)

    assert (caught.value.expected_version, caught.value.actual_version) == (3, 4)


def test_a_no_match_at_the_same_version_with_nothing_forbidden_is_a_retryable_conflict(
    manager: SessionManager, api: respx.MockRouter, ids: Ids
) -> None:
    # A guard failed and then changed back before the re-read: a race, safe to retry.
    api.patch("/agent_sessions").mock(return_value=no_rows_response())
    api.get("/agent_sessions").mock(
        return_value=object_response(_second_look_row(3, status="paused"))
    )

    with pytest.raises(VersionConflictError) as caught:
        manager.resume_session(ids.session_id, 3, workspace_id=ids.workspace_id)

    assert (caught.value.expected_version, caught.value.actual_version) == (3, 3)
    assert caught.value.retryable is True


def test_resume_when_the_conversation_has_another_active_session_raises_already_active(
    manager: SessionManager, api: respx.MockRouter, ids: Ids
) -> None:
    details = (
        f"Key (workspace_id, conversation_id, agent_id)=({ids.workspace_id}, "
        f"{ids.conversation_id}, {AGENT_ID}) already exists."
    )
    api.patch("/agent_sessions").mock(
        return_value=error_response(
            409,
            "23505",
            'duplicate key value violates unique constraint "agent_sessions_one_active_idx"',
            details,
        )
    )

    with pytest.raises(SessionAlreadyActiveError) as caught:
        manager.resume_session(ids.session_id, 3, workspace_id=ids.workspace_id)

    error = caught.value
    assert error.session_id == ids.session_id
    assert error.workspace_id == ids.workspace_id
    assert error.code == "23505"
    assert error.details == details
    assert error.retryable is False
    assert api.calls.call_count == 1


def test_a_failed_guarded_update_other_than_no_match_is_not_re_read(
    manager: SessionManager, api: respx.MockRouter, ids: Ids
) -> None:
    api.patch("/agent_sessions").mock(
        return_value=error_response(
            503, "PGRST000", "Database connection error. Retrying the connection."
        )
    )

    with pytest.raises(SessionError) as caught:
        manager.pause_session(ids.session_id, 3, workspace_id=ids.workspace_id)

    assert caught.value.code == "PGRST000"
    assert api.calls.call_count == 1


# With a registry: mode changes follow the agents' valid_transitions


def test_with_registry_a_mode_change_carries_the_transition_guard_in_the_patch(
    registry_manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    route = api.patch("/agent_sessions").mock(
        return_value=object_response(rows.session(version=4, current_mode="closing"))
    )

    session = registry_manager.update_session_with_version(
        ids.session_id, 3, workspace_id=ids.workspace_id, current_mode="closing"
    )

    assert api.calls.call_count == 1
    request = route.calls.last.request
    assert query_items(request) == sorted(
        [
            ("id", f"eq.{ids.session_id}"),
            ("workspace_id", f"eq.{ids.workspace_id}"),
            ("version", "eq.3"),
            ("or", f"(and(agent_id.eq.{AGENT_ID},current_mode.in.(scheduling,closing)))"),
        ]
    )
    assert request.headers["accept"] == OBJECT_MEDIA_TYPE
    assert request.headers["prefer"] == "return=representation"
    assert session.version == 4
    assert session.current_mode == "closing"


def test_with_registry_the_guard_has_one_branch_per_agent_that_has_the_target_mode(
    registry_manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    route = api.patch("/agent_sessions").mock(
        return_value=object_response(rows.session(version=4, current_mode="scheduling"))
    )

    registry_manager.update_session_with_version(
        ids.session_id, 3, workspace_id=ids.workspace_id, current_mode="scheduling"
    )

    guard = dict(query_items(route.calls.last.request))["or"]
    assert guard == (
        f"(and(agent_id.eq.{OTHER_AGENT_ID},current_mode.in.(pitching,scheduling)),"
        f"and(agent_id.eq.{AGENT_ID},current_mode.in.(qualifying,scheduling)))"
    )


def test_with_registry_a_mode_of_no_registered_agent_raises_before_any_request(
    registry_manager: SessionManager, offline: respx.MockRouter, ids: Ids
) -> None:
    with pytest.raises(InvalidTransitionError) as caught:
        registry_manager.update_session_with_version(
            ids.session_id, 3, workspace_id=ids.workspace_id, current_mode="teleporting"
        )

    assert caught.value.to_value == "teleporting"
    assert caught.value.from_value is None
    assert caught.value.session_id == ids.session_id
    assert caught.value.workspace_id == ids.workspace_id
    assert offline.calls.call_count == 0


def test_with_registry_a_mode_the_agent_does_not_allow_from_the_current_one_is_invalid(
    registry_manager: SessionManager, api: respx.MockRouter, ids: Ids
) -> None:
    api.patch("/agent_sessions").mock(return_value=no_rows_response())
    api.get("/agent_sessions").mock(
        return_value=object_response(_second_look_row(3, current_mode="greeting"))
    )

    with pytest.raises(InvalidTransitionError) as caught:
        registry_manager.update_session_with_version(
            ids.session_id, 3, workspace_id=ids.workspace_id, current_mode="closing"
        )

    assert (caught.value.from_value, caught.value.to_value) == ("greeting", "closing")
    assert caught.value.session_id == ids.session_id
    assert api.calls.call_count == 2


def test_with_registry_a_session_of_an_unregistered_agent_cannot_change_mode(
    registry_manager: SessionManager, api: respx.MockRouter, ids: Ids
) -> None:
    api.patch("/agent_sessions").mock(return_value=no_rows_response())
    api.get("/agent_sessions").mock(
        return_value=object_response(
            _second_look_row(3, current_mode="scheduling", agent_id="retired-bot")
        )
    )

    with pytest.raises(InvalidTransitionError, match="retired-bot"):
        registry_manager.update_session_with_version(
            ids.session_id, 3, workspace_id=ids.workspace_id, current_mode="closing"
        )


def test_with_registry_an_allowed_mode_at_another_version_is_a_conflict(
    registry_manager: SessionManager, api: respx.MockRouter, ids: Ids
) -> None:
    api.patch("/agent_sessions").mock(return_value=no_rows_response())
    api.get("/agent_sessions").mock(
        return_value=object_response(_second_look_row(6, current_mode="scheduling"))
    )

    with pytest.raises(VersionConflictError) as caught:
        registry_manager.update_session_with_version(
            ids.session_id, 3, workspace_id=ids.workspace_id, current_mode="closing"
        )

    assert (caught.value.expected_version, caught.value.actual_version) == (3, 6)


def test_without_registry_any_mode_is_sent_unguarded(
    manager: SessionManager, api: respx.MockRouter, ids: Ids, rows: Rows
) -> None:
    route = api.patch("/agent_sessions").mock(
        return_value=object_response(rows.session(version=4, current_mode="teleporting"))
    )

    manager.update_session_with_version(
        ids.session_id, 3, workspace_id=ids.workspace_id, current_mode="teleporting"
    )

    assert "or" not in dict(query_items(route.calls.last.request))
