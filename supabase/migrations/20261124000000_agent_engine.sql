-- agent_engine: sessions, per-session state and turns for conversational agents.
--
-- Runs unchanged on PostgreSQL 15 and later (Supabase). Every function is
-- `security invoker` with an empty search_path, so it runs with the caller's privileges
-- and every name in it is schema-qualified. Only `service_role` is granted anything; the
-- `authenticated` policies take effect once the app grants that role access and replaces
-- public.agent_engine_is_workspace_member with its own membership check.


-- ---------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------

create table public.agent_sessions (
    id uuid primary key default gen_random_uuid(),
    workspace_id uuid not null,
    agent_id text not null,
    conversation_id uuid not null,
    contact_id uuid,
    version integer not null default 1,
    status text not null default 'active',
    current_mode text not null,
    turn_count integer not null default 0,
    tokens_used bigint not null default 0,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    last_activity_at timestamptz not null default now(),
    constraint agent_sessions_agent_id_check check (btrim(agent_id) <> ''),
    constraint agent_sessions_version_check check (version >= 1),
    constraint agent_sessions_status_check
        check (status in ('active', 'paused', 'closed', 'handed_off')),
    constraint agent_sessions_current_mode_check check (btrim(current_mode) <> ''),
    constraint agent_sessions_turn_count_check check (turn_count >= 0),
    constraint agent_sessions_tokens_used_check check (tokens_used >= 0),
    constraint agent_sessions_workspace_id_id_key unique (workspace_id, id)
);

comment on table public.agent_sessions is
    'One conversation between an agent and a contact, scoped to a workspace. '
    'Updates of current_mode and status are guarded by version (optimistic concurrency).';
comment on column public.agent_sessions.workspace_id is
    'Tenant the session belongs to; every read and write filters on it.';
comment on column public.agent_sessions.agent_id is
    'Key of the agent (from the agent registry) that runs this session.';
comment on column public.agent_sessions.conversation_id is
    'Conversation (chat thread) the session serves.';
comment on column public.agent_sessions.contact_id is
    'Contact the agent talks to, when known.';
comment on column public.agent_sessions.version is
    'Optimistic-concurrency counter: a guarded update sets version = version + 1 where '
    'version = <the version read>. Adding a turn does not change it.';
comment on column public.agent_sessions.status is
    'Lifecycle: active, paused, closed or handed_off. At most one active session per '
    'workspace, conversation and agent.';
comment on column public.agent_sessions.current_mode is
    'Mode the agent is in (e.g. greeting, qualifying); changed by version-guarded updates.';
comment on column public.agent_sessions.turn_count is
    'Number of turns stored for the session, kept by public.agent_engine_add_turn.';
comment on column public.agent_sessions.tokens_used is
    'Sum of the tokens_used of the session''s turns, kept by public.agent_engine_add_turn.';
comment on column public.agent_sessions.updated_at is
    'Time of the last update of the row, set by the agent_sessions_touch_updated_at trigger.';
comment on column public.agent_sessions.last_activity_at is
    'Time of the last turn or of the last explicit activity update.';
comment on constraint agent_sessions_workspace_id_id_key on public.agent_sessions is
    'Target of the composite foreign keys of session_state and agent_turns, which tie a '
    'child row to a session of the same workspace.';

-- Lookups by (workspace_id, conversation_id, agent_id) for the active session use this
-- index; it is also what makes get_or_create race-safe (insert ... on conflict).
create unique index agent_sessions_one_active_idx
    on public.agent_sessions (workspace_id, conversation_id, agent_id)
    where status = 'active';

comment on index public.agent_sessions_one_active_idx is
    'At most one active session per workspace, conversation and agent; closed, paused and '
    'handed-off sessions do not count. Serves the active-session lookup and the '
    'on conflict clause of public.agent_engine_get_or_create_session.';


