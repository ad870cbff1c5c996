-- agent_engine, third migration: the lifecycle of turns and sessions.
--
-- - agent_turns.metadata: an app-defined JSON object per turn, part of the idempotency
--   comparison of public.agent_engine_add_turn (which gains p_metadata) and of the new
--   public.agent_engine_add_turns (a batch in one transaction);
-- - undoing turns (public.agent_engine_pop_turn, public.agent_engine_clear_turns) and
--   reading the newest ones page by page (public.agent_engine_get_recent_turns);
-- - listing a workspace's sessions page by page (public.agent_engine_list_sessions);
-- - deleting a session, a contact's data, and old sessions in batches
--   (public.agent_engine_delete_session, public.agent_engine_delete_contact_data,
--   public.agent_engine_purge_sessions_batch and the procedure
--   public.agent_engine_purge_sessions for pg_cron).
--
-- The rules several functions share are helpers: finding and locking the session
-- (public.agent_engine_lock_session), its PT404 (public.agent_engine_raise_session_not_found),
-- checking a turn (public.agent_engine_check_turn) and storing it with the idempotency
-- comparison (public.agent_engine_store_turn). Every writer of a session's turns locks the
-- session row first (for no key update), so add, pop and clear on one session run one after
-- the other and turn numbers stay 1..N without gaps or duplicates.
--
-- Runs unchanged on PostgreSQL 15 and later (Supabase).


-- ---------------------------------------------------------------------------
-- Turn metadata
-- ---------------------------------------------------------------------------

-- A constant default adds the column without rewriting the table; the check then reads
-- the existing rows once (they all hold the default).
alter table public.agent_turns
    add column metadata jsonb not null default '{}'::jsonb,
    add constraint agent_turns_metadata_check check (jsonb_typeof(metadata) = 'object');

comment on column public.agent_turns.metadata is
    'App-defined JSON object stored with the turn and returned as stored (jsonb: key order '
    'and duplicate keys are not kept); agent_engine never interprets it. Part of the '
    'idempotency comparison of public.agent_engine_add_turn and public.agent_engine_add_turns.';
comment on constraint agent_turns_metadata_check on public.agent_turns is
    'metadata is a JSON object.';


-- ---------------------------------------------------------------------------
-- Indexes
-- ---------------------------------------------------------------------------

create index agent_sessions_workspace_activity_idx
    on public.agent_sessions (workspace_id, last_activity_at desc, id desc);

comment on index public.agent_sessions_workspace_activity_idx is
    'Serves public.agent_engine_list_sessions: a workspace''s sessions newest activity first, '
    'ties by id, read from a keyset position without sorting, so a page costs the same '
    'whatever the number of sessions; it can also serve a workspace-scoped purge.';

create index agent_sessions_status_activity_idx
    on public.agent_sessions (status, last_activity_at);

comment on index public.agent_sessions_status_activity_idx is
    'Serves the retention scan of public.agent_engine_purge_sessions_batch: sessions in given '
    'statuses whose last activity is older than a cutoff.';


-- ---------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------

create function public.agent_engine_raise_session_not_found(
    p_session_id uuid,
    p_workspace_id uuid
)
returns void
language plpgsql
stable
security invoker
set search_path = ''
as $$
begin
    if p_session_id is null or p_workspace_id is null then
        raise exception 'session_id and workspace_id are required' using errcode = '22023';
    end if;
    -- Same wording for a missing session and another workspace's, so a caller cannot probe
    -- other workspaces' session ids.
    raise exception 'session % not found in workspace %', p_session_id, p_workspace_id
        using errcode = 'PT404';
end;
$$;

comment on function public.agent_engine_raise_session_not_found is
    'Always raises: PT404 "session <id> not found in workspace <id>" (22023 when either id is '
    'null). The one wording of the lifecycle functions'' not-found error.';


