"""Prepared intros on disk, one per (intro content, output format): a booking pays nothing for an intro seen before.

MEDIA_CACHE_DIR/prepared/intro-<content sha16>-<format key>.mp4 plus a .json beside it (frames, audio,
parameter sets, warnings). The .json is written last, so a crash mid-preparation leaves no entry that
looks valid; two workers preparing the same entry at once both write the same bytes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from services.video_worker.media.intro import PreparedIntro, prepare_intro
from shared.atomic import remove_stale_temps, write_text_atomic
from shared.file_hash import file_sha256
from shared.video_format import OutputFormat

log = logging.getLogger(__name__)

STALE_TEMP_S = 3600.0
LAST_FORMAT = "last-format.json"


class IntroCache:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._sha: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> content hash

    def content_sha(self, path: Path) -> str:
        """sha256 of a file, remembered while its size and mtime stay the same (one hash per intro, not per use)."""
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._sha:
            self._sha[key] = file_sha256(path)
        return self._sha[key]

    def _stem(self, sha: str, fmt: OutputFormat) -> str:
        return f"intro-{sha[:16]}-{fmt.key}"

    def lookup(self, sha: str, fmt: OutputFormat) -> PreparedIntro | None:
        stem = self._stem(sha, fmt)
        meta, video = self.root / f"{stem}.json", self.root / f"{stem}.mp4"
        try:
            prepared = PreparedIntro.from_json(meta.read_text(), self.root)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return prepared if video.is_file() and prepared.path == video else None

    def has(self, intro: Path, fmt: OutputFormat) -> bool:
        try:
            return self.lookup(self.content_sha(intro), fmt) is not None
        except OSError:
            return False

    def get(self, intro: Path, fmt: OutputFormat, progress: Callable[[int], None] | None = None, *,
            frame_threads: bool = False) -> tuple[PreparedIntro, bool]:
        """(prepared intro, whether it was cached): encoded now if this (content, format) never was.

        `frame_threads`: decode the intro with frame threads (see MediaSource). Raises IntroUnusable.
        """
        sha = self.content_sha(intro)
        found = self.lookup(sha, fmt)
        if found is not None:
            return found, True
        stem = self._stem(sha, fmt)
        started = time.monotonic()
        prepared = prepare_intro(intro, fmt, self.root / f"{stem}.mp4", source_sha=sha, progress=progress,
                                 frame_threads=frame_threads)
        write_text_atomic(self.root / f"{stem}.json", prepared.to_json())
        log.info("prepared intro %s for %dx%d@%s in %.1fs (%d frames)", sha[:16], fmt.width, fmt.height,
                 fmt.rate, time.monotonic() - started, prepared.frames)
        return prepared, False

    def invalidate(self, sha: str) -> int:
        """Forget every preparation of the intro with this content (it was removed or replaced)."""
        removed = 0
        if not self.root.is_dir():
            return 0
        for path in self.root.glob(f"intro-{sha[:16]}-*"):
            path.unlink(missing_ok=True)
            removed += path.suffix == ".json"
        return removed

    def remember_format(self, fmt: OutputFormat) -> None:
        """The camera's output format, so a new intro can be prepared before the next booking needs it."""
        if self.last_format() != fmt:
            write_text_atomic(self.root / LAST_FORMAT, fmt.to_json())

    def last_format(self) -> OutputFormat | None:
        try:
            return OutputFormat.from_json((self.root / LAST_FORMAT).read_text())
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def remove_stale_temps(self) -> None:
        """Temp files of a preparation killed half-way (shared.atomic names them `.<target>.<random>...`)."""
        remove_stale_temps(self.root, (".intro-*",), STALE_TEMP_S)