create table public.session_state (
    session_id uuid primary key,
    workspace_id uuid not null,
    intents_seen jsonb not null default '[]'::jsonb,
    templates_sent jsonb not null default '[]'::jsonb,
    captured_data jsonb not null default '{}'::jsonb,
    updated_at timestamptz not null default now(),
    constraint session_state_workspace_id_session_id_key unique (workspace_id, session_id),
    constraint session_state_session_fkey foreign key (workspace_id, session_id)
        references public.agent_sessions (workspace_id, id) on delete cascade,
    -- The strict path flags any element that is not an object (lax mode would unwrap a
    -- nested array and check its elements instead); the lax path then checks the fields
    -- of each object, where a missing field yields no item and so fails the test.
    constraint session_state_intents_seen_check check (
        jsonb_typeof(intents_seen) = 'array'
        and not jsonb_path_exists(intents_seen, 'strict $[*] ? (@.type() != "object")')
        and not jsonb_path_exists(
            intents_seen,
            'lax $[*] ? (!(@.intent.type() == "string" && @.order.type() == "number"'
            ' && @.seen_at.type() == "string"))'
        )
    ),
    constraint session_state_templates_sent_check check (
        jsonb_typeof(templates_sent) = 'array'
        and not jsonb_path_exists(templates_sent, 'strict $[*] ? (@.type() != "string")')
    ),
    constraint session_state_captured_data_check check (jsonb_typeof(captured_data) = 'object')
);

comment on table public.session_state is
    'Per-session memory (intents seen, templates sent, data captured), one row per session, '
    'created with the session by public.agent_engine_create_session.';
comment on column public.session_state.session_id is
    'The session this state belongs to (primary key: one state per session).';
comment on column public.session_state.workspace_id is
    'Workspace of the session, repeated so the foreign key can require it to match.';
comment on column public.session_state.intents_seen is
    'JSON array of {"intent": text, "order": number, "seen_at": timestamp text}, in the '
    'order stored; appended by public.agent_engine_append_intent.';
comment on column public.session_state.templates_sent is
    'JSON array of template names, each at most once; appended by '
    'public.agent_engine_append_template.';
comment on column public.session_state.captured_data is
    'JSON object of data captured from the conversation; shallow-merged by '
    'public.agent_engine_merge_captured_data.';
comment on column public.session_state.updated_at is
    'Time of the last update of the row, set by the session_state_touch_updated_at trigger.';
comment on constraint session_state_workspace_id_session_id_key on public.session_state is
    'Makes the foreign key one-to-one, so PostgREST embeds session_state as an object, and '
    'serves lookups that lead with workspace_id.';
comment on constraint session_state_session_fkey on public.session_state is
    'The only relationship to agent_sessions (PostgREST must see exactly one); the workspace '
    'must be the session''s. Deleting the session deletes its state.';
comment on constraint session_state_intents_seen_check on public.session_state is
    'intents_seen is an array of objects with a string intent, a number order and a string '
    'seen_at.';
comment on constraint session_state_templates_sent_check on public.session_state is
    'templates_sent is an array of strings.';
comment on constraint session_state_captured_data_check on public.session_state is
    'captured_data is an object.';


create table public.agent_turns (
    id uuid primary key default gen_random_uuid(),
    session_id uuid not null,
    workspace_id uuid not null,
    turn_number integer not null,
    role text not null,
    content text not null,
    intent_detected text,
    confidence numeric,
    tools_called jsonb not null default '[]'::jsonb,
    tokens_used integer not null default 0,
    idempotency_key text,
    created_at timestamptz not null default now(),
    constraint agent_turns_session_fkey foreign key (workspace_id, session_id)
        references public.agent_sessions (workspace_id, id) on delete cascade,
    constraint agent_turns_turn_number_check check (turn_number > 0),
    constraint agent_turns_role_check check (role in ('user', 'assistant', 'system', 'tool')),
    constraint agent_turns_content_check check (content ~ '[^[:space:]]'),
    constraint agent_turns_confidence_check check (confidence between 0 and 100),
    -- Same two-step test as session_state.intents_seen: strict for the element type, lax
    -- for the field.
    constraint agent_turns_tools_called_check check (
        jsonb_typeof(tools_called) = 'array'
        and not jsonb_path_exists(tools_called, 'strict $[*] ? (@.type() != "object")')
        and not jsonb_path_exists(tools_called, 'lax $[*] ? (!(@.name.type() == "string"))')
    ),
    constraint agent_turns_tokens_used_check check (tokens_used >= 0),
    constraint agent_turns_idempotency_key_check check (btrim(idempotency_key) <> ''),
    constraint agent_turns_turn_number_key unique (workspace_id, session_id, turn_number),
    constraint agent_turns_idempotency_key_key
        unique (workspace_id, session_id, idempotency_key)
);

comment on table public.agent_turns is
    'The messages of a session, numbered 1, 2, 3... Written by public.agent_engine_add_turn, '
    'which also keeps the session''s turn_count and tokens_used.';
comment on column public.agent_turns.session_id is 'The session the turn belongs to.';
comment on column public.agent_turns.workspace_id is
    'Workspace of the session, repeated so the foreign key can require it to match.';
