"""Logos drawn at capture: into every frame before its one encode, stamped, and never at the recording's cost.

Real PyAV encodes and decodes, real PNGs, the real broker and the store's media bucket; only the Pi
camera is stood in (tests/recorder/pi_standin.py), keeping Picamera2's pre_callback contract.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import numpy as np
import paho.mqtt.client as mqtt
import paho.mqtt.publish as mqtt_publish
import pytest

from services.recorder.logos import BookingLogos, Geometry
from services.recorder.writer import EncodeSpec, SegmentWriter, capture_settings
from shared import capture_stamp
from shared.logo_layout import booking_logos, logo_specs
from shared.models import BookingIn, LogoPlacement, UserSettings
from shared.overlay import Rect, load_logos
from shared.payloads import MediaUpdated
from shared.schedule_cache import write_snapshot
from shared.settings import Settings
from shared.store import LocalStore
from shared.topics import MEDIA_UPDATED
from tests.media import make_logo_png
from tests.recorder import pi_standin
from tests.recorder.conftest import RecorderEnv, encode_segment, recording, wait_until, whole_second

W, H, FPS = 320, 240, 15
T0 = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)
RED_Y = 16 + 219 * 0.299  # BT.601 limited range (the synthetic camera's 320x240)
BLUE_Y = 16 + 219 * 0.114


def _lossless() -> EncodeSpec:
    return EncodeSpec(W, H, FPS, capture_settings(Settings(_env_file=None, camera_crf=0)))  # type: ignore[call-arg]


def _write(path: Path, spec: EncodeSpec, count: int = FPS) -> SegmentWriter:
    return encode_segment(path, spec, count, T0, FPS)


def _planes(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray() for f in c.decode(video=0)]  # yuv420p: (h*3/2, w)


def _rects(paths: list[Path], width: int = W, height: int = H) -> list[Rect]:
    return [p.rect for p in load_logos(booking_logos(paths), width, height, [])]


def _body(rect: Rect, border_fraction: float) -> tuple[slice, slice]:
    """The opaque body of a logo laid out at `rect` (its transparent border scaled, plus 2 px of scaling blur)."""
    by, bx = round(rect.h * border_fraction) + 2, round(rect.w * border_fraction) + 2
    return slice(rect.y + by, rect.y + rect.h - by), slice(rect.x + bx, rect.x + rect.w - bx)


def _luma_in(frame: np.ndarray, rect: Rect, border_fraction: float) -> float:
    ys, xs = _body(rect, border_fraction)
    return float(frame[:H][ys, xs].mean())


# ---- the segment writer ---------------------------------------------------------------------------


def test_logos_are_blended_into_every_frame_and_transparent_parts_leave_the_picture_untouched(tmp_path):
    red = make_logo_png(tmp_path / "red.png", size=(64, 32), rgba=(255, 0, 0, 255), transparent_border=8)
    blue = make_logo_png(tmp_path / "blue.png", size=(64, 32), rgba=(0, 0, 255, 255), transparent_border=8)
    _write(tmp_path / "plain.mp4", _lossless())
    logos = BookingLogos("b1", booking_logos([red, blue]))
    drawn = _write(tmp_path / "drawn.mp4", EncodeSpec(W, H, FPS, _lossless().settings, logos=logos))
    before, after = _planes(tmp_path / "plain.mp4"), _planes(tmp_path / "drawn.mp4")
    assert len(before) == len(after) == FPS

    rect_red, rect_blue = _rects([red, blue])
    assert rect_red.x > W // 2 and rect_blue.x < W // 2, "user logo top right, first sponsor top left"
    visible = np.zeros((H * 3 // 2, W), bool)
    for rect in (rect_red, rect_blue):
        # the opaque body inside the 8/32 transparent border (luma, and the chroma it shares)
        ys, xs = slice(rect.y + rect.h // 4 - 2, rect.y + rect.h * 3 // 4 + 2), \
            slice(rect.x + rect.w // 8 - 2, rect.x + rect.w * 7 // 8 + 2)
        visible[ys, xs] = True
        for offset in (H, H + H // 4):  # U and V rows in PyAV's packed (h*3/2, w) layout: two chroma rows a row
            cy, cx = slice(ys.start // 2, ys.stop // 2 + 1), slice(xs.start // 2, xs.stop // 2 + 1)
            c_mask = np.zeros((H // 2, W // 2), bool)
            c_mask[cy, cx] = True
            visible[offset:offset + H // 4] |= c_mask.reshape(H // 4, W)
    for i, (b, a) in enumerate(zip(before, after, strict=True)):
        assert abs(_luma_in(a, rect_red, 0.25) - RED_Y) < 3, f"frame {i}: the red logo is there"
        assert abs(_luma_in(a, rect_blue, 0.25) - BLUE_Y) < 3, f"frame {i}: the blue logo is there"
        assert np.array_equal(b[~visible], a[~visible]), \
            f"frame {i}: every pixel outside the logos' opaque bodies (transparent border included) is untouched"

    with av.open(str(tmp_path / "drawn.mp4")) as c:
        fmt_json, fingerprint = capture_stamp.read(c.metadata)
    assert drawn.format is not None and fmt_json == drawn.format.to_json()
    assert fingerprint == capture_stamp.logo_fingerprint(booking_logos([red, blue])) != capture_stamp.NO_LOGOS
    assert drawn.logos.fingerprint == fingerprint
    assert logos.prepare(Geometry(W, H, False, False)) is drawn.logos, "prepared once per booking and geometry"


def test_a_corrupt_or_missing_logo_is_skipped_and_the_recording_goes_on(tmp_path, caplog):
    good = make_logo_png(tmp_path / "good.png", size=(64, 32), rgba=(255, 0, 0, 255), transparent_border=8)
    corrupt = tmp_path / "corrupt.png"
    data = good.read_bytes()
    corrupt.write_bytes(data[: len(data) // 2])  # truncated mid-file
    missing = tmp_path / "missing.png"
    logos = BookingLogos("b2", booking_logos([corrupt, good, missing]))
    writer = _write(tmp_path / "seg.mp4", EncodeSpec(W, H, FPS, logos=logos))
    assert writer.frames == FPS and len(_planes(tmp_path / "seg.mp4")) == FPS, "every frame recorded"
    assert [p.name for p in writer.logos.logos] == ["good.png"]
    with av.open(str(tmp_path / "seg.mp4")) as c:
        _, fingerprint = capture_stamp.read(c.metadata)
    good_spec = [s for s in booking_logos([corrupt, good, missing]) if s.path == good]
    assert fingerprint == capture_stamp.logo_fingerprint(good_spec), "the stamp names only the logo drawn"
    assert "corrupt.png unusable" in caplog.text and "missing.png unusable" in caplog.text

    only_bad = BookingLogos("b3", booking_logos([corrupt]))
    writer = _write(tmp_path / "bad.mp4", EncodeSpec(W, H, FPS, logos=only_bad))
    assert writer.frames == FPS
    with av.open(str(tmp_path / "bad.mp4")) as c:
        assert capture_stamp.read(c.metadata)[1] == capture_stamp.NO_LOGOS


# ---- through the recorder: media fetched ahead, fixed per booking ----------------------------------


def _store_logo(store: LocalStore, user_id: str, png: Path) -> str:
    sha = hashlib.sha256(png.read_bytes()).hexdigest()[:16]
    path = f"{user_id}/media/{png.stem}-{sha}.png"
    store.put_object("media", path, png, "image/png")
    return path


def _set_logos(store: LocalStore, user_id: str, logo: str | None, sponsors: list[str] | None = None) -> None:
    store.put_user_settings(UserSettings(user_id=user_id, logo_path=logo, sponsor_logo_paths=sponsors or []))


def _book(env: RecorderEnv, *items: tuple[str, str, datetime, datetime]) -> None:
    env.store.create_bookings([BookingIn(id=i, user_id=u, start_time=s, end_time=e) for i, u, s, e in items],
                              env.settings.camera_id)
    write_snapshot(env.settings.bookings_cache_path, env.settings.camera_id, env.store.list_bookings())


def _first_segment(listener, booking_id: str, raw: Path) -> tuple[str | None, str | None, np.ndarray]:
    """Stamps and a middle frame of the booking's first closed segment, read while the booking still runs."""
    _, payload = listener.wait_for(lambda t, p: json.loads(p)["booking_id"] == booking_id, timeout=25)
    path = raw / json.loads(payload)["file"]
    with av.open(str(path)) as c:
        stamps = capture_stamp.read(c.metadata)
        frames = [f.to_ndarray() for f in c.decode(video=0)]
    return stamps[0], stamps[1], frames[len(frames) // 2]


def test_a_booking_gets_its_users_logos_fetched_ahead_and_back_to_back_bookings_get_their_own(
        start_recorder, listen, tmp_path):
    env = start_recorder(segment_seconds=1.0)
    red = make_logo_png(tmp_path / "red.png", size=(64, 32), rgba=(255, 0, 0, 255), transparent_border=8)
    blue = make_logo_png(tmp_path / "blue.png", size=(64, 32), rgba=(0, 0, 255, 255), transparent_border=8)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)  # verified by its hash, but no image in it
    _set_logos(env.store, "alice", _store_logo(env.store, "alice", red),
               [_store_logo(env.store, "alice", junk), "alice/media/gone-0123456789abcdef.png"])
    _set_logos(env.store, "bob", _store_logo(env.store, "bob", blue))
    segments = listen(f"ezrec/{env.settings.camera_id}/recording/segment")
    finished = listen(f"ezrec/{env.settings.camera_id}/recording/finished")
    start = whole_second(2.0)
    middle = start + timedelta(seconds=2)
    _book(env, ("b-alice", "alice", start, middle), ("b-bob", "bob", middle, middle + timedelta(seconds=2)))

    fmt_a, logos_a, frame_a = _first_segment(segments, "b-alice", env.raw)
    fmt_b, logos_b, frame_b = _first_segment(segments, "b-bob", env.raw)
    media = env.settings.media_dir
    alice_red = next((media / "alice" / "media").glob("red-*.png"))
    bob_blue = next((media / "bob" / "media").glob("blue-*.png"))
    assert fmt_a is not None and fmt_a == fmt_b, "both encoded with the delivered format"
    assert logos_a == capture_stamp.logo_fingerprint(booking_logos([alice_red])), \
        "alice's logo only: her broken and missing sponsor logos were skipped"
    assert logos_b == capture_stamp.logo_fingerprint(booking_logos([bob_blue])), \
        "bob's booking starts mid-session, right after alice's, and gets his own logo"
    rect = _rects([alice_red])[0]
    assert abs(_luma_in(frame_a, rect, 0.25) - RED_Y) < 12
    assert abs(_luma_in(frame_b, rect, 0.25) - BLUE_Y) < 12
    for booking_id in ("b-alice", "b-bob"):
        finished.wait_for(lambda t, p, b=booking_id: json.loads(p)["booking_id"] == b, timeout=25)
    with av.open(str(recording(env.raw / "b-bob.mp4"))) as c:
        assert sum(1 for _ in c.decode(video=0)) >= 2 * env.settings.camera_fps - 1, "the whole booking recorded"


