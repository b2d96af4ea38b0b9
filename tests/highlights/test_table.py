"""The worker's clip table (DATA_DIR/state/highlights.sqlite3): a clip survives a kill -9 of the worker holding it,
is made once per version, and goes to one worker at a time."""

from __future__ import annotations

import time
from datetime import timedelta

from services.video_worker.highlights.table import ClipTable
from shared.payloads import HighlightClip
from shared.timeutil import utc_now

T0 = utc_now().replace(microsecond=0)


def _clip(end_s: float, presses: int = 1) -> HighlightClip:
    return HighlightClip(clip_id="h1", booking_id="b1", camera_id="c", user_id="u", start_at=T0,
                         end_at=T0 + timedelta(seconds=end_s), presses=presses)


def test_a_clip_held_by_a_killed_worker_is_taken_again(tmp_path):
    path = tmp_path / "highlights.sqlite3"
    table = ClipTable(path, lease_s=30)
    assert table.add(_clip(5)) and not table.add(_clip(5))  # a redelivered event adds nothing
    held = table.claim("w1/highlights")
    assert held is not None and held.attempts == 1
    assert table.claim("w2/highlights") is None  # leased to w1
    del table  # kill -9: nothing released
    restarted = ClipTable(path, lease_s=30)
    again = restarted.claim("w1/highlights")  # the same worker, restarted, takes it at once
    assert again is not None and again.clip_id == "h1" and again.attempts == 2
    other = ClipTable(path, lease_s=30)
    assert other.claim("w2/highlights", now=time.time() + 31) is not None  # another, once the lease ran out


def test_an_extension_during_the_cut_leaves_the_clip_to_be_made_again(tmp_path):
    table = ClipTable(tmp_path / "highlights.sqlite3")
    table.add(_clip(5))
    row = table.claim("w")
    assert table.add(_clip(8, presses=2))  # pressed again while it was being cut
    assert not table.done(row, "w", "video-1", end_at=row.end_at)  # made up to 5 s: not the clip any more
    again = table.claim("w")
    assert again is not None and again.end_at == (T0 + timedelta(seconds=8)).timestamp() and again.presses == 2
    assert table.done(again, "w", "video-1", end_at=again.end_at)
    assert table.claim("w") is None
    assert table.add(_clip(9, presses=3))  # after it was made: reopened
    assert table.claim("w") is not None