comment on column public.agent_turns.turn_number is
    'Position of the turn in its session, unique per session, starting at 1.';
comment on column public.agent_turns.role is 'Who produced the turn: user, assistant, system or tool.';
comment on column public.agent_turns.content is
    'Text of the message, kept as sent; never empty or only whitespace.';
comment on column public.agent_turns.intent_detected is 'Intent the agent detected, if any.';
comment on column public.agent_turns.confidence is
    'Confidence of the detected intent, from 0 to 100.';
comment on column public.agent_turns.tools_called is
    'JSON array of the tool calls made during the turn, each an object with a string name.';
comment on column public.agent_turns.tokens_used is 'Tokens the turn cost.';
comment on column public.agent_turns.idempotency_key is
    'Caller-chosen key: adding a turn again with the same key returns the stored turn and '
    'changes nothing.';
comment on constraint agent_turns_session_fkey on public.agent_turns is
    'The only relationship to agent_sessions (PostgREST must see exactly one); the workspace '
    'must be the session''s. Deleting the session deletes its turns.';
comment on constraint agent_turns_turn_number_key on public.agent_turns is
    'One turn per number in a session. Its index serves reading a session''s turns in order '
    '(after turn N, limit M), the max(turn_number) of public.agent_engine_add_turn and the '
    'foreign key to agent_sessions.';
comment on constraint agent_turns_idempotency_key_key on public.agent_turns is
    'One turn per idempotency key in a session (rows without a key are not constrained). Its '
    'index serves the retry lookup of public.agent_engine_add_turn.';
comment on constraint agent_turns_tools_called_check on public.agent_turns is
    'tools_called is an array of objects, each with a string name.';

-- No other indexes: every query filters by (workspace_id, id) or leads with
-- (workspace_id, session_id), which the keys and unique constraints above already index.
-- No sequences either: keys are uuids from gen_random_uuid(), so there is nothing to grant
-- on sequences.


-- ---------------------------------------------------------------------------
-- updated_at
-- ---------------------------------------------------------------------------

create function public.agent_engine_touch_updated_at()
returns trigger
language plpgsql
security invoker
set search_path = ''
as $$
begin
    new.updated_at := now();
    return new;
end;
$$;

comment on function public.agent_engine_touch_updated_at() is
    'Trigger function: sets updated_at to the transaction time on every update.';

create trigger agent_sessions_touch_updated_at
    before update on public.agent_sessions
    for each row execute function public.agent_engine_touch_updated_at();

comment on trigger agent_sessions_touch_updated_at on public.agent_sessions is
    'Keeps agent_sessions.updated_at current, whoever updates the row.';

create trigger session_state_touch_updated_at
    before update on public.session_state
    for each row execute function public.agent_engine_touch_updated_at();

comment on trigger session_state_touch_updated_at on public.session_state is
    'Keeps session_state.updated_at current, whoever updates the row.';


-- ---------------------------------------------------------------------------
-- Sessions
-- ---------------------------------------------------------------------------

create function public.agent_engine_create_session(
    p_workspace_id uuid,
    p_agent_id text,
    p_conversation_id uuid,
    p_current_mode text,
    p_contact_id uuid default null,
    p_intents_seen jsonb default '[]'::jsonb,
    p_templates_sent jsonb default '[]'::jsonb,
    p_captured_data jsonb default '{}'::jsonb
)
returns jsonb
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
    v_session public.agent_sessions;
    v_state public.session_state;
begin
    if p_workspace_id is null or p_conversation_id is null
        or p_agent_id is null or p_current_mode is null then
        raise exception 'workspace_id, agent_id, conversation_id and current_mode are required'
            using errcode = '22023';
    end if;
    if jsonb_typeof(p_intents_seen) is distinct from 'array'
        or jsonb_typeof(p_templates_sent) is distinct from 'array' then
        raise exception 'intents_seen and templates_sent must be JSON arrays'
            using errcode = '22023';
    end if;
    if jsonb_typeof(p_captured_data) is distinct from 'object' then
        raise exception 'captured_data must be a JSON object' using errcode = '22023';
    end if;

    -- A second active session for the same conversation and agent fails here with 23505.
    insert into public.agent_sessions (workspace_id, agent_id, conversation_id, contact_id,
                                       current_mode)
    values (p_workspace_id, p_agent_id, p_conversation_id, p_contact_id, p_current_mode)
    returning * into v_session;

    insert into public.session_state (session_id, workspace_id, intents_seen, templates_sent,
                                      captured_data)
    values (v_session.id, v_session.workspace_id, p_intents_seen, p_templates_sent,
            p_captured_data)
    returning * into v_state;

    return to_jsonb(v_session) || jsonb_build_object('session_state', to_jsonb(v_state));
