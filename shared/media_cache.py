"""The user's intro and logos, fetched from the store's `media` bucket into MEDIA_CACHE_DIR.

Object names carry a content hash (the API names them so), so a cached file never goes stale; what
changes is which files the user's settings name. `sync_user` makes the cache follow the settings:
fetch what is new, drop what is no longer named, and forget the intros prepared from dropped files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from shared.file_hash import file_sha256
from shared.logo_layout import logo_slots, place_logos
from shared.models import LogoPlacement
from shared.overlay import LogoSpec
from shared.store import Store, StoreError
from shared.store.base import check_object_path, verify_media

log = logging.getLogger(__name__)


class PreparedIntros(Protocol):
    """What the cache tells when a file is dropped: the worker's prepared intros (the recorder has none)."""

    def invalidate(self, sha: str) -> int: ...


@dataclass
class UserMedia:
    intro: Path | None = None
    logos: list[Path] = field(default_factory=list)
    intro_object: str | None = None  # the store paths, frozen into a booking's plan
    logo_objects: list[str] = field(default_factory=list)
    logo_placements: list[dict | None] = field(default_factory=list)  # by position in logo_objects, for the plan
    logo_specs: list[LogoSpec] = field(default_factory=list)  # the logos fetched, where they are drawn
    problems: list[str] = field(default_factory=list)


class MediaCache:
    def __init__(self, store: Store, cache_dir: Path, intros: PreparedIntros | None = None) -> None:
        self.store = store
        self.cache_dir = cache_dir
        self.intros = intros
        self._verified: dict[Path, tuple[int, int]] = {}  # file -> (size, mtime_ns) when its hash last matched

    def local(self, path: str) -> Path:
        """The cached copy of media object `path`, checked against the content hash in its name (fetched again
        when it does not match: a truncated or damaged copy). Raises StoreError/ValueError/OSError."""
        check_object_path("media", path)
        local = self.cache_dir / path
        if local.exists() and not self._matches(path, local):
            log.warning("media cache: %s does not match the hash in its name; fetching it again", path)
            local.unlink()
        if not local.exists():
            self.store.get_object("media", path, local)
            if not self._matches(path, local):
                local.unlink(missing_ok=True)
                raise ValueError(f"{path}: the stored file does not match the hash in its name")
        return local

    def _matches(self, path: str, local: Path) -> bool:
        """verify_media, hashed once per version of the file (a booking's segments all ask for the same media)."""
        st = local.stat()
        if self._verified.get(local) == (st.st_size, st.st_mtime_ns):
            return True
        if not verify_media(path, local):
            return False
        self._verified[local] = (st.st_size, st.st_mtime_ns)
        return True

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
        slots = logo_slots(settings)
        return self.from_objects(settings.intro_video_path, [path for path, _ in slots],
                                 [p.model_dump() if p else None for _, p in slots])

    def from_objects(self, intro: str | None, logos: list[str],
                     placements: list[dict | None] | None = None) -> UserMedia:
        """`placements` by position in `logos` (a plan made before placements existed has none: the defaults)."""
        placed = [*(placements or [])][: len(logos)]
        placed += [None] * (len(logos) - len(placed))
        media = UserMedia(intro_object=intro, logo_objects=list(logos), logo_placements=placed)
        if intro:
            try:
                media.intro = self.local(intro)
            except (StoreError, OSError, ValueError) as exc:
                media.problems.append(f"intro {intro} unavailable: {exc}")
        files: dict[str, Path] = {}
        for path in logos:
            try:
                files[path] = self.local(path)
                media.logos.append(files[path])
            except (StoreError, OSError, ValueError) as exc:
                media.problems.append(f"logo {path} unavailable: {exc}")
        slots = [(path, self._placement(p, media)) for path, p in zip(logos, placed, strict=True)]
        media.logo_specs = place_logos(slots, files.get)
        return media

    @staticmethod
    def _placement(value: dict | None, media: UserMedia) -> LogoPlacement | None:
        """A placement that does not validate (a hand-edited plan) is the default, never a failed video."""
        if not value:
            return None
        try:
            return LogoPlacement.model_validate(value)
        except ValidationError as exc:
            media.problems.append(f"logo placement {value!r} unusable ({exc.error_count()} errors); default used")
            return None

    def sync_user(self, user_id: str) -> UserMedia:
        """Fetch the media the user's settings name now and drop the rest (settings changed or media updated)."""
        media = self.for_user(user_id)
        if not any(p.startswith("user settings unavailable") for p in media.problems):
            keep = {p for p in [media.intro_object, *media.logo_objects] if p}
            self.drop_user(user_id, keep)
        return media

    def drop_user(self, user_id: str, keep: set[str]) -> list[Path]:
        """Remove cached files of this user that `keep` does not name, and the intros prepared from them."""
        user_dir = self.cache_dir / user_id
        dropped: list[Path] = []
        if not user_dir.is_dir():
            return dropped
        for file in user_dir.rglob("*"):
            rel = file.relative_to(self.cache_dir).as_posix()
            if not file.is_file() or rel in keep or file.name.startswith("."):
                continue
            if self.intros is not None:
                try:
                    removed = self.intros.invalidate(file_sha256(file))
                except OSError:
                    removed = 0
                if removed:
                    log.info("dropped %d prepared intro(s) made from %s", removed, rel)
            file.unlink(missing_ok=True)
            dropped.append(file)
            log.info("media cache: dropped %s (no longer in %s's settings)", rel, user_id)
        return dropped
