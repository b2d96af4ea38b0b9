"""A write the cloud refused, or a fault every write meets, reaches the operator: the status service raises an
alert for each (on ezrec/<camera>/alerts, once, and in the snapshot's alerts_active / cloud_problems) and clears
it when the write is replayed and lands, or the fault is gone. Real broker, real status service, fake cloud."""

from __future__ import annotations

import json
import os

from shared.store import LocalStore
from tests.supabase.conftest import drain
from tests.supabase.fakecloud import storage_fault


def _alerts(listener, state: str) -> dict[str, dict]:
    return {a["id"]: a for a in (json.loads(p) for _, p, _ in listener.messages) if a["state"] == state}


def test_a_refused_upload_raises_an_alert_naming_it_until_it_is_replayed(
        status, store, cloud_settings, fake_cloud, db, listen, tmp_path):
    alerts = listen(f"ezrec/{cloud_settings.camera_id}/alerts")
    src = tmp_path / "b1.mp4"
    src.write_bytes(os.urandom(2048))
    store.put_object("videos", "u1/b1.mp4", src, "text/plain")  # the videos bucket takes video/mp4 only
    store.sync_now()
    [(op_id, *_)] = store.outbox.rejected()

    snapshot = status.judge(status.collect())
    alert_id = f"cloud_refused:{op_id}"
    assert snapshot.alerts_active == [alert_id]
    [problem] = snapshot.cloud_problems
    assert (problem.kind, problem.key) == ("cloud_refused", "b1")
    assert "videos/u1/b1.mp4" in problem.message and "415" in problem.message
    assert f"replay outbox operation {op_id}" in problem.message
    alerts.wait_for(lambda t, p: json.loads(p)["id"] == alert_id)
    raised = _alerts(alerts, "raised")[alert_id]
    assert raised["kind"] == "cloud_refused" and raised["message"] == problem.message
    assert status.judge(status.collect()).alerts_active == [alert_id]  # sent once, still active

    db.execute("UPDATE storage.buckets SET allowed_mime_types = NULL WHERE id = 'videos'")  # the operator's fix
    try:
        assert store.outbox.replay(op_id)
        drain(store)
    finally:
        db.execute("UPDATE storage.buckets SET allowed_mime_types = array['video/mp4'] WHERE id = 'videos'")
    snapshot = status.judge(status.collect())
    assert snapshot.alerts_active == [] and snapshot.cloud_problems == []
    alerts.wait_for(lambda t, p: json.loads(p)["id"] == alert_id and json.loads(p)["state"] == "cleared")
    assert fake_cloud.object_file("videos", "u1/b1.mp4").read_bytes() == src.read_bytes()


def test_a_key_storage_refuses_raises_a_fault_alert_cleared_when_writes_go_through(
        status, store, cloud_settings, fake_cloud, listen, tmp_path):
    alerts = listen(f"ezrec/{cloud_settings.camera_id}/alerts")
    fake_cloud.inject(storage_fault(403, "AccessDenied", "invalid signature", "Unauthorized", method="POST",
                                    path="^/storage/v1/object/", count=1))
    src = tmp_path / "b2.mp4"
    src.write_bytes(os.urandom(2048))
    store.put_object("videos", "u1/b2.mp4", src, "video/mp4")
    store.sync_now()
    snapshot = status.judge(status.collect())
    assert snapshot.alerts_active == ["cloud_fault:storage:auth"]
    assert "SUPABASE_SERVICE_ROLE_KEY" in snapshot.cloud_problems[0].message
    alerts.wait_for(lambda t, p: json.loads(p)["kind"] == "cloud_fault")

    drain(store)
    assert status.judge(status.collect()).alerts_active == []
    alerts.wait_for(lambda t, p: json.loads(p)["state"] == "cleared")


def test_an_unreadable_outbox_keeps_the_cloud_alerts_as_they_are(status, store, monkeypatch, tmp_path):
    src = tmp_path / "b3.mp4"
    src.write_bytes(b"x" * 100)
    store.put_object("videos", "u1/b3.mp4", src, "text/plain")
    store.sync_now()
    assert status.judge(status.collect()).alerts_active != []

    def broken():
        raise OSError("disk error")

    monkeypatch.setattr(store, "cloud_problems", broken)
    snapshot = status.judge(status.collect())
    assert snapshot.cloud_problems is None and snapshot.alerts_active != [], "not cleared for lack of information"
    assert "cloud_problems" not in snapshot.model_dump(mode="json")


def test_the_embedded_store_reports_no_cloud_problems(settings):
    store = LocalStore(settings.data_dir)
    try:
        assert store.cloud_problems() is None
    finally:
        store.close()