end;
$$;

comment on function public.agent_engine_create_session(
    uuid, text, uuid, text, uuid, jsonb, jsonb, jsonb
) is
    'Creates an active session and its session_state in one transaction; returns the session '
    'row as JSON with the state under "session_state". Raises 23505 (unchanged) when the '
    'conversation already has an active session for the agent, 22023 for missing arguments or '
    'a state of the wrong JSON type; element shapes are checked by the table constraints.';


create function public.agent_engine_get_or_create_session(
    p_workspace_id uuid,
    p_agent_id text,
    p_conversation_id uuid,
    p_current_mode text,
    p_contact_id uuid default null,
    p_intents_seen jsonb default '[]'::jsonb,
    p_templates_sent jsonb default '[]'::jsonb,
    p_captured_data jsonb default '{}'::jsonb
)
returns jsonb
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
    v_attempts constant integer := 3;
    v_result jsonb;
begin
    for v_attempt in 1..v_attempts loop
        -- Each statement takes a fresh snapshot (read committed), so after a lost insert
        -- race this sees the winner's committed session.
        select to_jsonb(s) || jsonb_build_object('session_state', to_jsonb(st))
          into v_result
          from public.agent_sessions s
          left join public.session_state st
            on st.workspace_id = s.workspace_id and st.session_id = s.id
         where s.workspace_id = p_workspace_id
           and s.conversation_id = p_conversation_id
           and s.agent_id = p_agent_id
           and s.status = 'active';
        if found then
            return v_result;
        end if;

        -- A concurrent creator of the same active session makes the insert wait for its
        -- transaction; if that commits, the unique index refuses ours (23505) and the next
        -- round reads the winner. Only the one-active-session index can conflict here.
        begin
            return public.agent_engine_create_session(
                p_workspace_id, p_agent_id, p_conversation_id, p_current_mode, p_contact_id,
                p_intents_seen, p_templates_sent, p_captured_data);
        exception when unique_violation then
            null;
        end;
        -- Lost the race; if the winner's session is already closed again, try anew.
    end loop;

    raise exception 'could not get or create the active session of conversation % for agent % '
                    'in workspace % after % attempts',
                    p_conversation_id, p_agent_id, p_workspace_id, v_attempts
        using errcode = '40001',
              hint = 'Sessions of this conversation are being created and closed concurrently; '
                     'retry.';
end;
$$;

comment on function public.agent_engine_get_or_create_session(
    uuid, text, uuid, text, uuid, jsonb, jsonb, jsonb
) is
    'Returns the active session of the conversation for the agent, with its state under '
    '"session_state", creating both through public.agent_engine_create_session if there is '
    'none (same checks, same errors). Safe under concurrent callers: all get the same session '
    '(a lost insert race is read again, at most 3 times; then 40001). The state arguments '
    'only apply to a session it creates.';


-- ---------------------------------------------------------------------------
-- Session state
-- ---------------------------------------------------------------------------

create function public.agent_engine_append_intent(
    p_session_id uuid,
    p_workspace_id uuid,
    p_intent text
)
returns jsonb
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
    v_state public.session_state;
begin
    if p_session_id is null or p_workspace_id is null then
        raise exception 'session_id and workspace_id are required' using errcode = '22023';
    end if;
    if coalesce(btrim(p_intent), '') = '' then
        raise exception 'intent must be a non-empty text' using errcode = '22023';
    end if;

    -- One statement: a concurrent caller waits on the row lock and then recomputes the
    -- order from the updated row, so no append is lost and orders run 1, 2, 3...
    update public.session_state st
       set intents_seen = st.intents_seen || jsonb_build_array(jsonb_build_object(
               'intent', p_intent,
               'order', jsonb_array_length(st.intents_seen) + 1,
               'seen_at', now()))
     where st.workspace_id = p_workspace_id
       and st.session_id = p_session_id
    returning * into v_state;

    if not found then
        raise exception 'session % not found in workspace %', p_session_id, p_workspace_id
            using errcode = 'PT404';
    end if;
    return to_jsonb(v_state);
end;
$$;