create function public.agent_engine_lock_session(
    p_session_id uuid,
    p_workspace_id uuid
)
returns void
language plpgsql
volatile
security invoker
set search_path = ''
as $$
begin
    -- No key update: inserts of turns (whose foreign key check takes key share on this
    -- row) are not blocked, while every other writer of the session's turns waits here.
    perform
      from public.agent_sessions s
     where s.workspace_id = p_workspace_id
       and s.id = p_session_id
       for no key update;
    if not found then
        perform public.agent_engine_raise_session_not_found(p_session_id, p_workspace_id);
    end if;
end;
$$;

comment on function public.agent_engine_lock_session is
    'Locks the session row (for no key update) until the end of the transaction, or raises '
    'PT404 when the session is not in the workspace. Taken by every function that writes a '
    'session''s turns, so they run one after the other on one session; statements after it '
    'see the turns the previous holder committed.';


create function public.agent_engine_check_turn(
    p_role text,
    p_content text,
    p_turn_number integer,
    p_tools_called jsonb,
    p_tokens_used integer,
    p_metadata jsonb
)
returns void
language plpgsql
immutable
security invoker
set search_path = ''
as $$
declare
    -- Automatic numbering continues after the highest number, so a chosen number near the
    -- integer maximum would make every later add_turn fail; above this bound more than a
    -- billion numbers stay free. agent_engine's Python inputs enforce the same bound.
    v_max_explicit_turn_number constant integer := 1000000000;
begin
    if p_role is null or p_content is null or p_tokens_used is null then
        raise exception 'role, content and tokens_used are required' using errcode = '22023';
    end if;
    if jsonb_typeof(p_tools_called) is distinct from 'array' then
        raise exception 'tools_called must be a JSON array' using errcode = '22023';
    end if;
    if jsonb_typeof(p_metadata) is distinct from 'object' then
        raise exception 'metadata must be a JSON object' using errcode = '22023';
    end if;
    if p_turn_number > v_max_explicit_turn_number then
        raise exception 'turn_number % is above the highest number a caller may choose (%)',
                        p_turn_number, v_max_explicit_turn_number
            using errcode = '22023';
    end if;
end;
$$;

comment on function public.agent_engine_check_turn is
    'Raises 22023 for a turn''s missing role, content or tokens_used, tools_called that is not '
    'a JSON array, metadata that is not a JSON object, or an explicit number above '
    '1000000000. Values are left to the agent_turns constraints (23514).';


create function public.agent_engine_store_turn(
    p_session_id uuid,
    p_workspace_id uuid,
    p_role text,
    p_content text,
    p_turn_number integer,
    p_intent_detected text,
    p_confidence numeric,
    p_tools_called jsonb,
    p_tokens_used integer,
    p_idempotency_key text,
    p_metadata jsonb,
    out o_turn jsonb,
    out o_inserted boolean
)
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
    v_turn public.agent_turns;
begin
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
                or v_turn.metadata is distinct from p_metadata
                or v_turn.turn_number is distinct from coalesce(p_turn_number,
                                                                v_turn.turn_number) then
                raise exception 'idempotency key % is already stored for turn % of session % '
                                'with different values',
                                p_idempotency_key, v_turn.turn_number, p_session_id
                    using errcode = 'PT409',
                          detail = jsonb_build_object('turn_number', v_turn.turn_number)::text,
                          hint = 'A new message needs a new idempotency key.';
            end if;
            o_turn := to_jsonb(v_turn);
            o_inserted := false;
            return;
        end if;
    end if;

    -- An explicit number that is already taken fails here with 23505.
    insert into public.agent_turns (session_id, workspace_id, turn_number, role, content,
                                    intent_detected, confidence, tools_called, tokens_used,
                                    idempotency_key, metadata)
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
        p_idempotency_key,
        p_metadata
    )
    returning * into v_turn;

    o_turn := to_jsonb(v_turn);
    o_inserted := true;
end;
$$;

comment on function public.agent_engine_store_turn is
    'Stores one turn of a session the caller has locked (public.agent_engine_lock_session) '
    'and checked (public.agent_engine_check_turn); does not touch the session''s totals. '
    'o_turn is the turn row as JSON; o_inserted is false when the idempotency key is already '
    'stored with the same role, content, tokens, tool calls, intent, confidence, metadata and '
    '(if given) number, in which case that turn is returned. The same key with any other '
    'value raises PT409 with DETAIL {"turn_number": <the stored turn''s number>}. The number '
    'defaults to the highest + 1 (1 for the first turn); a taken explicit number raises 23505.';


