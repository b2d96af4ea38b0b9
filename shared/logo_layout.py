"""A user's logo settings -> the LogoSpecs drawn on their video.

One place for the mapping, shared by the worker, the recorder (logos blended at capture), the API's preview
and `ezrec process`, so none of them can put a logo somewhere the others would not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from shared.models import LogoPlacement, UserSettings
from shared.overlay import Corner, LogoSpec

DEFAULT_CORNERS: tuple[Corner, ...] = ("top-right", "top-left", "bottom-right", "bottom-left")
"""A logo without a placement takes the first of these that no other logo holds (the user's logo first, then
the sponsors): with no placements at all, the i-th logo goes to DEFAULT_CORNERS[i], the layout from before
placements existed."""

MAX_LOGOS = 4
"""The user's logo plus up to three sponsor logos."""

T = TypeVar("T")
LogoSlot = tuple[str, LogoPlacement | None]


def logo_slots(settings: UserSettings | None) -> list[LogoSlot]:
    """The logos the settings name, in drawing order (user's logo, then sponsors), each with its placement."""
    if settings is None:
        return []
    slots: list[LogoSlot] = [(settings.logo_path, settings.logo_placement)] if settings.logo_path else []
    for i, path in enumerate(settings.sponsor_logo_paths):
        placements = settings.sponsor_logo_placements
        slots.append((path, placements[i] if i < len(placements) else None))
    return slots


def place_logos(slots: Sequence[tuple[T, LogoPlacement | None]],
                local: Callable[[T], Path | None]) -> list[LogoSpec]:
    """Resolve default corners over every slot, then keep the logos `local` finds a file for (None: unavailable).

    Corners are chosen before files are looked up, so a logo that cannot be fetched leaves a gap instead of
    moving the others into its corner.
    """
    taken = {p.corner for _, p in slots if p is not None}
    resolved: list[tuple[T, LogoPlacement]] = []
    for i, (item, placement) in enumerate(slots):
        if placement is None:
            fallback = DEFAULT_CORNERS[i % len(DEFAULT_CORNERS)]  # a 5th logo (`ezrec process`) shares a row
            corner = next((c for c in DEFAULT_CORNERS if c not in taken), fallback)
            taken.add(corner)
            placement = LogoPlacement(corner=corner)
        resolved.append((item, placement))
    specs: list[LogoSpec] = []
    for item, placement in resolved:
        path = local(item)
        if path is not None:
            specs.append(LogoSpec(path=path, corner=placement.corner, width_fraction=placement.width_fraction,
                                  margin_fraction=placement.margin_fraction))
    return specs


def logo_specs(settings: UserSettings | None, local: Callable[[str], Path | None] = Path) -> list[LogoSpec]:
    """The user's logos as drawn; `local` maps a `media` object path to its file here (default: the path as is)."""
    return place_logos(logo_slots(settings), local)


def booking_logos(paths: Sequence[Path]) -> list[LogoSpec]:
    """Logo files in their settings' order with no placements: the defaults (what `logo_specs` gives for a user
    who never placed a logo). A caller that has the user's settings should use `logo_specs`."""
    return place_logos([(Path(p), None) for p in paths[:MAX_LOGOS]], lambda path: path)
