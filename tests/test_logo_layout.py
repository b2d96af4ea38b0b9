"""shared/logo_layout.py: a user's placements -> the LogoSpecs the worker, recorder, preview and CLI draw."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest
from pydantic import ValidationError

from shared.logo_layout import DEFAULT_CORNERS, booking_logos, logo_slots, logo_specs, place_logos
from shared.models import LogoCorner, LogoPlacement, UserSettings, corner_clashes
from shared.overlay import CORNERS, LogoSpec

LOGO, S0, S1, S2 = "u/media/logo-a.png", "u/media/sponsor-b.png", "u/media/sponsor-c.png", "u/media/sponsor-d.png"


def _settings(**extra) -> UserSettings:
    return UserSettings(user_id="u", logo_path=LOGO, sponsor_logo_paths=[S0, S1, S2], **extra)


def test_without_placements_the_layout_is_the_one_before_placements_existed():
    """part_step.py drew LogoSpec(path=p, corner=CORNERS[i % 4]) with LogoSpec's default size and margin."""
    specs = logo_specs(_settings())
    assert specs == [LogoSpec(path=Path(p), corner=c) for p, c in zip([LOGO, S0, S1, S2], DEFAULT_CORNERS,
                                                                      strict=True)]
    assert DEFAULT_CORNERS == ("top-right", "top-left", "bottom-right", "bottom-left")
    assert (LogoPlacement(corner="top-left").width_fraction, LogoPlacement(corner="top-left").margin_fraction) == (
        LogoSpec(Path("x")).width_fraction, LogoSpec(Path("x")).margin_fraction) == (0.15, 0.02)
    # No user logo: the first sponsor takes the first default corner, as before.
    only_sponsor = UserSettings(user_id="u", sponsor_logo_paths=[S0])
    assert logo_specs(only_sponsor) == [LogoSpec(path=Path(S0), corner="top-right")]
    assert logo_specs(None) == [] and logo_specs(UserSettings(user_id="u")) == []
    assert booking_logos([Path(p) for p in [LOGO, S0, S1, S2, "fifth.png"]]) == specs  # files only: at most four


def test_placements_are_applied_and_the_logos_left_to_default_avoid_their_corners():
    mine = LogoPlacement(corner="top-left", width_fraction=0.3, margin_fraction=0.05)
    second = LogoPlacement(corner="bottom-right", width_fraction=0.1, margin_fraction=0.0)
    specs = logo_specs(_settings(logo_placement=mine, sponsor_logo_placements=[None, second]))
    assert [(str(s.path), s.corner, s.width_fraction, s.margin_fraction) for s in specs] == [
        (LOGO, "top-left", 0.3, 0.05),
        (S0, "top-right", 0.15, 0.02),  # its default (top-left) is the user's: the next free one
        (S1, "bottom-right", 0.1, 0.0),
        (S2, "bottom-left", 0.15, 0.02),
    ]
    assert len({s.corner for s in specs}) == 4


def test_a_logo_that_cannot_be_fetched_leaves_a_gap_instead_of_moving_the_others():
    files = {LOGO: Path("/cache/logo.png"), S1: Path("/cache/s1.png")}
    specs = logo_specs(_settings(), files.get)
    assert [(s.path, s.corner) for s in specs] == [(Path("/cache/logo.png"), "top-right"),
                                                  (Path("/cache/s1.png"), "bottom-right")]


def test_slots_follow_the_sponsor_paths_and_ignore_extra_placements():
    p = LogoPlacement(corner="bottom-left")
    settings = UserSettings(user_id="u", sponsor_logo_paths=[S0], sponsor_logo_placements=[p, None])
    assert logo_slots(settings) == [(S0, p)]


def test_a_fifth_logo_shares_a_corner_as_before():
    specs = place_logos([(f"l{i}", None) for i in range(5)], Path)
    assert [s.corner for s in specs] == [*DEFAULT_CORNERS, "top-right"]


def test_corners_are_the_overlays_corners():
    assert set(get_args(LogoCorner)) == set(CORNERS) == set(DEFAULT_CORNERS)


@pytest.mark.parametrize("bad", [{"corner": "middle"}, {"corner": "top-left", "width_fraction": 0.01},
                                 {"corner": "top-left", "width_fraction": 0.51},
                                 {"corner": "top-left", "margin_fraction": -0.01},
                                 {"corner": "top-left", "margin_fraction": 0.21},
                                 {"corner": "top-left", "size": 3}])
def test_a_placement_out_of_range_is_refused(bad):
    with pytest.raises(ValidationError):
        LogoPlacement(**bad)


def test_corner_clashes_names_each_logo_that_repeats_a_corner():
    tl, tr = LogoPlacement(corner="top-left"), LogoPlacement(corner="top-right")
    assert corner_clashes(tl, [tr, None]) == []
    problems = corner_clashes(tl, [tr, LogoPlacement(corner="top-left", width_fraction=0.2)])
    assert problems == [(("sponsor_logo_placements", 1),
                         "sponsor logo 1 and the logo are both placed top-left; each logo needs a corner of its own")]
