"""What every step of the worker shares: settings, store, bus, the job table, caches, paths and events."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from services.video_worker.job_table import JobTable
from services.video_worker.media.intro_cache import IntroCache
from services.video_worker.media.process import EncodeSettings
from shared import spliced_file
from shared.bus import MqttBus
from shared.media_cache import MediaCache
from shared.payloads import VideoFailed, VideoProgress
from shared.recordings.layout import (
    finished_recording,
    held_path,
    joined_recording,
    output_path,
    part_path,
    parts_dir,
)
from shared.settings import Settings
from shared.store import Store

log = logging.getLogger(__name__)

ELEMENTS = ("intro", "logo", "recording", "encoder", "segment")
PROGRESS_EVERY_S = 1.0


def worker_name(settings: Settings) -> str:
    """WORKER_ID; `auto` = the host name (a container's is unique per container: `docker compose --scale`)."""
    if settings.worker_id == "auto":
        return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:48] or "worker"
    return settings.worker_id or "worker"


def element_of(warning: str) -> str:
    """The VideoFailed element a pipeline warning is about (warnings start with their element's name)."""
    element = next((e for e in ELEMENTS if warning.startswith(e)), "media")
    return "recording" if element == "segment" else element


@dataclass
class WorkerContext:
    settings: Settings
    store: Store
    bus: MqttBus
    jobs: JobTable
    wake: threading.Event = field(default_factory=threading.Event)  # the segment loop
    finish_wake: threading.Event = field(default_factory=threading.Event)  # the job loop
    upload_wake: threading.Event = field(default_factory=threading.Event)  # the upload loop
    encode_slot: threading.Lock = field(default_factory=threading.Lock)
    """One encoder at a time per worker (a segment, an intro or a whole recording): memory stays bounded."""
    stop: threading.Event = field(default_factory=threading.Event)
    raw_wanted: Callable[[str], str | None] = lambda _booking_id: None
    """Why a booking's recording must stay on disk after its video is uploaded (None: it may go). The highlight
    loop sets it: a clip still to be cut reads the recording's segments."""

    def __post_init__(self) -> None:
        self.name = worker_name(self.settings)
        self.process_owner = f"{self.name}/process"
        self.finish_owner = f"{self.name}/finish"
        self.upload_owner = f"{self.name}/upload"
        self.intros = IntroCache(self.settings.media_dir / ".prepared")
        self.media = MediaCache(self.store, self.settings.media_dir, self.intros)
        self.encode = EncodeSettings(codec=self.settings.encoder, preset=self.settings.encoder_preset,
                                     crf=self.settings.encoder_crf, bitrate=self.settings.encoder_bitrate or None)
        self._last_progress: dict[str, float] = {}

    @property
    def owners(self) -> tuple[str, str, str]:
        return self.process_owner, self.finish_owner, self.upload_owner

    def wake_all(self) -> None:
        self.wake.set()
        self.finish_wake.set()

    # ---- paths -----------------------------------------------------------------------------------

    def raw_path(self, booking_id: str, raw_file: str | None = None) -> Path:
        """The booking's recording: its finished segment folder (`<id>`), or a joined `<id>.mp4` (recorders
        before issue 12); the default is the joined file's name."""
        return self.settings.raw_dir / raw_file if raw_file else joined_recording(self.settings.raw_dir, booking_id)

    def recording_on_disk(self, booking_id: str, raw_file: str | None = None) -> Path | None:
        """The booking's finished recording, if there (see layout.finished_recording)."""
        return finished_recording(self.settings.raw_dir, booking_id, raw_file)

    def output_path(self, booking_id: str) -> Path:
        return output_path(self.settings.processed_dir, booking_id)

    def parts_dir(self, booking_id: str) -> Path:
        return parts_dir(self.settings.processed_dir, booking_id)

    def part_path(self, booking_id: str, idx: int) -> Path:
        return part_path(self.settings.processed_dir, booking_id, idx)

    def held_path(self, booking_id: str, idx: int) -> Path:
        """A hard link keeping a recorder segment for the remux join (see layout.held_path)."""
        return held_path(self.settings.processed_dir, booking_id, idx)

    def segment_file(self, booking_id: str, idx: int, file: str) -> Path | None:
        """Where a segment can be read: the recorder's file, else the worker's held link; None if neither."""
        for path in (self.settings.raw_dir / file, self.held_path(booking_id, idx)):
            if path.is_file():
                return path
        return None

    @staticmethod
    def drop_temps(target: Path) -> None:
        """Temp files of an earlier attempt at `target` (this worker now holds its lease, so they are garbage)."""
        if target.parent.is_dir():
            for tmp in target.parent.glob(f".{target.name}.*"):
                spliced_file.remove(tmp)  # a temp file, or a splice being built

    # ---- events ----------------------------------------------------------------------------------

    def failed(self, booking_id: str, element: str, reason: str, final: bool = False) -> None:
        self.bus.publish(self.bus.topics.video_failed, VideoFailed(
            booking_id=booking_id, element=element, reason=reason, final=final, worker=self.name))  # type: ignore[arg-type]

    def warn_all(self, booking_id: str, warnings: list[str]) -> None:
        for warning in dict.fromkeys(warnings):  # each distinct warning once
            self.failed(booking_id, element_of(warning), warning)

    def progress(self, booking_id: str, percent: float, fps: float, route: str | None = None,
                 reason: str | None = None) -> None:
        now = time.monotonic()
        if now - self._last_progress.get(booking_id, 0.0) < PROGRESS_EVERY_S and percent < 100:
            return
        self._last_progress[booking_id] = now
        self.bus.publish_transient(self.bus.topics.video_progress, VideoProgress(
            booking_id=booking_id, percent=min(100.0, max(0.0, percent)), fps=max(0.0, fps), worker=self.name,
            route=route, reason=reason))  # type: ignore[arg-type]
