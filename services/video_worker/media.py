"""The user's intro and logos, fetched from the store's `media` bucket into MEDIA_CACHE_DIR.

Object names carry a content hash (the API names them so), so a cached file never goes stale.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from shared.store import Store, StoreError
from shared.store.base import check_object_path

log = logging.getLogger(__name__)


@dataclass
class UserMedia:
    intro: Path | None = None
    logos: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class MediaCache:
    def __init__(self, store: Store, cache_dir: Path) -> None:
        self.store = store
        self.cache_dir = cache_dir

    def _fetch(self, path: str) -> Path:
        check_object_path("media", path)
        local = self.cache_dir / path
        if not local.exists():
            self.store.get_object("media", path, local)
        return local

    def for_user(self, user_id: str) -> UserMedia:
        """Missing media is not an error: the recording is delivered without it."""
        media = UserMedia()
        try:
            settings = self.store.get_user_settings(user_id)
        except StoreError as exc:
            media.problems.append(f"user settings unavailable: {exc}")
            return media
        if settings is None:
            return media
        if settings.intro_video_path:
            try:
                media.intro = self._fetch(settings.intro_video_path)
            except (StoreError, OSError, ValueError) as exc:
                media.problems.append(f"intro {settings.intro_video_path} unavailable: {exc}")
        for path in [p for p in [settings.logo_path, *settings.sponsor_logo_paths] if p]:
            try:
                media.logos.append(self._fetch(path))
            except (StoreError, OSError, ValueError) as exc:
                media.problems.append(f"logo {path} unavailable: {exc}")
        return media

    def drop_user(self, user_id: str, keep: set[str]) -> None:
        """After a media change: remove cached files of this user that settings no longer name."""
        user_dir = self.cache_dir / user_id
        if not user_dir.exists():
            return
        for file in user_dir.rglob("*"):
            rel = file.relative_to(self.cache_dir).as_posix()
            if file.is_file() and rel not in keep:
                file.unlink(missing_ok=True)