comment on function public.agent_engine_append_intent(uuid, uuid, text) is
    'Appends {"intent", "order": <count + 1>, "seen_at": now()} to the session''s '
    'intents_seen in one update, so concurrent callers get orders 1..N with none lost; '
    'returns the session_state row as JSON. Raises PT404 when the session is not in the '
    'workspace, 22023 for a missing argument or an empty intent.';


create function public.agent_engine_append_template(
    p_session_id uuid,
    p_workspace_id uuid,
    p_template_name text
)
returns jsonb
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
    v_state public.session_state;
begin
    if p_session_id is null or p_workspace_id is null then
        raise exception 'session_id and workspace_id are required' using errcode = '22023';
    end if;
    if coalesce(btrim(p_template_name), '') = '' then
        raise exception 'template_name must be a non-empty text' using errcode = '22023';
    end if;

    -- The presence test is part of the update's where clause, so it is re-checked against
    -- a concurrent caller's committed row; an append already made writes nothing.
    update public.session_state st
       set templates_sent = st.templates_sent || jsonb_build_array(p_template_name)
     where st.workspace_id = p_workspace_id
       and st.session_id = p_session_id
       and not (st.templates_sent ? p_template_name)
    returning * into v_state;

    if not found then
        select st.* into v_state
          from public.session_state st
         where st.workspace_id = p_workspace_id
           and st.session_id = p_session_id;
        if not found then
            raise exception 'session % not found in workspace %', p_session_id, p_workspace_id
                using errcode = 'PT404';
        end if;
    end if;
    return to_jsonb(v_state);
end;
$$;

comment on function public.agent_engine_append_template(uuid, uuid, text) is
    'Appends the template name to the session''s templates_sent unless it is already there '
    '(idempotent, safe to retry); returns the session_state row as JSON. Raises PT404 when '
    'the session is not in the workspace, 22023 for a missing argument or an empty name.';


create function public.agent_engine_merge_captured_data(
    p_session_id uuid,
    p_workspace_id uuid,
    p_data jsonb
)
returns jsonb
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
    v_state public.session_state;
begin
    if p_session_id is null or p_workspace_id is null then
        raise exception 'session_id and workspace_id are required' using errcode = '22023';
    end if;
    if jsonb_typeof(p_data) is distinct from 'object' then
        raise exception 'data must be a JSON object' using errcode = '22023';
    end if;

    -- One statement, so concurrent merges of different keys all survive.
    update public.session_state st
       set captured_data = st.captured_data || p_data
     where st.workspace_id = p_workspace_id
       and st.session_id = p_session_id
    returning * into v_state;

    if not found then
        raise exception 'session % not found in workspace %', p_session_id, p_workspace_id
            using errcode = 'PT404';
    end if;
    return to_jsonb(v_state);
end;
$$;

comment on function public.agent_engine_merge_captured_data(uuid, uuid, jsonb) is
    'Shallow-merges the object into the session''s captured_data (top-level keys of p_data '
    'replace existing ones) in one update; returns the session_state row as JSON. Raises '
    'PT404 when the session is not in the workspace, 22023 when p_data is not an object.';


-- ---------------------------------------------------------------------------
-- Turns
-- ---------------------------------------------------------------------------

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
    p_idempotency_key text default null
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
    if p_session_id is null or p_workspace_id is null or p_role is null
        or p_content is null or p_tokens_used is null then
        raise exception 'session_id, workspace_id, role, content and tokens_used are required'
            using errcode = '22023';
    end if;
    if jsonb_typeof(p_tools_called) is distinct from 'array' then
        raise exception 'tools_called must be a JSON array' using errcode = '22023';
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

comment on function public.agent_engine_add_turn(
    uuid, uuid, text, text, integer, text, numeric, jsonb, integer, text
) is
    'Stores a turn and, in the same transaction, adds it to the session''s turn_count, '
    'tokens_used and last_activity_at (version is not changed); returns the turn row as JSON. '
    'The number defaults to the next one (1 for the first turn); concurrent callers on one '
    'session are serialised by a lock on the session row. With an idempotency key already '
    'stored for the session it returns that turn and changes nothing. Raises PT404 when the '
    'session is not in the workspace, 23505 for a taken explicit number, 22023 for missing '
    'arguments; values are checked by the agent_turns constraints (23514).';


-- ---------------------------------------------------------------------------
-- Row level security
-- ---------------------------------------------------------------------------

create function public.agent_engine_is_workspace_member(p_workspace_id uuid)
returns boolean
language sql
stable
security invoker
set search_path = ''
as $$
    select false;
