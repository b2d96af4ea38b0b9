"""Stuck cloud writes, handled by the operator without a shell on the Pi: the fake cloud refuses a video's upload
(its fault-injection switch), the refusal and the writes it holds back show in GET /outbox and `ezrec outbox list`,
and `ezrec outbox replay` gets it through once the cloud accepts it again; another refused upload is dropped after
the confirmation (`ezrec outbox drop`, which says what the booking loses), its held writes go on, and its video
stays on the device for good. Real API process (uvicorn), real broker, real PostgreSQL behind the fake cloud; the
CLI runs as `python -m services.cli`, as an operator types it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from shared.models import BookingIn, BookingStatus, Video, storage_path_for_video, video_id_for
from shared.timeutil import utc_now
from tests.api.conftest import AUTH, LiveServer
from tests.conftest import TOKEN
from tests.supabase.fakecloud import storage_fault

ROOT = Path(__file__).resolve().parents[2]
SIZE = 300_000


@pytest.fixture
def api(cloud_settings):
    from services.api.main import create_app

    server = LiveServer(create_app(cloud_settings))
    server.start()
    yield server
    server.stop()


def ezrec(server: LiveServer, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "SUPABASE_", "EZREC_"))}
    return subprocess.run([sys.executable, "-m", "services.cli", *args, "--api", server.url],
                          input=stdin, capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**env, "API_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)})


def finished_video(store, tmp_path: Path, booking_id: str) -> Path:
    """What the worker does for a recorded booking: the object, the videos row, `video_uploaded`; source removed."""
    start = datetime(2026, 3, 1, 18, tzinfo=UTC) + timedelta(hours=2 * len(store.local.list_bookings()))
    store.create_bookings([BookingIn(id=booking_id, user_id="u1", start_time=start,
                                     end_time=start + timedelta(minutes=30))], store.settings.camera_id)
    store.advance_booking_status(booking_id, BookingStatus.completed)
    store.advance_booking_status(booking_id, BookingStatus.video_processed)
    src = tmp_path / f"{booking_id}.mp4"
    src.write_bytes(os.urandom(SIZE))
    path = storage_path_for_video("u1", booking_id)
    store.put_object("videos", path, src, "video/mp4")
    store.upsert_video(Video(id=video_id_for(booking_id), booking_id=booking_id, user_id="u1",
                             camera_id=store.settings.camera_id, storage_path=path, size_bytes=SIZE,
                             duration_seconds=1.0, uploaded_at=utc_now()))
    store.advance_booking_status(booking_id, BookingStatus.video_uploaded)
    src.unlink()
    return store.local_object_path("videos", path)


def refuse_upload_of(fake_cloud, booking_id: str) -> None:
    """The project's upload limit, as Storage answers it (HTTP 400, statusCode 413), for this one upload."""
    fake_cloud.inject(storage_fault(413, "EntityTooLarge", "The object exceeded the maximum allowed size",
                                    "Payload too large", method="POST",
                                    path=f"^/storage/v1/object/videos/u1/{booking_id}", count=1))


