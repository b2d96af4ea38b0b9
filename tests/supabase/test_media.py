"""user_settings drives the worker's media cache: settings and files come from the cloud, are fetched
ahead of time into the store's mirror, verified against the hash in their names, followed on change,
and still served while offline. Verified against the fake cloud over the real PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from shared.media_cache import MediaCache
from shared.models import LogoPlacement, UserSettings, storage_path_for_media
from shared.sync import CloudSync
from shared.timeutil import utc_now
from tests.media import make_intro, make_logo_png
from tests.supabase.conftest import drain


def _publish_media(web, tmp_path, kind, src, content_type):
    """What the web app (or another device) does: upload under a content-hashed name."""
    sha = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    path = storage_path_for_media("u1", f"{kind}-{sha}{src.suffix}")
    web.put_object("media", path, src, content_type)
    return path


def test_media_follow_the_cloud_settings(cloud_settings, make_store, fake_cloud, db, tmp_path):
    web = make_store(cloud_settings.model_copy(update={"data_dir": tmp_path / "web"}))
    intro = _publish_media(web, tmp_path, "intro", make_intro(tmp_path / "intro.mp4", 1.0), "video/mp4")
    logo = _publish_media(web, tmp_path, "logo", make_logo_png(tmp_path / "logo.png"), "image/png")
    web.put_user_settings(UserSettings(user_id="u1", intro_video_path=intro, logo_path=logo))
    drain(web)

    store = make_store()
    cache = MediaCache(store, cloud_settings.media_dir)
    media = cache.for_user("u1")
    assert media.problems == []
    assert media.intro.read_bytes() == (tmp_path / "intro.mp4").read_bytes()
    assert [p.read_bytes() for p in media.logos] == [(tmp_path / "logo.png").read_bytes()]

    # the user changes their logo in the web app
    new_logo = _publish_media(web, tmp_path, "logo",
                              make_logo_png(tmp_path / "logo2.png", rgba=(0, 0, 255, 255)), "image/png")
    web.put_user_settings(UserSettings(user_id="u1", intro_video_path=intro, logo_path=new_logo))
    drain(web)
    db.execute("INSERT INTO bookings (id, user_id, camera_id, start_time, end_time) VALUES ('mb1', 'u1', %s, %s, %s)",
               (cloud_settings.camera_id, utc_now() + timedelta(hours=1), utc_now() + timedelta(hours=2)))
    changes = []
    sync = CloudSync(store, cloud_settings.camera_id, 60, lambda: None, lambda *a: changes.append(a))
    sync.poll_once()
    assert changes == [("u1", "logo", new_logo)]
    assert store.local_object_path("media", new_logo) is not None  # fetched ahead of time

    # what the worker does on ezrec/media/updated: keep what the settings name now, drop the rest
    now = store.get_user_settings("u1")
    cache.drop_user("u1", {p for p in [now.intro_video_path, now.logo_path, *now.sponsor_logo_paths] if p})
    assert not (cloud_settings.media_dir / logo).exists()  # removed from the settings: dropped
    assert (cloud_settings.media_dir / intro).exists()
    media = cache.for_user("u1")
    assert [p.read_bytes() for p in media.logos] == [(tmp_path / "logo2.png").read_bytes()]

    # a damaged copy in the mirror is never used: it fails its hash and is fetched again
    mirror = store.local_object_path("media", new_logo)
    mirror.write_bytes(b"not a png")
    out = store.get_object("media", new_logo, tmp_path / "check.png")
    assert out.read_bytes() == (tmp_path / "logo2.png").read_bytes()

    # a damaged copy in the worker's own cache (MEDIA_CACHE_DIR) is not used either: fetched again
    cached = cloud_settings.media_dir / new_logo
    cached.write_bytes(b"\x89PNG truncated")
    media = cache.for_user("u1")
    assert media.problems == [] and [p.read_bytes() for p in media.logos] == [(tmp_path / "logo2.png").read_bytes()]

    # offline: settings and files come from the mirror
    fake_cloud.stop()
    offline = MediaCache(store, tmp_path / "fresh-cache").for_user("u1")
    assert offline.problems == []
    assert offline.intro is not None and len(offline.logos) == 1


def test_a_placement_changed_in_the_cloud_reaches_the_worker_and_is_announced(cloud_settings, make_store, fake_cloud,
                                                                            db, tmp_path):
    """The web app moves the logo (only the placement changes): the sync announces kind `logo`, and the worker's
    media (from the mirror, offline too) carry the new corner and width."""
    web = make_store(cloud_settings.model_copy(update={"data_dir": tmp_path / "web"}))
    logo = _publish_media(web, tmp_path, "logo", make_logo_png(tmp_path / "logo.png"), "image/png")
    web.put_user_settings(UserSettings(user_id="u1", logo_path=logo))
    drain(web)
    db.execute("INSERT INTO bookings (id, user_id, camera_id, start_time, end_time) VALUES ('mb1', 'u1', %s, %s, %s)",
               (cloud_settings.camera_id, utc_now() + timedelta(hours=1), utc_now() + timedelta(hours=2)))
    store = make_store()
    changes = []
    sync = CloudSync(store, cloud_settings.camera_id, 60, lambda: None, lambda *a: changes.append(a))
    sync.poll_once()
    cache = MediaCache(store, cloud_settings.media_dir)
    assert [s.corner for s in cache.for_user("u1").logo_specs] == ["top-right"]  # the default

    moved = LogoPlacement(corner="bottom-left", width_fraction=0.25, margin_fraction=0.0)
    web.put_user_settings(UserSettings(user_id="u1", logo_path=logo, logo_placement=moved))
    drain(web)
    changes.clear()
    sync.poll_once()
    assert changes == [("u1", "logo", logo)]
    fake_cloud.stop()  # from the mirror
    [spec] = MediaCache(store, tmp_path / "fresh-cache").for_user("u1").logo_specs
    assert (spec.corner, spec.width_fraction, spec.margin_fraction) == ("bottom-left", 0.25, 0.0)


def test_a_download_that_does_not_match_its_name_is_refused(cloud_settings, make_store, fake_cloud, tmp_path):
    web = make_store(cloud_settings.model_copy(update={"data_dir": tmp_path / "web"}))
    src = make_logo_png(tmp_path / "logo.png")
    web.put_object("media", "u1/media/logo-0000000000000000.png", src, "image/png")  # wrong hash in the name
    drain(web)
    store = make_store()
    media_settings = UserSettings(user_id="u1", logo_path="u1/media/logo-0000000000000000.png")
    store.local.put_user_settings(media_settings)
    fake_cloud.stop()
    fake_cloud.start()
    result = MediaCache(store, tmp_path / "cache").for_user("u1")
    assert result.logos == [] and "does not match" in result.problems[0]
    assert store.local_object_path("media", "u1/media/logo-0000000000000000.png") is None
