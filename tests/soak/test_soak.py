"""The seeded soak, short: three bookings (one overlapping attempt refused, actions on some) and every fault kind
once, the four services under `ezrec up`, the stack of tests/soak/stack.py. `make soak` runs the long one.

At the end every booking is accounted for (tests/soak/accounting.py): one video in the bucket with the right
owner and duration, or an explained state; the outbox empty, every service online, no crash, no temp file left."""

from __future__ import annotations

import json

from tests.soak.plan import FAULT_KINDS, make_plan
from tests.soak.run import soak, table

SHORT_SEED = 4
"""Chosen so the short plan has an overlapping attempt and a booking ended early (see test_short_plan_shape)."""


def test_a_seed_replays_the_same_plan_and_every_fault_kind_is_in_it():
    first, again, other = make_plan(3, 20), make_plan(3, 20), make_plan(4, 20)
    assert first.as_dict() == again.as_dict()
    assert first.as_dict() != other.as_dict()
    assert {f.kind for f in first.faults} == set(FAULT_KINDS)
    assert sum(1 for a in first.attempts if a.action != "overlap") == 20
    for kind in {f.kind for f in first.faults}:
        spells = sorted((f.at_s, f.at_s + f.duration_s) for f in first.faults if f.kind == kind)
        assert all(a[1] <= b[0] for a, b in zip(spells, spells[1:], strict=False)), f"{kind} overlaps itself"
    for attempt in first.attempts:
        assert attempt.create_at_s < attempt.start_s, attempt
        if attempt.action == "cancel_before":
            assert attempt.create_at_s < attempt.action_at_s < attempt.start_s, attempt
        if attempt.action in ("end_early", "shorten"):
            assert attempt.start_s < attempt.action_at_s < attempt.end_s, attempt
        if attempt.action == "shorten":
            assert attempt.action_at_s < attempt.new_end_s < attempt.end_s, attempt


def test_short_plan_shape():
    plan = make_plan(SHORT_SEED, 3, min_s=5, max_s=8, faults_per_kind=1)
    actions = {a.action for a in plan.attempts}
    assert "overlap" in actions and actions & {"end_early", "shorten", "cancel_before"}, actions


def test_short_soak_accounts_for_every_booking(tmp_path):
    report = soak(SHORT_SEED, 3, tmp_path / "soak", faults_per_kind=1, min_s=5, max_s=8)
    (tmp_path / "soak-short.json").write_text(json.dumps(report, indent=2, default=str))
    print(table(report))
    assert report["passed"], json.dumps({"failures": report["failures"], "timeline": report["timeline"]},
                                        indent=1, default=str)
    # without root there is no tmpfs of its own: the disk is not filled, and the report says why
    assert set(report["faults_skipped"]) <= ({"disk_fill"} if not report["data_dir_fs"].startswith("tmpfs")
                                             else set()), report["faults_skipped"]
    assert all(report["faults"][k] == 1 for k in FAULT_KINDS if k not in report["faults_skipped"]), report["faults"]
