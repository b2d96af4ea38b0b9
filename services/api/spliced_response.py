"""FileResponse for a video kept as a splice (shared/spliced_file.py): the same headers, Range and HEAD.

Starlette's FileResponse does the HTTP (Range, If-Range, multipart ranges, 416); only where the bytes
come from differs, so this swaps its file for the splice's reader and its stat for the splice's size.
"""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from fastapi.responses import FileResponse
from starlette.types import Receive, Scope, Send

from shared import spliced_file


class _AsyncReader:
    def __init__(self, path: Path) -> None:
        self._reader = spliced_file.open_read(path)

    async def read(self, size: int) -> bytes:
        return await anyio.to_thread.run_sync(self._reader.read, size)

    async def seek(self, offset: int) -> int:
        return self._reader.seek(offset)

    def close(self) -> None:
        self._reader.close()


class SplicedFileResponse(FileResponse):
    def __init__(self, path: Path, **kwargs: Any) -> None:
        manifest = os.stat(path / spliced_file.MANIFEST)
        size = spliced_file.size(path)
        fake = os.stat_result((stat.S_IFREG | 0o644, manifest.st_ino, manifest.st_dev, 1, 0, 0, size,
                               int(manifest.st_atime), int(manifest.st_mtime), int(manifest.st_ctime)))
        super().__init__(path, stat_result=fake, **kwargs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        extensions = {k: v for k, v in scope.get("extensions", {}).items() if k != "http.response.pathsend"}
        await super().__call__({**scope, "extensions": extensions}, receive, send)  # no path to hand the server

    @asynccontextmanager
    async def _open_file(self) -> AsyncIterator[Any]:
        reader = await anyio.to_thread.run_sync(_AsyncReader, Path(self.path))
        try:
            yield reader
        finally:
            reader.close()


def video_response(path: Path, **kwargs: Any) -> FileResponse:
    """The response for a stored video, whichever way it is kept."""
    if spliced_file.is_splice(path):
        return SplicedFileResponse(path, **kwargs)
    return FileResponse(path, **kwargs)
