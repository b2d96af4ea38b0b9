-- Row-level security: a signed-in user reads their own rows; only the device's service role writes.
-- The service role bypasses RLS (never ship its key to a browser). Grants are explicit too, so a
-- missing policy can never turn into public write access.

alter table public.bookings enable row level security;
alter table public.videos enable row level security;
alter table public.system_status enable row level security;
alter table public.system_status_history enable row level security;
alter table public.user_settings enable row level security;

revoke all on table public.bookings, public.videos, public.system_status, public.system_status_history,
    public.user_settings from anon, authenticated;
grant select on table public.bookings, public.videos, public.user_settings to authenticated;
grant all on table public.bookings, public.videos, public.system_status, public.system_status_history,
    public.user_settings to service_role;

drop policy if exists bookings_read_own on public.bookings;
create policy bookings_read_own on public.bookings
    for select to authenticated using (user_id = (select auth.uid())::text);

drop policy if exists videos_read_own on public.videos;
create policy videos_read_own on public.videos
    for select to authenticated using (user_id = (select auth.uid())::text);

drop policy if exists user_settings_read_own on public.user_settings;
create policy user_settings_read_own on public.user_settings
    for select to authenticated using (user_id = (select auth.uid())::text);

-- system_status and its history: RLS on and no policy = the service role only.