-- ---------------------------------------------------------------------------
-- Adding turns
-- ---------------------------------------------------------------------------

-- A new parameter is a new signature: the old function goes, the new one takes its grants
-- below. PostgREST calls by argument names, so callers without p_metadata keep working.
drop function public.agent_engine_add_turn(
    uuid, uuid, text, text, integer, text, numeric, jsonb, integer, text
);

create function public.agent_engine_add_turn(
    p_session_id uuid,
    p_workspace_id uuid,
    p_role text,
    p_content text,
    p_turn_number integer default null,
    p_intent_detected text default null,
    p_confidence numeric default null,
    p_tools_called jsonb default '[]'::jsonb,
    p_tokens_used integer default 0,
    p_idempotency_key text default null,
    p_metadata jsonb default '{}'::jsonb
)
returns jsonb
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
    v_turn jsonb;
    v_inserted boolean;
begin
    if p_session_id is null or p_workspace_id is null then
        raise exception 'session_id and workspace_id are required' using errcode = '22023';
    end if;
    perform public.agent_engine_check_turn(p_role, p_content, p_turn_number, p_tools_called,
                                           p_tokens_used, p_metadata);

    perform public.agent_engine_lock_session(p_session_id, p_workspace_id);

    select st.o_turn, st.o_inserted into v_turn, v_inserted
      from public.agent_engine_store_turn(p_session_id, p_workspace_id, p_role, p_content,
                                          p_turn_number, p_intent_detected, p_confidence,
                                          p_tools_called, p_tokens_used, p_idempotency_key,
                                          p_metadata) st;

    if v_inserted then
        -- Running totals only: version guards mode and status, so it is left alone.
        update public.agent_sessions s
           set turn_count = s.turn_count + 1,
               tokens_used = s.tokens_used + p_tokens_used,
               last_activity_at = now()
         where s.workspace_id = p_workspace_id
           and s.id = p_session_id;
    end if;

    return v_turn;
end;
$$;

comment on function public.agent_engine_add_turn is
    'Stores a turn and, in the same transaction, adds it to the session''s turn_count, '
    'tokens_used and last_activity_at (version is not changed); returns the turn row as JSON. '
    'The number defaults to the next one (1 for the first turn); concurrent callers on one '
    'session are serialised by a lock on the session row. metadata (default {}) is an '
    'app-defined JSON object stored as given. With an idempotency key already stored for the '
    'session it returns that turn and changes nothing when the call carries the same turn '
    '(role, content, tokens, tool calls, intent, confidence, metadata and, if given, number), '
    'and raises PT409 (DETAIL {"turn_number": <the stored turn''s number>}) when it carries a '
    'different one. Raises PT404 when the session is not in the workspace, 23505 for a taken '
    'explicit number, 22023 for missing arguments, tools_called that is not an array, '
    'metadata that is not an object or an explicit number above 1000000000; values are '
    'checked by the agent_turns constraints (23514).';


create function public.agent_engine_add_turns(
    p_session_id uuid,
    p_workspace_id uuid,
    p_turns jsonb
)
returns jsonb
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
    -- What agent_engine_add_turn's parameters default to; the column defaults agree.
    v_defaults constant jsonb := '{"tools_called": [], "tokens_used": 0, "metadata": {}}';
    v_element jsonb;
    v_index integer;
    v_key text;
    v_value jsonb;
    v_expected text;
    v_tokens numeric;
    v_row public.agent_turns;
    v_rows public.agent_turns[] := '{}';
    v_turn jsonb;
    v_inserted boolean;
    v_result jsonb[] := '{}';
    v_stored integer := 0;
    v_stored_tokens bigint := 0;