def wait_refused(store, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while store.outbox.refused_count() < count:
        assert time.monotonic() < deadline, f"not refused: {store.outbox.stuck()}"
        time.sleep(0.1)


def wait_drained(store, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while store.outbox.pending_count():
        assert time.monotonic() < deadline, f"not drained: {store.outbox.pending()}"
        time.sleep(0.1)


def test_a_refused_upload_is_listed_replayed_through_the_cli_and_lands(api, store, fake_cloud, db, cloud_settings,
                                                                       listen, tmp_path):
    actions = listen(f"ezrec/{cloud_settings.camera_id}/operator/action")
    refuse_upload_of(fake_cloud, "b1")
    finished_video(store, tmp_path, "b1")  # the API's drainer sends it; the cloud refuses the upload
    wait_refused(store, 1)

    view = httpx.get(f"{api.url}/outbox", headers=AUTH).json()
    refused, *held = view["ops"]
    assert (refused["state"], refused["kind"], refused["key"]) == ("refused", "object_put", "b1")
    assert refused["booking"]["status"] == "video_uploaded" and "413" in refused["error"]
    assert refused["what"] == "the upload of videos/u1/b1.mp4 (0.3 MB)"
    assert [h["kind"] for h in refused["holds"]] == ["video_upsert", "booking_status"]
    assert [(h["state"], h["held_by"]) for h in held] == [("held", refused["id"])] * 2
    assert view["refused"] == 1 and view["held"] == 2
    assert "the video stays on this device only" in refused["if_dropped"]
    op_id = refused["id"]

    listed = ezrec(api, "outbox", "list")
    assert listed.returncode == 0, listed.stderr
    assert f"{op_id}  refused" in listed.stdout and "the upload of videos/u1/b1.mp4" in listed.stdout
    assert "Storage answered 413" in listed.stdout and "the videos row of booking b1" in listed.stdout
    shown = ezrec(api, "outbox", "show", str(op_id))
    assert "holds back 2 later write(s)" in shown.stdout and "if dropped: The cloud never gets" in shown.stdout
    assert '"content_type": "video/mp4"' in shown.stdout

    held_id = held[0]["id"]
    again = httpx.post(f"{api.url}/outbox/{held_id}/replay", headers=AUTH)
    assert again.status_code == 409 and f"waits behind refused operation {op_id}" in again.json()["detail"]
    assert httpx.post(f"{api.url}/outbox/999999/replay", headers=AUTH).status_code == 404

    # The fault switch answered once: the cloud takes the upload now. The CLI's replay waits for its answer.
    replayed = ezrec(api, "outbox", "replay", str(op_id))
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert replayed.stdout.startswith("applied: the cloud took the upload of videos/u1/b1.mp4")
    wait_drained(store)
    assert fake_cloud.object_file("videos", "u1/b1.mp4").stat().st_size == SIZE
    assert db.execute("SELECT status FROM public.bookings WHERE id = 'b1'").fetchone()[0] == "video_uploaded"
    assert db.execute("SELECT count(*) FROM public.videos WHERE booking_id = 'b1'").fetchone()[0] == 1
    assert httpx.get(f"{api.url}/outbox", headers=AUTH).json()["ops"] == []

    _, payload = actions.wait_for(lambda t, p: json.loads(p)["action"] == "outbox_replay")
    event = json.loads(payload)
    assert event["outcome"] == "applied" and event["target"] == f"outbox operation {op_id}"


def test_dropping_a_refused_upload_asks_first_and_keeps_the_video_on_the_device(
        api, store, fake_cloud, db, cloud_settings, listen, tmp_path):
    actions = listen(f"ezrec/{cloud_settings.camera_id}/operator/action")
    refuse_upload_of(fake_cloud, "b2")
    mirror = finished_video(store, tmp_path, "b2")
    wait_refused(store, 1)
    [op] = [o for o in httpx.get(f"{api.url}/outbox", headers=AUTH).json()["ops"] if o["state"] == "refused"]

    declined = ezrec(api, "outbox", "drop", str(op["id"]), stdin="n\n")
    assert declined.returncode == 1
    assert "if dropped: The cloud never gets videos/u1/b2.mp4" in declined.stdout
    assert "Drop operation" in declined.stdout and "not dropped" in declined.stdout
    assert store.outbox.refused_count() == 1, "nothing was dropped"

    dropped = ezrec(api, "outbox", "drop", str(op["id"]), "--yes")
    assert dropped.returncode == 0, dropped.stderr
    assert f"dropped operation {op['id']}: the upload of videos/u1/b2.mp4" in dropped.stdout
    assert "the video stays on this device only" in dropped.stdout
    assert "The 2 write(s) it holds back then go to the cloud" in dropped.stdout
    wait_drained(store)
    assert store.outbox.refused_count() == 0
    assert db.execute("SELECT status FROM public.bookings WHERE id = 'b2'").fetchone()[0] == "video_uploaded"
    assert not fake_cloud.object_file("videos", "u1/b2.mp4").exists()
    # The cloud will never have it: the disk guard must never free the only copy.
    assert mirror.exists() and mirror not in store.reclaimable_files()
    assert not store.reclaim_file(mirror) and mirror.exists()
    view = httpx.get(f"{api.url}/outbox", headers=AUTH).json()
    assert [d["id"] for d in view["dropped"]] == [op["id"]]
    assert "dropped" in ezrec(api, "outbox", "list").stdout

    _, payload = actions.wait_for(lambda t, p: json.loads(p)["action"] == "outbox_drop")
    assert json.loads(payload)["outcome"] == "dropped" and "videos/u1/b2.mp4" in json.loads(payload)["detail"]
    assert httpx.delete(f"{api.url}/outbox/{op['id']}", headers=AUTH).status_code == 404, "gone already"


def test_refused_status_rows_are_listed_a_few_at_a_time(store, fake_cloud, cloud_settings):
    """Each status row supersedes the last and holds nothing back; a broken system_status table refuses one a
    minute: the operator sees the latest few, and how many more."""
    from shared.models import SystemStatusRow
    from tests.supabase.fakecloud import postgrest_fault

    fake_cloud.inject(postgrest_fault("23514", "new row violates check constraint", method="POST",
                                      path="^/rest/v1/system_status", count=None))
    for minute in range(5):
        at = datetime(2026, 3, 1, 18, minute, tzinfo=UTC)
        store.put_system_status(SystemStatusRow(camera_id=cloud_settings.camera_id, collected_at=at, snapshot={}))
    store.sync_now()
    view = store.cloud_outbox().view()
    assert view.refused == 5 and view.held == 0
    assert [op.kind for op in view.ops] == ["system_status"] * 3 and view.not_listed == 2
    assert all(op.state == "refused" and op.holds == [] for op in view.ops)
    assert view.ops[0].if_dropped == "One status row the cloud never gets; later rows replace it anyway."
