-- Highlights (issue 16): clips a player asks for during a recording, stored as `videos` rows of kind `highlight`
-- linked to their booking. Idempotent, like the others.
--
-- Apply right AFTER the devices run the software that upserts videos on `id` (an older device names `booking_id` as
-- the conflict target, which this migration stops being unique on its own). A highlight row such a device sends
-- before this is applied meets a schema fault: its cloud writes wait (retried, alerted) and land once it is.

alter table public.videos add column if not exists kind text not null default 'full';

alter table public.videos drop constraint if exists videos_kind_check;
alter table public.videos add constraint videos_kind_check check (kind in ('full', 'highlight'));

-- One full video per booking, as before; any number of highlights.
alter table public.videos drop constraint if exists videos_booking_id_key;
create unique index if not exists videos_one_full_per_booking on public.videos (booking_id) where kind = 'full';
create index if not exists videos_booking_kind on public.videos (booking_id, kind);

-- Object paths in the `videos` bucket, all in the user's folder (the bucket's read policy keys on it):
--   full:      <user_id>/<booking_id>.mp4
--   highlight: <user_id>/highlights/<booking_id>/<clip_id>.mp4
alter table public.videos drop constraint if exists videos_storage_path;
alter table public.videos add constraint videos_storage_path check (
    (kind = 'full' and storage_path = user_id || '/' || booking_id || '.mp4')
    or (kind = 'highlight' and storage_path ~ ('^' || user_id || '/highlights/' || booking_id || '/[A-Za-z0-9_-]{1,64}\.mp4$'))
);

-- Row-level security is the table's: `videos_read_own` lets a signed-in user read their own rows of either kind;
-- only the service role writes (20261101000200_ezrec_rls.sql).