begin
    if p_session_id is null or p_workspace_id is null then
        raise exception 'session_id and workspace_id are required' using errcode = '22023';
    end if;
    if jsonb_typeof(p_turns) is distinct from 'array' then
        raise exception 'turns must be a JSON array' using errcode = '22023';
    end if;

    -- Every element is checked before anything is locked or written; indexes in messages
    -- count from 0, as in the JSON the caller sent.
    for v_element, v_index in
        select e.value, e.ordinality - 1 from jsonb_array_elements(p_turns) with ordinality e
    loop
        if jsonb_typeof(v_element) <> 'object' then
            raise exception 'turns[%] must be a JSON object', v_index using errcode = '22023';
        end if;
        for v_key, v_value in select e.key, e.value from jsonb_each(v_element) e loop
            v_expected := case v_key
                when 'role' then 'string'
                when 'content' then 'string'
                when 'intent_detected' then 'string null'
                when 'confidence' then 'number null'
                when 'tools_called' then 'array'
                when 'tokens_used' then 'number'
                when 'idempotency_key' then 'string null'
                when 'metadata' then 'object'
            end;
            if v_expected is null then
                raise exception 'turns[%] has an unknown key "%"', v_index, v_key
                    using errcode = '22023',
                          hint = 'Allowed keys: role, content, intent_detected, confidence, '
                                 'tools_called, tokens_used, idempotency_key, metadata.';
            end if;
            if jsonb_typeof(v_value) <> all (string_to_array(v_expected, ' ')) then
                raise exception 'turns[%].% must be a JSON %', v_index, v_key,
                                replace(v_expected, ' ', ' or ')
                    using errcode = '22023';
            end if;
        end loop;
        if not (v_element ? 'role' and v_element ? 'content') then
            raise exception 'turns[%] needs a role and a content', v_index
                using errcode = '22023';
        end if;
        if v_element ? 'tokens_used' then
            v_tokens := (v_element ->> 'tokens_used')::numeric;
            if v_tokens <> trunc(v_tokens) or v_tokens not between -2147483648 and 2147483647 then
                raise exception 'turns[%].tokens_used must be an integer', v_index
                    using errcode = '22023';
            end if;
            -- jsonb_populate_record reads an integer column from the number's text, which
            -- must then have no fraction ("5.0").
            v_element := v_element || jsonb_build_object('tokens_used', v_tokens::integer);
        end if;

        v_row := jsonb_populate_record(null::public.agent_turns, v_defaults || v_element);
        perform public.agent_engine_check_turn(v_row.role, v_row.content, null,
                                               v_row.tools_called, v_row.tokens_used,
                                               v_row.metadata);
        v_rows := v_rows || v_row;
    end loop;

    if cardinality(v_rows) = 0 then
        -- Nothing to write: the session is only looked up, not locked.
        if not exists (
            select from public.agent_sessions s
             where s.workspace_id = p_workspace_id and s.id = p_session_id
        ) then
            perform public.agent_engine_raise_session_not_found(p_session_id, p_workspace_id);
        end if;
        return '[]'::jsonb;
    end if;

    perform public.agent_engine_lock_session(p_session_id, p_workspace_id);

    -- In order: a key repeated in the batch finds the turn its first occurrence stored, so
    -- it is compared like any stored key (same turn: returned again, else PT409). An error
    -- anywhere rolls the whole batch back.
    foreach v_row in array v_rows loop
        select st.o_turn, st.o_inserted into v_turn, v_inserted
          from public.agent_engine_store_turn(p_session_id, p_workspace_id, v_row.role,
                                              v_row.content, null, v_row.intent_detected,
                                              v_row.confidence, v_row.tools_called,
                                              v_row.tokens_used, v_row.idempotency_key,
                                              v_row.metadata) st;
        v_result := v_result || v_turn;
        if v_inserted then
            v_stored := v_stored + 1;
            v_stored_tokens := v_stored_tokens + v_row.tokens_used;
        end if;
    end loop;

    if v_stored > 0 then
        update public.agent_sessions s
           set turn_count = s.turn_count + v_stored,
               tokens_used = s.tokens_used + v_stored_tokens,
               last_activity_at = now()
         where s.workspace_id = p_workspace_id
           and s.id = p_session_id;
    end if;

    return to_jsonb(v_result);
