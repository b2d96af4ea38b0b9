-- EZREC tables: bookings, videos, system_status (+ history), user_settings.
-- Idempotent (IF NOT EXISTS / OR REPLACE), so applying it twice is harmless.

-- ---- bookings ------------------------------------------------------------------------------------
create table if not exists public.bookings (
    id          text primary key check (id ~ '^[A-Za-z0-9_-]{1,64}$'),
    user_id     text not null check (user_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    camera_id   text not null check (camera_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    start_time  timestamptz not null,
    end_time    timestamptz not null,
    status      text not null default 'confirmed'
                check (status in ('confirmed', 'completed', 'video_processed', 'video_uploaded')),
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now(),
    constraint bookings_end_after_start check (end_time > start_time)
);
create index if not exists bookings_camera_start on public.bookings (camera_id, start_time);
create index if not exists bookings_user on public.bookings (user_id);

-- The documented order of statuses; a status only ever moves forward.
create or replace function public.booking_status_rank(s text) returns integer
    language sql immutable strict
as $$ select array_position(array['confirmed', 'completed', 'video_processed', 'video_uploaded'], s) $$;

-- A late or replayed update (a `completed` arriving after `video_uploaded`) keeps the newer status,
-- whoever sends it: the device's conditional PATCH already skips it, this is the backstop.
create or replace function public.bookings_status_forward_only() returns trigger
    language plpgsql
as $$
begin
    if public.booking_status_rank(new.status) < public.booking_status_rank(old.status) then
        new.status := old.status;
    end if;
    return new;
end
$$;

-- updated_at moves when (and only when) something else in the row changed.
create or replace function public.set_updated_at() returns trigger
    language plpgsql
as $$
begin
    if (to_jsonb(new) - 'updated_at') is distinct from (to_jsonb(old) - 'updated_at') then
        new.updated_at := now();
    else
        new.updated_at := old.updated_at;
    end if;
    return new;
end
$$;

-- Triggers fire in name order: the status guard first, then the timestamp.
drop trigger if exists bookings_1_status_forward_only on public.bookings;
create trigger bookings_1_status_forward_only before update on public.bookings
    for each row execute function public.bookings_status_forward_only();
drop trigger if exists bookings_2_set_updated_at on public.bookings;
create trigger bookings_2_set_updated_at before update on public.bookings
    for each row execute function public.set_updated_at();

-- ---- videos --------------------------------------------------------------------------------------
-- No foreign key to bookings on purpose: a booking deleted in the cloud while the device was offline
-- must not make its finished video's row impossible to write (the object is uploaded regardless).
create table if not exists public.videos (
    id                uuid primary key,
    booking_id        text not null unique check (booking_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    user_id           text not null check (user_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    camera_id         text not null,
    storage_path      text not null,
    size_bytes        bigint not null check (size_bytes >= 0),
    duration_seconds  double precision not null check (duration_seconds >= 0),
    created_at        timestamptz not null default now(),
    uploaded_at       timestamptz,
    -- object path convention in the `videos` bucket (storage policies rely on the user folder)
    constraint videos_storage_path check (storage_path = user_id || '/' || booking_id || '.mp4')
);
create index if not exists videos_user on public.videos (user_id);

-- ---- system status -------------------------------------------------------------------------------
create table if not exists public.system_status (
    camera_id     text primary key,
    collected_at  timestamptz not null,
    snapshot      jsonb not null,
    updated_at    timestamptz not null default now()
);
drop trigger if exists system_status_set_updated_at on public.system_status;
create trigger system_status_set_updated_at before update on public.system_status
    for each row execute function public.set_updated_at();

create table if not exists public.system_status_history (
    camera_id     text not null,
    collected_at  timestamptz not null,
    snapshot      jsonb not null,
    primary key (camera_id, collected_at)
);

-- ---- user settings -------------------------------------------------------------------------------
create or replace function public.media_paths_of(owner text, paths text[]) returns boolean
    language sql immutable
as $$ select coalesce(bool_and(starts_with(p, owner || '/media/')), true) from unnest(paths) as p $$;

create table if not exists public.user_settings (
    user_id             text primary key check (user_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    intro_video_path    text,
    logo_path           text,
    sponsor_logo_paths  text[] not null default '{}',
    updated_at          timestamptz not null default now(),
    constraint user_settings_sponsor_count check (cardinality(sponsor_logo_paths) <= 3),
    -- every path lives in the user's own media folder: `<user_id>/media/...`
    constraint user_settings_own_media check (
        public.media_paths_of(user_id, array_remove(array[intro_video_path, logo_path], null) || sponsor_logo_paths)
    )
);
drop trigger if exists user_settings_set_updated_at on public.user_settings;
create trigger user_settings_set_updated_at before update on public.user_settings
    for each row execute function public.set_updated_at();