def test_logos_changed_before_the_booking_are_fetched_again_on_media_updated(start_recorder, listen, tmp_path):
    env = start_recorder(segment_seconds=1.0)
    red = make_logo_png(tmp_path / "red.png", size=(64, 32), rgba=(255, 0, 0, 255), transparent_border=8)
    blue = make_logo_png(tmp_path / "blue.png", size=(64, 32), rgba=(0, 0, 255, 255), transparent_border=8)
    _set_logos(env.store, "carol", _store_logo(env.store, "carol", red))
    segments = listen(f"ezrec/{env.settings.camera_id}/recording/segment")
    start = whole_second(4.0)
    _book(env, ("b-carol", "carol", start, start + timedelta(seconds=2)))
    assert wait_until(lambda: env.recorder.logos.files("carol") != [], timeout=10), "fetched when booked"

    _set_logos(env.store, "carol", _store_logo(env.store, "carol", blue))
    mqtt_publish.single(MEDIA_UPDATED, MediaUpdated(user_id="carol", kind="logo", path="x").model_dump_json(),
                        qos=1, hostname="127.0.0.1", port=env.settings.mqtt_port, protocol=mqtt.MQTTv5)
    assert wait_until(lambda: [p.name[:4] for p in env.recorder.logos.files("carol")] == ["blue"], timeout=10)
    assert start - datetime.now(UTC) > timedelta(seconds=0.5), "the change came before the booking started"

    _, fingerprint, frame = _first_segment(segments, "b-carol", env.raw)
    blue_file = env.recorder.logos.files("carol")[0]
    assert fingerprint == capture_stamp.logo_fingerprint(booking_logos([blue_file]))
    assert abs(_luma_in(frame, _rects([blue_file])[0], 0.25) - BLUE_Y) < 12
    assert json.loads((env.raw / "b-carol" / ".logos.json").read_text())["files"] == [str(blue_file)], \
        "the booking's choice is kept beside its segments, so a resumed session draws the same logos"