end;
$$;

comment on function public.agent_engine_add_turns is
    'Stores a batch of turns in one transaction, all or nothing, numbered consecutively after '
    'the session''s highest number; updates turn_count, tokens_used and last_activity_at once '
    '(not at all when nothing new is stored). p_turns is a JSON array of objects with the '
    'keys role, content (required), intent_detected, confidence, tools_called (default []), '
    'tokens_used (default 0), idempotency_key and metadata (default {}); no other key, in '
    'particular no turn_number. Returns the JSON array of the turn rows in input order. A key '
    'already stored with the same turn returns that turn (not stored or counted again); a '
    'key repeated in the batch must carry the same turn as its first occurrence (it is then '
    'returned twice). Otherwise PT409 (DETAIL {"turn_number": N}: the stored turn, or the '
    'number the batch gave the first occurrence) and nothing is written. An empty array '
    'returns [] without touching the session. Raises PT404 when the session is not in the '
    'workspace, 22023 for a malformed batch (message names turns[<index from 0>]), 23514 from '
    'the agent_turns constraints.';


-- ---------------------------------------------------------------------------
-- Undoing and reading turns
-- ---------------------------------------------------------------------------

create function public.agent_engine_pop_turn(
    p_session_id uuid,
    p_workspace_id uuid
)
returns jsonb
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
    v_turn public.agent_turns;
begin
    perform public.agent_engine_lock_session(p_session_id, p_workspace_id);

    delete from public.agent_turns t
     where t.workspace_id = p_workspace_id
       and t.session_id = p_session_id
       and t.turn_number = (select max(n.turn_number)
                              from public.agent_turns n
                             where n.workspace_id = p_workspace_id
                               and n.session_id = p_session_id)
    returning * into v_turn;
    if not found then
        return null;
    end if;

    -- greatest: a turn written straight into the table (not counted) must not make the
    -- totals negative and the pop fail.
    update public.agent_sessions s
       set turn_count = greatest(s.turn_count - 1, 0),
           tokens_used = greatest(s.tokens_used - v_turn.tokens_used, 0)
     where s.workspace_id = p_workspace_id
       and s.id = p_session_id;

    return to_jsonb(v_turn);
end;
$$;

comment on function public.agent_engine_pop_turn is
    'Deletes the session''s newest turn (highest number) and subtracts it from turn_count and '
    'tokens_used (last_activity_at and version are left alone); returns the deleted turn row '
    'as JSON, or null when the session has no turns. The next added turn reuses the number, '
    'and the deleted turn''s idempotency key is free again. Serialised with add_turn by the '
    'session lock. Raises PT404 when the session is not in the workspace.';


create function public.agent_engine_clear_turns(
    p_session_id uuid,
    p_workspace_id uuid
)
returns integer
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
    v_deleted integer;
begin
    perform public.agent_engine_lock_session(p_session_id, p_workspace_id);

    delete from public.agent_turns t
     where t.workspace_id = p_workspace_id
       and t.session_id = p_session_id;
    get diagnostics v_deleted = row_count;

    update public.agent_sessions s
       set turn_count = 0,
           tokens_used = 0
     where s.workspace_id = p_workspace_id
       and s.id = p_session_id
       and (s.turn_count <> 0 or s.tokens_used <> 0);

    return v_deleted;
end;
$$;

comment on function public.agent_engine_clear_turns is
    'Deletes every turn of the session and sets turn_count and tokens_used to 0 '
    '(last_activity_at and version are left alone); returns how many turns it deleted. The '
    'next added turn is number 1. Serialised with add_turn by the session lock. Raises PT404 '
    'when the session is not in the workspace.';


