"""Each uploaded video's thumbnail, made as soon as the worker announces it (video/uploaded), in one background
thread: with Supabase the disk guard may free the video's local copy later, and the thumbnail it keeps is this one
(the guard makes it itself only when it is missing, before a camera session starts)."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from pydantic import BaseModel

from shared.payloads import HighlightCreated, VideoUploaded
from shared.store import Store
from shared.thumbnails import ThumbnailCache, ThumbnailError

log = logging.getLogger(__name__)


class ThumbnailMaker:
    def __init__(self, store: Store, thumbnails: ThumbnailCache) -> None:
        self.store, self.thumbnails = store, thumbnails
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thumbnails")

    def observe(self, _topic: str, message: BaseModel | str, _retained: bool) -> None:
        """An EventHub listener (paho's thread): hand the work to the pool."""
        if isinstance(message, VideoUploaded | HighlightCreated):
            self._pool.submit(self.make, message.video_id)

    def make(self, video_id: str) -> None:
        video = self.store.get_video(video_id)
        path = self.store.local_object_path("videos", video.storage_path) if video is not None else None
        if video is None or path is None:
            return
        try:
            self.thumbnails.get(video.id, path)
        except (ThumbnailError, OSError) as exc:
            log.warning("thumbnail of video %s not made: %s", video_id, exc)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
