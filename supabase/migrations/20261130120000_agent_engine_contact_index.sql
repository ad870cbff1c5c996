-- agent_engine, fourth migration: a contact's sessions found through an index.
--
-- public.agent_engine_delete_contact_data (erasure) and public.agent_engine_list_sessions
-- with p_contact_id read every session of the workspace to find a contact's few, or the
-- whole table: with 100,000 sessions a delete read all 100,100 rows, and a listing 100,000
-- index entries and rows, to return 3. An erasure whose cost grows with the workspace
-- would sooner or later outlast its statement timeout and could then never complete.
-- With this index both read only the contact's sessions, in the listing's order.
--
-- Partial: sessions without a contact are not in it, so they cost nothing more to write.
-- A session with a contact gets one more index entry when its row is updated (its
-- last_activity_at is already indexed, so those updates were not HOT before either).
--
-- Building it locks agent_sessions against writes until it is built: about a second per
-- million sessions. With a large table, build it first without that lock, outside a
-- transaction, with the same definition:
--   create index concurrently if not exists agent_sessions_workspace_contact_idx
--       on public.agent_sessions (workspace_id, contact_id, last_activity_at desc, id desc)
--       where contact_id is not null;
-- and this migration then leaves it as it is.
--
-- Runs unchanged on PostgreSQL 15 and later (Supabase).

create index if not exists agent_sessions_workspace_contact_idx
    on public.agent_sessions (workspace_id, contact_id, last_activity_at desc, id desc)
    where contact_id is not null;

comment on index public.agent_sessions_workspace_contact_idx is
    'Serves public.agent_engine_delete_contact_data and public.agent_engine_list_sessions '
    'with p_contact_id: a contact''s sessions in a workspace, newest activity first, ties by '
    'id, read without visiting the workspace''s other sessions.';


-- Like every migration here, this one ends by reloading PostgREST's schema cache: an index
-- is not in that cache, but a rule without exceptions needs no one to remember them.
notify pgrst, 'reload schema';