create function public.agent_engine_get_recent_turns(
    p_session_id uuid,
    p_workspace_id uuid,
    p_limit integer,
    p_before_turn integer default null
)
returns jsonb
language plpgsql
stable
security invoker
set search_path = ''
-- Planned with the arguments' values, so an absent p_before_turn drops out of the query
-- and a given one becomes an index condition (a generic plan would filter instead).
set plan_cache_mode = force_custom_plan
-- The ordered walk of agent_turns_turn_number_key is the only plan whose cost does not
-- grow with the session. For a session the statistics think small, the planner would
-- rather read agent_turns_idempotency_key_key (tiny: its null keys deduplicate) and sort
-- every turn of the session.
set enable_sort = off
as $$
declare
    v_turns jsonb;
begin
    if p_limit is null or p_limit not between 1 and 1000 then
        raise exception 'limit must be between 1 and 1000' using errcode = '22023';
    end if;

    -- The newest p_limit rows walking agent_turns_turn_number_key backwards, then put
    -- oldest first: the cost depends on p_limit, not on the session's length.
    select coalesce(jsonb_agg(to_jsonb(r) order by r.turn_number), '[]'::jsonb)
      into v_turns
      from (select t.*
              from public.agent_turns t
             where t.workspace_id = p_workspace_id
               and t.session_id = p_session_id
               and (p_before_turn is null or t.turn_number < p_before_turn)
             order by t.turn_number desc
             limit p_limit) r;

    -- A turn proves its session exists; only an empty page needs the lookup.
    if v_turns = '[]'::jsonb and not exists (
        select from public.agent_sessions s
         where s.workspace_id = p_workspace_id and s.id = p_session_id
    ) then
        perform public.agent_engine_raise_session_not_found(p_session_id, p_workspace_id);
    end if;
    return v_turns;
end;
$$;

comment on function public.agent_engine_get_recent_turns is
    'Returns the session''s newest p_limit turns (only those numbered below p_before_turn when '
    'given) as a JSON array of turn rows, oldest first; [] when there are none. The next '
    'older page passes the first returned turn_number as p_before_turn. Reads backwards along '
    'the (workspace_id, session_id, turn_number) index, so a page costs the same for 10 or '
    '100000 turns. Raises PT404 when the session is not in the workspace, 22023 when p_limit '
    'is not between 1 and 1000.';


-- ---------------------------------------------------------------------------
-- Listing sessions
-- ---------------------------------------------------------------------------

create function public.agent_engine_list_sessions(
    p_workspace_id uuid,
    p_status text default null,
    p_agent_id text default null,
    p_contact_id uuid default null,
    p_conversation_id uuid default null,
    p_active_after timestamptz default null,
    p_active_before timestamptz default null,
    p_limit integer default 50,
    p_after_activity timestamptz default null,
    p_after_id uuid default null
)
returns jsonb
language plpgsql
stable
security invoker
set search_path = ''
-- Planned with the arguments' values, so absent filters drop out of the query and the
-- keyset position becomes an index condition (a generic plan would filter instead).
set plan_cache_mode = force_custom_plan
-- The ordered walk of agent_sessions_workspace_activity_idx is the only plan whose cost
-- does not grow with the workspace; with a filter the statistics find selective, the
-- planner would rather read another index (e.g. agent_sessions_one_active_idx for
-- p_status 'active') and sort every matching session.
set enable_sort = off
as $$
declare
    v_sessions jsonb;
begin
    if p_workspace_id is null then
        raise exception 'workspace_id is required' using errcode = '22023';
    end if;
    if p_limit is null or p_limit not between 1 and 1000 then
        raise exception 'limit must be between 1 and 1000' using errcode = '22023';
    end if;
    if (p_after_activity is null) <> (p_after_id is null) then
        raise exception 'after_activity and after_id must be given together'
            using errcode = '22023';
    end if;

    -- The page walks agent_sessions_workspace_activity_idx in its own order; the state is
    -- looked up per returned row, so neither side grows with the workspace.
    select coalesce(
               jsonb_agg(
                   to_jsonb(s) || jsonb_build_object(
                       'session_state',
                       (select to_jsonb(st)
                          from public.session_state st
                         where st.workspace_id = s.workspace_id
                           and st.session_id = s.id))
                   order by s.last_activity_at desc, s.id desc),
               '[]'::jsonb)
      into v_sessions
      from (select a.*
              from public.agent_sessions a
             where a.workspace_id = p_workspace_id
               and (p_status is null or a.status = p_status)
               and (p_agent_id is null or a.agent_id = p_agent_id)
               and (p_contact_id is null or a.contact_id = p_contact_id)
               and (p_conversation_id is null or a.conversation_id = p_conversation_id)
               and (p_active_after is null or a.last_activity_at >= p_active_after)
               and (p_active_before is null or a.last_activity_at < p_active_before)
               and (p_after_activity is null
                    or (a.last_activity_at, a.id) < (p_after_activity, p_after_id))
             order by a.last_activity_at desc, a.id desc
             limit p_limit) s;

    return v_sessions;