def test_the_users_logo_placement_is_drawn_at_capture_and_stamped_as_the_worker_would_fingerprint_it(
        start_recorder, listen, tmp_path):
    """Placements from user_settings reach the recorder's blend; the stamp equals what the worker computes from
    the same settings, so a placed logo still finishes by remux (not as 'logo changed')."""
    env = start_recorder(segment_seconds=1.0)
    red = make_logo_png(tmp_path / "red.png", size=(64, 32), rgba=(255, 0, 0, 255), transparent_border=8)
    placed = LogoPlacement(corner="bottom-left", width_fraction=0.3, margin_fraction=0.05)
    env.store.put_user_settings(UserSettings(user_id="erin", logo_path=_store_logo(env.store, "erin", red),
                                             logo_placement=placed))
    segments = listen(f"ezrec/{env.settings.camera_id}/recording/segment")
    start = whole_second(3.0)
    _book(env, ("b-erin", "erin", start, start + timedelta(seconds=2)))
    _, fingerprint, frame = _first_segment(segments, "b-erin", env.raw)

    [spec] = env.recorder.logos.specs("erin")
    assert (spec.corner, spec.width_fraction, spec.margin_fraction) == ("bottom-left", 0.3, 0.05)
    worker_view = logo_specs(env.store.get_user_settings("erin"), lambda _: Path(spec.path))
    assert fingerprint == capture_stamp.logo_fingerprint(worker_view) != capture_stamp.NO_LOGOS
    [rect] = [p.rect for p in load_logos([spec], W, H, [])]
    assert rect.x < W // 4 and rect.y > H // 2 and abs(rect.w - 0.3 * W) <= 2, "bottom-left, 30 % of the width"
    assert abs(_luma_in(frame, rect, 0.25) - RED_Y) < 12, "drawn where the settings say"
    kept = json.loads((env.raw / "b-erin" / ".logos.json").read_text())
    assert kept["placements"] == [placed.model_dump()], "a resumed session draws it in the same place"


