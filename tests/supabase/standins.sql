-- Minimal stand-ins for what a Supabase project provides and EZREC's migrations reference:
-- the roles anon / authenticated / service_role, auth.uid() (reading the request's JWT claims the
-- way PostgREST sets them), storage.buckets, storage.objects and storage.foldername().
-- Shapes follow Supabase's own definitions (the columns the migrations and policies touch).

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'anon') then
        create role anon nologin noinherit;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'authenticated') then
        create role authenticated nologin noinherit;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'service_role') then
        create role service_role nologin noinherit bypassrls;
    end if;
exception when duplicate_object or unique_violation then
    null;  -- another test session created them at the same moment
end
$$;

grant usage on schema public to anon, authenticated, service_role;

create schema if not exists auth;
grant usage on schema auth to anon, authenticated, service_role;

create or replace function auth.uid() returns uuid
    language sql stable
as $$
    select nullif(coalesce(current_setting('request.jwt.claim.sub', true),
                           nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'), '')::uuid
$$;

create or replace function auth.role() returns text
    language sql stable
as $$
    select nullif(coalesce(current_setting('request.jwt.claim.role', true),
                           nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role'), '')::text
$$;

create schema if not exists storage;
grant usage on schema storage to anon, authenticated, service_role;

create table if not exists storage.buckets (
    id                  text primary key,
    name                text not null unique,
    owner               uuid,
    public              boolean default false,
    file_size_limit     bigint,
    allowed_mime_types  text[],
    created_at          timestamptz default now(),
    updated_at          timestamptz default now()
);

create table if not exists storage.objects (
    id          uuid primary key default gen_random_uuid(),
    bucket_id   text references storage.buckets (id),
    name        text,
    owner       uuid,
    metadata    jsonb,
    created_at  timestamptz default now(),
    updated_at  timestamptz default now(),
    unique (bucket_id, name)
);
alter table storage.objects enable row level security;
grant select on storage.buckets to anon, authenticated;
grant select, insert, update, delete on storage.objects to anon, authenticated;
grant all on storage.buckets, storage.objects to service_role;

create or replace function storage.foldername(name text) returns text[]
    language plpgsql immutable
as $$
declare
    _parts text[];
begin
    select string_to_array(name, '/') into _parts;
    return _parts[1:array_length(_parts, 1) - 1];
end
$$;