end;
$$;

comment on function public.agent_engine_list_sessions is
    'Returns a JSON array of up to p_limit (1..1000, default 50) sessions of the workspace, '
    'each the session row as JSON with its state under "session_state" (null if it has none), '
    'newest last_activity_at first and, on equal times, highest id first. Optional filters: '
    'status, agent_id, contact_id, conversation_id, p_active_after <= last_activity_at < '
    'p_active_before. Keyset paging: p_after_activity and p_after_id (together) are the '
    'last_activity_at and id of the previous page''s last row; only rows strictly after it in '
    'this order are returned. Raises 22023 for a missing workspace, a limit out of range or '
    'half a position.';


-- ---------------------------------------------------------------------------
-- Deleting sessions
-- ---------------------------------------------------------------------------

-- session_state and agent_turns reference agent_sessions on delete cascade, so deleting a
-- session row deletes its state and turns in the same statement.

create function public.agent_engine_delete_session(
    p_session_id uuid,
    p_workspace_id uuid
)
returns void
language plpgsql
volatile
security invoker
set search_path = ''
as $$
begin
    -- Waits for a concurrent add_turn (its session lock); one that waits for us instead
    -- then finds no session and raises PT404.
    delete from public.agent_sessions s
     where s.workspace_id = p_workspace_id
       and s.id = p_session_id;
    if not found then
        perform public.agent_engine_raise_session_not_found(p_session_id, p_workspace_id);
    end if;
end;
$$;

comment on function public.agent_engine_delete_session is
    'Deletes the session with its state and turns (foreign keys on delete cascade). Raises '
    'PT404 when the session is not in the workspace (also when it was already deleted).';


create function public.agent_engine_delete_contact_data(
    p_contact_id uuid,
    p_workspace_id uuid
)
returns integer
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
    v_deleted integer;
begin
    if p_contact_id is null or p_workspace_id is null then
        raise exception 'contact_id and workspace_id are required' using errcode = '22023';
    end if;

    delete from public.agent_sessions s
     where s.workspace_id = p_workspace_id
       and s.contact_id = p_contact_id;
    get diagnostics v_deleted = row_count;
    return v_deleted;
end;
$$;

comment on function public.agent_engine_delete_contact_data is
    'Deletes every session of the contact in the workspace, whatever its status, with their '
    'state and turns; returns the number of sessions deleted (0 when there were none). '
    'Raises 22023 for a missing argument.';


create function public.agent_engine_purge_sessions_batch(
    p_older_than timestamptz,
    p_statuses text[] default array['closed'],
    p_workspace_id uuid default null,
    p_batch_size integer default 1000
)
returns integer
language plpgsql
volatile
security invoker
set search_path = ''
-- Planned with the arguments' values: with a workspace the scan can lead with it.
set plan_cache_mode = force_custom_plan
as $$
declare
    v_deleted integer;