def test_a_user_without_logos_records_unmarked_frames_stamped_none(start_recorder, listen):
    env = start_recorder(segment_seconds=1.0)
    segments = listen(f"ezrec/{env.settings.camera_id}/recording/segment")
    start = whole_second(1.5)
    _book(env, ("b-plain", "dave", start, start + timedelta(seconds=2)))
    fmt, fingerprint, _ = _first_segment(segments, "b-plain", env.raw)
    assert fmt is not None and fingerprint == capture_stamp.NO_LOGOS


# ---- Picamera2: drawn in pre_callback, into the buffer its encoder reads ----------------------------


@pytest.fixture
def pi(monkeypatch: pytest.MonkeyPatch) -> pi_standin.PiState:
    return pi_standin.install(monkeypatch)


def test_picamera2_pre_callback_blends_the_logo_into_the_buffer_its_encoder_receives(
        start_recorder, listen, pi, tmp_path):
    env = start_recorder(camera_source="picamera2", segment_seconds=1.0)
    red = make_logo_png(tmp_path / "red.png", size=(64, 32), rgba=(255, 0, 0, 255), transparent_border=8)
    _set_logos(env.store, "erin", _store_logo(env.store, "erin", red))
    segments = listen(f"ezrec/{env.settings.camera_id}/recording/segment")
    finished = listen(f"ezrec/{env.settings.camera_id}/recording/finished")
    start = whole_second(2.0)
    end = start + timedelta(seconds=2.5)
    _book(env, ("b-pi", "erin", start, end))
    assert wait_until(lambda: bool(pi.opened), timeout=10)
    camera = pi.opened[0]
    camera.keep_frames = set(range(0, 200, 5))
    _, fingerprint, _ = _first_segment(segments, "b-pi", env.raw)
    finished.wait_for(lambda t, p: json.loads(p)["booking_id"] == "b-pi", timeout=25)

    erin_red = next((env.settings.media_dir / "erin" / "media").glob("red-*.png"))
    rect = _rects([erin_red])[0]
    assert camera.pre_callback is not None
    marked = [y for y in camera.encoded_frames if abs(_luma_in(y, rect, 0.25) - RED_Y) < 3]
    unmarked = [y for y in camera.encoded_frames if abs(_luma_in(y, rect, 0.25) - RED_Y) >= 3]
    assert len(marked) >= 5, "the encoder read frames with the logo blended in"
    assert unmarked, "frames outside the booking (warm-up) carry no logo"
    ys, xs = _body(rect, 0.25)
    assert all(np.all(np.abs(y[ys, xs].astype(int) - round(RED_Y)) <= 1) for y in marked), \
        "drawn on the camera's buffer, before any encoder: exact"
    assert fingerprint == capture_stamp.logo_fingerprint(booking_logos([erin_red])), \
        "the remuxed segment says which logos its camera drew"
    with av.open(str(recording(env.raw / "b-pi.mp4"))) as c:
        frames = [f.to_ndarray() for f in c.decode(video=0)]
    inside = frames[len(frames) // 2]
    assert abs(_luma_in(inside, rect, 0.25) - RED_Y) < 12, "and it is in the recording"
