-- Supabase's API roles and auth helpers, reproduced on a plain PostgreSQL server for the
-- database tests and the demo (`python -m agent_engine migrate --local-supabase-roles`).
-- Never run it on a Supabase project: those roles already exist there.
--
-- Roles are cluster-wide and a shared server keeps them between runs (and may be creating
-- them in a concurrent run), so each is created only when missing, a concurrent creation is
-- tolerated, and the attributes the tests rely on are then enforced. The auth schema and
-- the grants are per database.

do $$
declare
    v_role text;
begin
    foreach v_role in array array['anon', 'authenticated', 'service_role', 'authenticator'] loop
        if not exists (select from pg_catalog.pg_roles r where r.rolname = v_role) then
            begin
                execute format('create role %I', v_role);
            exception when duplicate_object or unique_violation then
                null; -- created by a concurrent run
            end;
        end if;
    end loop;
end;
$$;

alter role anon nologin noinherit nobypassrls;
alter role authenticated nologin noinherit nobypassrls;
alter role service_role nologin noinherit bypassrls;
alter role authenticator login noinherit nobypassrls;

-- PostgREST logs in as authenticator and switches to the role named by the JWT.
grant anon, authenticated, service_role to authenticator;

create schema if not exists auth;

create or replace function auth.jwt()
returns jsonb
language sql
stable
set search_path = ''
as $$
    select coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb;
$$;

create or replace function auth.uid()
returns uuid
language sql
stable
set search_path = ''
as $$
    select nullif(auth.jwt() ->> 'sub', '')::uuid;
$$;

create or replace function auth.role()
returns text
language sql
stable
set search_path = ''
as $$
    select nullif(auth.jwt() ->> 'role', '');
$$;

grant usage on schema public to anon, authenticated, service_role;
grant usage on schema auth to anon, authenticated, service_role;
