-- Logo placement (issue 17): per logo, a corner and a size and margin as fractions of the video's width.
-- `logo_placement` is the user's logo; `sponsor_logo_placements` follows `sponsor_logo_paths` by position.
-- Null (or a missing entry) keeps the default layout (shared/logo_layout.py). Idempotent, like the others.
-- Each placement: {"corner": "top-left" | "top-right" | "bottom-left" | "bottom-right",
--                  "width_fraction": 0.02..0.5, "margin_fraction": 0..0.2}, no other keys, no two in one corner.

alter table public.user_settings add column if not exists logo_placement jsonb;
alter table public.user_settings add column if not exists sponsor_logo_placements jsonb not null default '[]'::jsonb;

create or replace function public.logo_placement_ok(p jsonb) returns boolean
    language plpgsql immutable
as $$
begin
    if p is null or p = 'null'::jsonb then
        return true;
    end if;
    if jsonb_typeof(p) <> 'object'
       or (select count(*) from jsonb_object_keys(p)) <> 3
       or not (p ? 'corner' and p ? 'width_fraction' and p ? 'margin_fraction')
       or coalesce(p->>'corner', '') not in ('top-left', 'top-right', 'bottom-left', 'bottom-right')
       or jsonb_typeof(p->'width_fraction') <> 'number'
       or jsonb_typeof(p->'margin_fraction') <> 'number' then
        return false;
    end if;
    return (p->>'width_fraction')::numeric between 0.02 and 0.5
       and (p->>'margin_fraction')::numeric between 0 and 0.2;
end
$$;

create or replace function public.logo_placements_ok(logo jsonb, sponsors jsonb) returns boolean
    language plpgsql immutable
as $$
begin
    if not public.logo_placement_ok(logo) or jsonb_typeof(sponsors) <> 'array' or jsonb_array_length(sponsors) > 3
       or exists (select 1 from jsonb_array_elements(sponsors) e where not public.logo_placement_ok(e)) then
        return false;
    end if;
    -- each logo in a corner of its own
    return (select count(c) = count(distinct c)
            from (select logo->>'corner' as c
                  union all select e->>'corner' from jsonb_array_elements(sponsors) e) corners);
end
$$;

alter table public.user_settings drop constraint if exists user_settings_logo_placements;
alter table public.user_settings add constraint user_settings_logo_placements
    check (public.logo_placements_ok(logo_placement, sponsor_logo_placements));
