"""One settings object for every service, read from the environment and an optional `.env`."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CAMERA_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class Settings(BaseSettings):
    """Env names follow the design card; directories default to places under DATA_DIR."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    data_dir: Path = Path("data")
    raw_recordings_dir: Path | None = None
    processed_recordings_dir: Path | None = None
    media_cache_dir: Path | None = None

    camera_id: str = Field(default="cam1", pattern=CAMERA_ID_PATTERN)
    camera_source: str = "synthetic"
    camera_width: int = Field(default=1920, ge=16, le=7680)
    camera_height: int = Field(default=1080, ge=16, le=4320)
    camera_fps: int = Field(default=30, ge=1, le=120)
    camera_warmup_s: float = Field(default=3.0, ge=0, le=60)
    camera_bitrate: int = Field(default=0, ge=0)  # bits/s; 0 = constant quality (CAMERA_CRF, capped at CAMERA_MAXRATE)
    # The recorder's one encode of raw-frame sources is the delivered video (docs/capture.md): x264 preset,
    # constant-quality factor, a VBV cap on it (0 = none), and the keyframe interval (<= 1 s; every segment
    # also starts on an IDR frame).
    camera_preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"] = "ultrafast"
    camera_crf: int = Field(default=26, ge=0, le=51)
    camera_maxrate: int = Field(default=8_000_000, ge=0)
    camera_keyframe_s: float = Field(default=1.0, gt=0, le=1.0)
    camera_rotation: int = Field(default=0, ge=0, lt=360, multiple_of=90)  # degrees clockwise
    camera_stall_s: float = Field(default=5.0, gt=0)  # no frame for this long = camera fault
    segment_seconds: float = Field(default=10.0, gt=0)  # recorder segment length (crash-safety granularity)
    min_free_disk_mb: int = Field(default=1024, ge=0)  # recorder keeps at least this much free
    highlight_seconds: float = Field(default=30, gt=0, le=300)  # a highlight clip: this long before the press
    highlight_after_s: float = Field(default=3, ge=0, le=60)  # ... and this long after it
    highlight_gpio_pin: int | None = Field(default=None, ge=0, le=63)  # BCM pin of a push button; unset = none

    booking_check_interval: float = Field(default=3, gt=0)
    video_worker_check_interval: float = Field(default=5, gt=0)
    system_status_interval: float = Field(default=60, gt=0)
    alert_disk_free_gb: float = Field(default=5.0, ge=0)
    alert_temperature_c: float = Field(default=80.0, gt=0)
    alert_next_booking_minutes: float = Field(default=30, ge=0)
    alert_hold_s: float = Field(default=90, ge=0)
    ha_discovery: bool = True
    ha_discovery_prefix: str = Field(default="homeassistant", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
    max_booking_minutes: int = Field(default=240, ge=1)
    booking_missed_after_s: float = Field(default=120, gt=0)  # ended this long ago, nothing recorded: missed

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_session_expiry_s: int = Field(default=24 * 3600, ge=0)

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    api_token: SecretStr | None = None
    max_upload_mb: int = Field(default=200, ge=1)
    max_request_body_mb: float = Field(default=1, gt=0)  # every body but media uploads (MAX_UPLOAD_MB)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)  # comma-separated; empty = none
    supabase_jwt_secret: SecretStr | None = None  # set: Supabase user JWTs (HS256) may read their own data
    # set: Supabase user JWTs signed with the project's asymmetric keys (ES256/RS256) are verified with these
    # public keys, e.g. https://<project>.supabase.co/auth/v1/.well-known/jwks.json
    supabase_jwks_url: str | None = None
    share_link_ttl: int = Field(default=7 * 24 * 3600, ge=60)  # seconds a video share link stays valid
    # seconds a signed Storage URL lives, for a video whose local copy was freed (downloads and share links
    # redirect to one; a share link's never outlives the link)
    signed_url_ttl_s: int = Field(default=300, ge=10, le=3600)
    # where players reach the API (e.g. https://court1.example.org): share links are built on it, never on
    # the request's Host header; unset = links relative to the API's own origin
    public_base_url: str | None = None

    supabase_url: str | None = None
    supabase_service_role_key: SecretStr | None = None
    supabase_storage_timeout_s: float = Field(default=120, gt=20)  # supabase-py's 20 s default is too short
    supabase_retry_min_s: float = Field(default=1, gt=0)  # outbox backoff while the cloud is away: first wait
    supabase_retry_max_s: float = Field(default=300, gt=0)  # ... and the longest
    bookings_sync: Literal["poll", "off"] = "poll"  # how bookings made in Supabase reach the device
    bookings_poll_interval_s: float = Field(default=30, gt=0)

    encoder: str = "libx264"
    encoder_preset: str = "veryfast"
    encoder_crf: int = Field(default=23, ge=0, le=51)
    encoder_bitrate: int = Field(default=0, ge=0)  # bits/s; 0 = CRF (libx264) or a size-based default (hardware)
    worker_id: str = Field(default="", pattern=r"^[A-Za-z0-9_-]{0,48}$")  # distinct per worker sharing DATA_DIR
    worker_lease_s: float = Field(default=30.0, ge=1)  # a worker silent this long is presumed dead; others take over
    worker_nice: int = Field(default=10, ge=0, le=19)  # CPU priority below the recorder's (0 = unchanged)

    log_level: str = "INFO"

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