begin
    if p_older_than is null or p_statuses is null then
        raise exception 'older_than and statuses are required' using errcode = '22023';
    end if;
    if p_batch_size is null or p_batch_size not between 1 and 10000 then
        raise exception 'batch_size must be between 1 and 10000' using errcode = '22023';
    end if;

    -- skip locked: a session an add_turn (or anyone) holds is left for a later batch; the
    -- add_turn then moves its last_activity_at past the cutoff. Rows are re-checked after
    -- being locked, so a session that became active again in between is not deleted.
    with doomed as (
        select s.workspace_id, s.id
          from public.agent_sessions s
         where s.status = any (p_statuses)
           and s.last_activity_at < p_older_than
           and (p_workspace_id is null or s.workspace_id = p_workspace_id)
         limit p_batch_size
           for update skip locked
    )
    delete from public.agent_sessions s
     using doomed d
     where s.workspace_id = d.workspace_id
       and s.id = d.id;
    get diagnostics v_deleted = row_count;
    return v_deleted;
end;
$$;

comment on function public.agent_engine_purge_sessions_batch is
    'Retention, one batch: deletes at most p_batch_size (1..10000, default 1000) sessions whose '
    'status is in p_statuses (default {closed}) and whose last_activity_at is before '
    'p_older_than, in p_workspace_id or in every workspace when null, with their state and '
    'turns; sessions locked by others are skipped. Returns the number deleted. Call it '
    'repeatedly, each call its own transaction, until it returns less than p_batch_size. '
    'Raises 22023 for a missing argument or a batch size out of range.';


-- No `set search_path` here: a procedure with a SET clause cannot commit. Every name in the
-- body is schema-qualified instead, operators included.
create procedure public.agent_engine_purge_sessions(
    p_older_than timestamptz,
    p_statuses text[] default array['closed'],
    p_workspace_id uuid default null,
    p_batch_size integer default 1000
)
language plpgsql
security invoker
as $$
declare
    v_deleted integer;
begin
    loop
        v_deleted := public.agent_engine_purge_sessions_batch(p_older_than, p_statuses,
                                                               p_workspace_id, p_batch_size);
        -- Each batch's locks and deletions end here, so a long purge never holds many rows.
        commit;
        exit when v_deleted operator(pg_catalog.<) p_batch_size;
    end loop;
end;
$$;

comment on procedure public.agent_engine_purge_sessions is
    'Retention for pg_cron: runs public.agent_engine_purge_sessions_batch (same arguments and '
    'errors) and commits after each batch, until a batch deletes fewer than p_batch_size. '
    'Call it as a statement of its own, outside a transaction block (otherwise the commit '
    'fails with 2D000), e.g. call public.agent_engine_purge_sessions(now() - interval '
    '''90 days'').';


-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------

-- As in the first migration: older projects grant new functions to anon and authenticated
-- through default privileges, newer ones to nobody, and every function is executable by
-- public unless revoked. The helpers are granted to service_role too, because the
-- functions above run them with the caller's privileges.
revoke execute on function
    public.agent_engine_raise_session_not_found,
    public.agent_engine_lock_session,
    public.agent_engine_check_turn,
    public.agent_engine_store_turn,
    public.agent_engine_add_turn,
    public.agent_engine_add_turns,
    public.agent_engine_pop_turn,
    public.agent_engine_clear_turns,
    public.agent_engine_get_recent_turns,
    public.agent_engine_list_sessions,
    public.agent_engine_delete_session,
    public.agent_engine_delete_contact_data,
    public.agent_engine_purge_sessions_batch
    from public, anon, authenticated;
grant execute on function
    public.agent_engine_raise_session_not_found,
    public.agent_engine_lock_session,
    public.agent_engine_check_turn,
    public.agent_engine_store_turn,
    public.agent_engine_add_turn,
    public.agent_engine_add_turns,
    public.agent_engine_pop_turn,
    public.agent_engine_clear_turns,
    public.agent_engine_get_recent_turns,
    public.agent_engine_list_sessions,
    public.agent_engine_delete_session,
    public.agent_engine_delete_contact_data,
    public.agent_engine_purge_sessions_batch
    to service_role;

revoke execute on procedure public.agent_engine_purge_sessions from public, anon, authenticated;
grant execute on procedure public.agent_engine_purge_sessions to service_role;


-- PostgREST caches the schema; without this, the new functions answer PGRST202 until the
-- next reload.
notify pgrst, 'reload schema';
