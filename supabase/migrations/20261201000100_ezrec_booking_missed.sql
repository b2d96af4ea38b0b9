-- The `missed` booking status and its reason (docs/bookings.md). Idempotent, like the others.
-- Order of statuses: confirmed -> missed -> completed -> video_processed -> video_uploaded. `missed` sits
-- before `completed`, so a recording that finishes after the device judged the slot missed still completes
-- the booking; nothing that was recorded can become missed.

alter table public.bookings add column if not exists status_reason text;

alter table public.bookings drop constraint if exists bookings_status_check;
alter table public.bookings add constraint bookings_status_check
    check (status in ('confirmed', 'missed', 'completed', 'video_processed', 'video_uploaded'));

-- Only a missed booking carries a reason (why it was missed), at most 300 characters.
alter table public.bookings drop constraint if exists bookings_status_reason_check;
alter table public.bookings add constraint bookings_status_reason_check
    check (status_reason is null or (status = 'missed' and char_length(status_reason) <= 300));

create or replace function public.booking_status_rank(s text) returns integer
    language sql immutable strict
as $$ select array_position(array['confirmed', 'missed', 'completed', 'video_processed', 'video_uploaded'], s) $$;

-- As before (a late or replayed status keeps the newer one), and the reason follows the status: kept with a
-- status that is kept, cleared when the booking moves past `missed` (a late recording completed it).
create or replace function public.bookings_status_forward_only() returns trigger
    language plpgsql
as $$
begin
    if public.booking_status_rank(new.status) < public.booking_status_rank(old.status) then
        new.status := old.status;
        new.status_reason := old.status_reason;
    end if;
    if new.status <> 'missed' then
        new.status_reason := null;
    end if;
    return new;
end
$$;
