-- agent_engine, second migration: an idempotency key reused for a different turn is an
-- error, and a caller-chosen turn number cannot exhaust a session's numbering.
--
-- Replaces public.agent_engine_add_turn with the same signature, so its grants stay as the
-- first migration set them. Runs unchanged on PostgreSQL 15 and later (Supabase).

create or replace function public.agent_engine_add_turn(
    p_session_id uuid,
    p_workspace_id uuid,
    p_role text,
    p_content text,
    p_turn_number integer default null,
    p_intent_detected text default null,
    p_confidence numeric default null,
    p_tools_called jsonb default '[]'::jsonb,
    p_tokens_used integer default 0,
    p_idempotency_key text default null
)
returns jsonb
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
    -- Automatic numbering continues after the highest number, so a chosen number near the
    -- integer maximum would make every later add_turn fail; above this bound more than a
    -- billion numbers stay free. agent_engine's Python inputs enforce the same bound.
    v_max_explicit_turn_number constant integer := 1000000000;
    v_turn public.agent_turns;
begin
    if p_session_id is null or p_workspace_id is null or p_role is null
        or p_content is null or p_tokens_used is null then
        raise exception 'session_id, workspace_id, role, content and tokens_used are required'
            using errcode = '22023';
    end if;
    if jsonb_typeof(p_tools_called) is distinct from 'array' then
        raise exception 'tools_called must be a JSON array' using errcode = '22023';
    end if;
    if p_turn_number > v_max_explicit_turn_number then
        raise exception 'turn_number % is above the highest number a caller may choose (%)',
                        p_turn_number, v_max_explicit_turn_number
            using errcode = '22023';
    end if;

    -- Serialises the turns of one session: the next number and the idempotency lookup
    -- below are read after any concurrent add_turn on the session has committed. No key
    -- update, so inserts of turns (key share on this row) are not blocked.
    perform
      from public.agent_sessions s
     where s.workspace_id = p_workspace_id
       and s.id = p_session_id
       for no key update;
    if not found then
        raise exception 'session % not found in workspace %', p_session_id, p_workspace_id
            using errcode = 'PT404';
    end if;

    if p_idempotency_key is not null then
        select t.* into v_turn
          from public.agent_turns t
         where t.workspace_id = p_workspace_id
           and t.session_id = p_session_id
           and t.idempotency_key = p_idempotency_key;
        if found then
            -- A retry carries the same turn; the same key on a different turn is a caller's
            -- bug that would otherwise drop a message silently. An omitted number matches.
            if v_turn.role is distinct from p_role
                or v_turn.content is distinct from p_content
                or v_turn.tokens_used is distinct from p_tokens_used
                or v_turn.tools_called is distinct from p_tools_called
                or v_turn.intent_detected is distinct from p_intent_detected
                or v_turn.confidence is distinct from p_confidence
                or v_turn.turn_number is distinct from coalesce(p_turn_number,
                                                                v_turn.turn_number) then
                raise exception 'idempotency key % is already stored for turn % of session % '
                                'with different values',
                                p_idempotency_key, v_turn.turn_number, p_session_id
                    using errcode = 'PT409',
                          detail = jsonb_build_object('turn_number', v_turn.turn_number)::text,
                          hint = 'A new message needs a new idempotency key.';
            end if;
            return to_jsonb(v_turn);
        end if;
    end if;

    -- An explicit number that is already taken fails here with 23505.
    insert into public.agent_turns (session_id, workspace_id, turn_number, role, content,
                                    intent_detected, confidence, tools_called, tokens_used,
                                    idempotency_key)
    values (
        p_session_id,
        p_workspace_id,
        coalesce(
            p_turn_number,
            (select max(t.turn_number) + 1
               from public.agent_turns t
              where t.workspace_id = p_workspace_id
                and t.session_id = p_session_id),
            1),
        p_role,
        p_content,
        p_intent_detected,
        p_confidence,
        p_tools_called,
        p_tokens_used,
        p_idempotency_key
    )
    returning * into v_turn;

    -- Running totals only: version guards mode and status, so it is left alone.
    update public.agent_sessions s
       set turn_count = s.turn_count + 1,
           tokens_used = s.tokens_used + p_tokens_used,
           last_activity_at = now()
     where s.workspace_id = p_workspace_id
       and s.id = p_session_id;

    return to_jsonb(v_turn);
end;
$$;

comment on function public.agent_engine_add_turn is
    'Stores a turn and, in the same transaction, adds it to the session''s turn_count, '
    'tokens_used and last_activity_at (version is not changed); returns the turn row as JSON. '
    'The number defaults to the next one (1 for the first turn); concurrent callers on one '
    'session are serialised by a lock on the session row. With an idempotency key already '
    'stored for the session it returns that turn and changes nothing when the call carries '
    'the same turn (role, content, tokens, tool calls, intent, confidence and, if given, '
    'number), and raises PT409 (DETAIL {"turn_number": <the stored turn''s number>}) when it '
    'carries a different one. Raises PT404 when the session is not in the workspace, 23505 '
    'for a taken explicit number, 22023 for missing arguments or an explicit number above '
    '1000000000; values are checked by the agent_turns constraints (23514).';


-- PostgREST caches the schema; reload it so the new comment and body are seen at once.
notify pgrst, 'reload schema';
