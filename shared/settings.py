"""One settings object for every service, read from the environment and an optional `.env`.

Each field is read from the environment variable of its name in capitals (`data_dir`: `DATA_DIR`). Its
`description` is its one written meaning: README's settings table is generated from these fields
(`make docs`, scripts/readme_sections.py) and tests/test_docs_settings.py fails when the two differ.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CAMERA_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class Settings(BaseSettings):
    """Directories default to places under DATA_DIR; descriptions are Markdown (README's table cells)."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    data_dir: Path = Field(Path("data"), description=(
        "everything the device keeps: SQLite store, files, state, bookings cache"))
    raw_recordings_dir: Path | None = Field(None, description=(
        "recorder output (unset: `$DATA_DIR/recordings/raw`): segments `<booking_id>/seg-NNNNN.mp4`, marked "
        "finished by `<booking_id>/.finished.json` at the booking's end (a recorder before issue 12 joined them "
        "into `<booking_id>.mp4`: still read); removed by the worker once the video is uploaded"))
    processed_recordings_dir: Path | None = Field(None, description=(
        "worker output before upload (unset: `$DATA_DIR/recordings/processed`). Keep it, the raw folder, the media "
        "cache and `DATA_DIR` on one filesystem: a video joined by remux is kept as hard links to the intro and the "
        "segments (docs/finishing.md \"Disk\"); across filesystems it is written again as a plain file"))
    media_cache_dir: Path | None = Field(None, description=(
        "users' intros and logos fetched from the store (unset: `$DATA_DIR/media_cache`)"))

    camera_id: str = Field("cam1", pattern=CAMERA_ID_PATTERN, description=(
        "this device's camera; only its bookings are recorded"))
    camera_source: str = Field("synthetic", description=(
        "`synthetic` or `lavfi:<graph>` (test pattern), `picamera2` (Pi camera: raw frames encoded by the recorder "
        "on a Pi 5, Picamera2's hardware encoder on a Pi 4; `picamera2:frames` / `picamera2:encoder` force either), "
        "`/dev/videoN` (V4L2), "
        "`rtsp://…` / `http(s)://…` (IP camera, remuxed), `file:<path>` (a recording replayed live, remuxed)"))
    camera_width: int = Field(1920, ge=16, le=7680, description="capture width in pixels")
    camera_height: int = Field(1080, ge=16, le=4320, description="capture height in pixels")
    camera_fps: int = Field(30, ge=1, le=120, description="capture frames per second")
    camera_warmup_s: float = Field(3.0, ge=0, le=60, description=(
        "camera opened this long before a booking starts"))
    camera_bitrate: int = Field(0, ge=0, description=(
        "bits/s for raw-frame sources, an average target instead of constant quality (0: `CAMERA_CRF` capped at "
        "`CAMERA_MAXRATE`); also Picamera2's encoder bitrate"))
    camera_preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"] = Field(
        "ultrafast", description=(
            "x264 preset of the recorder's one encode of raw-frame sources (synthetic/lavfi, V4L2), which is the "
            "delivered video: its quality per bit against its CPU cost ([docs/capture.md](docs/capture.md))"))
    camera_crf: int = Field(26, ge=0, le=51, description=(
        "constant-quality factor of that encode (lower = better, bigger)"))
    camera_maxrate: int = Field(8_000_000, ge=0, description=(
        "bits/s cap on the constant-quality encode (VBV, 2 s buffer), so a busy scene cannot blow a venue's "
        "upload (0: uncapped)"))
    camera_keyframe_s: float = Field(1.0, gt=0, le=1.0, description=(
        "keyframe interval, at most 1 s (a kill -9 costs at most this; every segment also starts on an IDR frame)"))
    camera_rotation: int = Field(0, ge=0, lt=360, multiple_of=90, description=(
        "0, 90, 180 or 270 degrees clockwise (pixels for decoded sources, display matrix for remuxed ones; the "
        "finished video keeps it, intro and logos upright: [docs/video.md](docs/video.md))"))
    camera_stall_s: float = Field(5.0, gt=0, description=(
        "no frame for this long is a camera fault (reported, retried with backoff; at least every second while "
        "a booking is due)"))
    segment_seconds: float = Field(10.0, gt=0, description=(
        "recorder segment length (fsynced when closed): the most a power cut can cost; a kill -9 costs at most "
        "the last second"))
    min_free_disk_mb: int = Field(1024, ge=0, description=(
        "the recorder removes already-uploaded files, oldest first (leftover recordings and processed videos; "
        "with Supabase also the local copies of videos whose upload the cloud confirmed, never one still queued, "
        "refused or dropped; their thumbnails are kept), then stops cleanly, to keep this free"))
    highlight_seconds: float = Field(30, gt=0, le=300, description=(
        "a highlight press asks for this long before it, within the booking "
        "([docs/highlights.md](docs/highlights.md))"))
    highlight_after_s: float = Field(3, ge=0, le=60, description=(
        "... and this long after it, within the booking"))
    highlight_gpio_pin: int | None = Field(None, ge=0, le=63, description=(
        "BCM number of a push button to ground on the Pi that asks for a highlight (gpiozero, internal "
        "pull-up); unset: no button"))

    booking_check_interval: float = Field(3, gt=0, description=(
        "safety re-check of the schedule (the recorder reacts to changes at once)"))
    video_worker_check_interval: float = Field(5, gt=0, description=(
        "worker's recovery scan of RAW_RECORDINGS_DIR"))
    system_status_interval: float = Field(60, gt=0, description=(
        "seconds between status snapshots (the first one waits until it knows, at most 10 s: "
        "[docs/status.md](docs/status.md))"))
    alert_disk_free_gb: float = Field(5.0, ge=0, description=(
        "alert when DATA_DIR's disk has less free (cleared 10 % / at least 1 GB above)"))
    alert_temperature_c: float = Field(80.0, gt=0, description="alert when the CPU is hotter (cleared 5 °C below)")
    alert_next_booking_minutes: float = Field(30, ge=0, description=(
        "alert when a booking starts within this many minutes and the recorder is not online"))
    alert_hold_s: float = Field(90, ge=0, description=(
        "a service offline or booking-at-risk condition must be seen without a break for this long before its "
        "alert is raised, and be gone this long before it is cleared; a camera fault is raised at the first "
        "snapshot that shows it and cleared only after this long without one; disk and temperature use no hold "
        "(margins instead). Judged at each snapshot, so the change comes with the first snapshot at least this "
        "long after the one that first showed it (defaults: the third, ~120 s)"))
    ha_discovery: bool = Field(True, description=(
        "publish Home Assistant MQTT discovery configs (retained) under HA_DISCOVERY_PREFIX"))
    ha_discovery_prefix: str = Field("homeassistant", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$",
                                     description="Home Assistant's discovery topic prefix")
    max_booking_minutes: int = Field(240, ge=1, description="longest booking the API accepts")
    booking_missed_after_s: float = Field(120, gt=0, description=(
        "a `confirmed` booking of this camera whose end is this long past, with no recording on the device, is "
        "marked `missed` with the reason ([docs/bookings.md](docs/bookings.md))"))

    mqtt_host: str = Field("127.0.0.1", description="broker host")
    mqtt_port: int = Field(1883, ge=1, le=65535, description="broker port")
    mqtt_username: str | None = Field(None, description="broker user name (required by the compose broker)")
    mqtt_password: SecretStr | None = Field(None, description="broker password (required by the compose broker)")
    mqtt_session_expiry_s: int = Field(24 * 3600, ge=0, description=(
        "how long the broker keeps a disconnected service's session and its queued messages (MQTT v5 "
        "session expiry)"))

    api_host: str = Field("127.0.0.1", description="where the API listens: address")
    api_port: int = Field(8000, ge=1, le=65535, description="where the API listens: port")
    api_token: SecretStr | None = Field(None, description=(
        "bearer token for every endpoint but `/health`, the dashboard page, the API docs and share links (see "
        "API); required: unset, the API refuses to start"))
    max_upload_mb: int = Field(200, ge=1, description="largest intro video upload (logos: 5 MB)")
    max_request_body_mb: float = Field(1, gt=0, description=(
        "largest request body other than media uploads (413, also for chunked bodies)"))
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list, description=(
        "comma-separated origins that may call the API from a browser (empty: none)"))
    supabase_jwt_secret: SecretStr | None = Field(None, description=(
        "when set, Supabase user access tokens (HS256) may read their own bookings, videos and settings"))
    supabase_jwks_url: str | None = Field(None, description=(
        "for projects on asymmetric signing keys: `https://<project>.supabase.co/auth/v1/.well-known/jwks.json`; "
        "user tokens signed with those keys (ES256/RS256) may read their own data. Keys are kept between fetches "
        "(re-read every 10 min, at once for a new key id, at most every 30 s), so known keys keep working "
        "offline"))
    share_link_ttl: int = Field(7 * 24 * 3600, ge=60, description=(
        "longest life of a video share link, in seconds (the default: 7 days)"))
    signed_url_ttl_s: int = Field(300, ge=10, le=3600, description=(
        "with Supabase, life of the signed Storage URL a download or share link of a freed video redirects to "
        "(10 to 3600 s; a share link's is never longer than what is left of the link)"))
    public_base_url: str | None = Field(None, description=(
        "where players reach the API, e.g. `https://court1.example.org` (a path prefix is kept): share links "
        "(`url`, `video_url`) are built on it; unset, they are paths relative to the API's origin "
        "(`/share/<token>`). Never taken from the request's `Host` header"))

    supabase_url: str | None = Field(None, description=(
        "use a Supabase project (see below); with SUPABASE_SERVICE_ROLE_KEY, both or neither"))
    supabase_service_role_key: SecretStr | None = Field(None, description=(
        "the Supabase project's service-role key (device only); with SUPABASE_URL, both or neither"))
    supabase_storage_timeout_s: float = Field(120, gt=20, description=(
        "HTTP timeout for Supabase requests (supabase-py's storage default is 20 s); must be over 20"))
    supabase_retry_min_s: float = Field(1, gt=0, description=(
        "outbox backoff while the cloud is unreachable: the first wait"))
    supabase_retry_max_s: float = Field(300, gt=0, description="... and the longest")
    bookings_sync: Literal["poll", "off"] = Field("poll", description=(
        "how bookings made in Supabase reach the device (`poll` or `off`)"))
    bookings_poll_interval_s: float = Field(30, gt=0, description="seconds between polls of Supabase's bookings")

    encoder: str = Field("libx264", description=(
        "worker's output encoder when it transcodes (`h264_v4l2m2m` on a Pi 4)"))
    encoder_preset: str = Field("veryfast", description="that encoder's preset")
    encoder_crf: int = Field(23, ge=0, le=51, description="that encoder's constant-quality factor (libx264)")
    encoder_bitrate: int = Field(0, ge=0, description=(
        "bits/s (VBV-capped) replacing the CRF, and what a hardware encoder gets (0: ~0.1 bit per pixel)"))
    worker_id: str = Field("", pattern=r"^[A-Za-z0-9_-]{0,48}$", description=(
        "names a worker when several share one `DATA_DIR` (its MQTT client id, outbox and job leases; `auto` = "
        "host name); see [docs/deploy.md](docs/deploy.md)"))
    worker_lease_s: float = Field(30.0, ge=1, description=(
        "a worker silent this long is presumed dead: another worker takes its job over"))
    worker_nice: int = Field(10, ge=0, le=19, description=(
        "the worker lowers its CPU priority by this much, so the recorder never drops frames for an encode "
        "(0: unchanged)"))

    log_level: str = Field("INFO", description="Python logging level of every service")

    @field_validator("public_base_url", mode="before")
    @classmethod
    def _base_url(cls, value: object) -> object:
        if value is None or value == "":
            return None
        parts = urlsplit(str(value))
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError("PUBLIC_BASE_URL must be an http(s) URL without query or fragment, "
                             "e.g. https://court1.example.org")
        return str(value).rstrip("/")

    @field_validator("supabase_url", "mqtt_username", "highlight_gpio_pin", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    @field_validator("api_token", "mqtt_password", "supabase_service_role_key", "supabase_jwt_secret",
                     mode="before")
    @classmethod
    def _empty_secret_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @cached_property
    def raw_dir(self) -> Path:
        return self.raw_recordings_dir or self.data_dir / "recordings" / "raw"

    @cached_property
    def processed_dir(self) -> Path:
        return self.processed_recordings_dir or self.data_dir / "recordings" / "processed"

    @cached_property
    def media_dir(self) -> Path:
        return self.media_cache_dir or self.data_dir / "media_cache"

    @property
    def bookings_cache_path(self) -> Path:
        return self.data_dir / "bookings.json"

    @property
    def state_dir(self) -> Path:
        """Per-service durable state (outboxes, job tables, heartbeats)."""
        return self.data_dir / "state"

    def secret_values(self) -> list[str]:
        """Every configured secret, so logging can redact them."""
        secrets = [self.api_token, self.mqtt_password, self.supabase_service_role_key, self.supabase_jwt_secret]
        return [s.get_secret_value() for s in secrets if s is not None and s.get_secret_value()]

    def ensure_dirs(self) -> None:
        for path in (self.data_dir, self.raw_dir, self.processed_dir, self.media_dir, self.state_dir):
            path.mkdir(parents=True, exist_ok=True)