$$;

comment on function public.agent_engine_is_workspace_member(uuid) is
    'Membership hook of the authenticated policies. Denies everyone until the app replaces it '
    '(create or replace, same signature) with its own check, e.g. of auth.uid() against its '
    'workspace members table; the app must then also grant execute on it to authenticated.';

alter table public.agent_sessions enable row level security;
alter table public.session_state enable row level security;
alter table public.agent_turns enable row level security;

create policy agent_sessions_workspace_members on public.agent_sessions
    for all to authenticated
    using (public.agent_engine_is_workspace_member(workspace_id))
    with check (public.agent_engine_is_workspace_member(workspace_id));

comment on policy agent_sessions_workspace_members on public.agent_sessions is
    'Authenticated users reach the sessions of their workspaces only; takes effect once '
    'authenticated is granted the table. service_role bypasses row level security.';

create policy session_state_workspace_members on public.session_state
    for all to authenticated
    using (public.agent_engine_is_workspace_member(workspace_id))
    with check (public.agent_engine_is_workspace_member(workspace_id));

comment on policy session_state_workspace_members on public.session_state is
    'Authenticated users reach the session state of their workspaces only; takes effect once '
    'authenticated is granted the table. service_role bypasses row level security.';

create policy agent_turns_workspace_members on public.agent_turns
    for all to authenticated
    using (public.agent_engine_is_workspace_member(workspace_id))
    with check (public.agent_engine_is_workspace_member(workspace_id));

comment on policy agent_turns_workspace_members on public.agent_turns is
    'Authenticated users reach the turns of their workspaces only; takes effect once '
    'authenticated is granted the table. service_role bypasses row level security.';


-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------

-- Older Supabase projects grant every new table and function in public to anon and
-- authenticated through default privileges; newer ones grant nothing, not even to
-- service_role. Revoke and grant explicitly so both end up the same: only the server
-- (service_role) reaches these objects.
revoke all on public.agent_sessions, public.session_state, public.agent_turns
    from public, anon, authenticated;
grant select, insert, update, delete
    on public.agent_sessions, public.session_state, public.agent_turns
    to service_role;

revoke execute on function public.agent_engine_touch_updated_at()
    from public, anon, authenticated;

revoke execute on function
    public.agent_engine_create_session(uuid, text, uuid, text, uuid, jsonb, jsonb, jsonb),
    public.agent_engine_get_or_create_session(uuid, text, uuid, text, uuid, jsonb, jsonb, jsonb),
    public.agent_engine_append_intent(uuid, uuid, text),
    public.agent_engine_append_template(uuid, uuid, text),
    public.agent_engine_merge_captured_data(uuid, uuid, jsonb),
    public.agent_engine_add_turn(uuid, uuid, text, text, integer, text, numeric, jsonb,
                                 integer, text),
    public.agent_engine_is_workspace_member(uuid)
    from public, anon, authenticated;
grant execute on function
    public.agent_engine_create_session(uuid, text, uuid, text, uuid, jsonb, jsonb, jsonb),
    public.agent_engine_get_or_create_session(uuid, text, uuid, text, uuid, jsonb, jsonb, jsonb),
    public.agent_engine_append_intent(uuid, uuid, text),
    public.agent_engine_append_template(uuid, uuid, text),
    public.agent_engine_merge_captured_data(uuid, uuid, jsonb),
    public.agent_engine_add_turn(uuid, uuid, text, text, integer, text, numeric, jsonb,
                                 integer, text),
    public.agent_engine_is_workspace_member(uuid)
    to service_role;


-- ---------------------------------------------------------------------------
-- Realtime
-- ---------------------------------------------------------------------------

-- Supabase projects have a supabase_realtime publication; plain PostgreSQL does not, and
-- the migration must still apply there. A publication for all tables already lists the
-- table (and cannot take an explicit one), hence the check on pg_publication_tables.
do $$
begin
    if exists (
        select from pg_catalog.pg_publication p where p.pubname = 'supabase_realtime'
    ) and not exists (
        select from pg_catalog.pg_publication_tables pt
         where pt.pubname = 'supabase_realtime'
           and pt.schemaname = 'public'
           and pt.tablename = 'agent_sessions'
    ) then
        alter publication supabase_realtime add table public.agent_sessions;
    end if;
end;
$$;


-- PostgREST caches the schema; without this, the new functions answer PGRST202 until the
-- next reload.
notify pgrst, 'reload schema';
