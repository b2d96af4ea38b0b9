"""The shared job table: leases instead of locks, exactly one owner per row, nothing stuck after a crash."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from services.video_worker import job_table as jobs_module
from services.video_worker.job_table import JobState, JobTable, LostLease, PartState


def test_a_claimed_job_is_nobody_elses_until_its_lease_runs_out(tmp_path: Path) -> None:
    a = JobTable(tmp_path / "jobs.db", lease_s=0.3)
    b = JobTable(tmp_path / "jobs.db", lease_s=0.3)  # another worker process: its own connection
    assert a.add("b1", "u1", "b1.mp4") and not b.add("b1", "u1", "b1.mp4"), "idempotent"
    job = a.claim("wa/process", [JobState.pending])
    assert job is not None and job.owner == "wa/process"
    assert b.claim("wb/process", [JobState.pending]) is None, "held"
    time.sleep(0.2)
    a.renew(["wa/process"])  # the owner's heartbeat
    time.sleep(0.2)
    assert b.claim("wb/process", [JobState.pending]) is None, "renewed: still held"
    time.sleep(0.4)  # the owner died: no more renewals
    taken = b.claim("wb/process", [JobState.pending])
    assert taken is not None and taken.owner == "wb/process"
    with pytest.raises(LostLease):
        a.set_state("b1", "wa/process", JobState.processed)  # the presumed-dead worker cannot overwrite
    b.set_state("b1", "wb/process", JobState.processed, frames_covered=42)
    job = a.get("b1")
    assert job.state == JobState.processed and job.owner is None and job.frames_covered == 42


def test_a_restarted_worker_gets_its_rows_back_at_once(tmp_path: Path) -> None:
    table = JobTable(tmp_path / "jobs.db", lease_s=60)
    table.add("b1", "u1")
    table.add_part("b2", 0, "b2/seg-00000.mp4", closed=True)
    assert table.claim("w1/process", [JobState.pending]) and table.claim_part("w1/process")
    other = JobTable(tmp_path / "jobs.db", lease_s=60)
    assert other.claim("w2/process", [JobState.pending]) is None and other.claim_part("w2/process") is None
    other.release_all(["w1/process", "w1/upload"])  # w1 starting again after a kill -9
    assert other.claim("w2/process", [JobState.pending]) is not None
    assert other.claim_part("w2/process") is not None


def test_concurrent_claims_never_hand_out_a_row_twice(tmp_path: Path) -> None:
    setup = JobTable(tmp_path / "jobs.db")
    for i in range(60):
        setup.add(f"b{i}", "u1", f"b{i}.mp4")
    got: dict[str, list[str]] = {}

    def work(name: str) -> None:
        table = JobTable(tmp_path / "jobs.db")
        mine = got.setdefault(name, [])
        while (job := table.claim(f"{name}/process", [JobState.pending])) is not None:
            mine.append(job.booking_id)
            table.set_state(job.booking_id, f"{name}/process", JobState.processed)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [b for names in got.values() for b in names]
    assert sorted(claimed) == sorted(f"b{i}" for i in range(60)), "each exactly once"


def test_backoff_releases_the_job_until_due(tmp_path: Path) -> None:
    table = JobTable(tmp_path / "jobs.db")
    table.add("b1", "u1")
    job = table.claim("w/upload", [JobState.pending])
    delay = table.retry_later(job.booking_id, "w/upload", "cloud unreachable", delay=0.3)
    assert delay == 0.3 and table.claim("w/upload", [JobState.pending]) is None
    assert 0 < table.seconds_until_next([JobState.pending], time.time()) <= 0.3
    time.sleep(0.35)
    again = table.claim("w/upload", [JobState.pending])
    assert again is not None and again.attempts == 1 and again.last_error == "cloud unreachable"


def test_parts_closed_first_and_their_facts_only_grow(tmp_path: Path) -> None:
    table = JobTable(tmp_path / "jobs.db")
    table.add_part("b1", 1, "b1/seg-00001.mp4", closed=False, user_id="u1")
    table.add_part("b1", 0, "b1/seg-00000.mp4", closed=True, start_at=100.0, end_at=109.9)
    table.add_part("b1", 1, "b1/seg-00001.mp4", closed=False)  # a rescan: nothing lost
    assert table.claim_part("w/process").idx == 0, "a closed segment before one still being written"
    nxt = table.claim_part("w/process")
    assert nxt.idx == 1 and not nxt.closed and nxt.user_id == "u1"
    table.mark_closed("b1", 1)
    assert table.is_closed("b1", 1)
    table.finish_part("b1", 1, "w/process", PartState.done, frames_in=300, frames_out=300, warnings=["x"])
    [_, one] = table.parts("b1")
    assert one.state == PartState.done and one.frames_in == 300 and one.warnings == ["x"] and one.owner is None


def test_a_failing_part_is_retried_then_given_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs_module, "backoff_s", lambda *args, **kwargs: 0.0)
    table = JobTable(tmp_path / "jobs.db")
    table.add_part("b1", 0, "b1/seg-00000.mp4", closed=True)
    for attempt in range(3):
        assert table.claim_part("w/process") is not None
        retried = table.retry_part("b1", 0, "w/process", "disk error")
        assert retried == (attempt < 2)
    assert table.parts("b1")[0].state == PartState.failed


def test_plan_first_writer_wins(tmp_path: Path) -> None:
    a, b = JobTable(tmp_path / "jobs.db"), JobTable(tmp_path / "jobs.db")
    assert a.plan("b1") is None
    assert a.plan("b1", {"fmt": "one"}) == {"fmt": "one"}
    assert b.plan("b1", {"fmt": "two"}) == {"fmt": "one"}


def test_a_table_from_the_first_release_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE jobs (booking_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, raw_file TEXT NOT NULL,"
               " state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL DEFAULT 0,"
               " last_error TEXT, created_at REAL NOT NULL)")
    db.execute("INSERT INTO jobs VALUES ('old', 'u1', 'old.mp4', 'processed', 2, 0, NULL, 1.0)")
    db.commit()
    db.close()
    table = JobTable(path)
    job = table.get("old")
    assert job.state == JobState.processed and job.raw_file == "old.mp4" and job.mode == "auto" and job.owner is None
    assert table.claim("w/upload", [JobState.processed]).booking_id == "old"


def test_a_table_without_finish_routes_gains_them_in_place(tmp_path: Path) -> None:
    """A device upgraded with segments queued: parts and jobs gain route columns, rows keep their state."""
    path = tmp_path / "jobs.db"
    table = JobTable(path)
    table.add_part("b1", 0, "b1/seg-00000.mp4", closed=True)
    table.add("b1", "u1")
    table.close()
    db = sqlite3.connect(path)
    for name in ("route", "route_reason"):
        db.execute(f"ALTER TABLE parts DROP COLUMN {name}")
    for name in ("route", "route_reasons"):
        db.execute(f"ALTER TABLE jobs DROP COLUMN {name}")
    db.commit()
    db.close()
    table = JobTable(path)
    [part] = table.parts("b1")
    assert part.closed and part.route is None and part.route_reason is None
    assert table.get("b1").route is None and table.get("b1").route_reasons == []
    claimed = table.claim_part("w/process")
    table.finish_part("b1", 0, "w/process", PartState.done, route="remux", route_reason=None)
    assert claimed is not None and table.parts("b1")[0].route == "remux"


def test_a_segment_waiting_for_its_close_is_due_at_once_when_it_closes(tmp_path: Path) -> None:
    """The remux path releases an open segment for a while; the recorder's close event makes it due now."""
    table = JobTable(tmp_path / "jobs.db")
    table.add_part("b1", 0, "b1/seg-00000.mp4")
    table.add_part("b1", 1, "b1/seg-00001.mp4")
    for idx in (0, 1):
        assert table.claim_part("w/process").idx == idx
        table.release_part("b1", idx, "w/process", delay=100)
    assert table.claim_part("w/process") is None
    table.add_part("b1", 0, "b1/seg-00000.mp4", closed=True)
    table.mark_closed("b1", 1)
    assert [table.claim_part("w/process").idx for _ in range(2)] == [0, 1]
