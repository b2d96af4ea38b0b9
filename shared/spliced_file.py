"""A file kept as a splice: a small head written for it, then byte ranges of files that already exist.

Why: a finished video joined by remux is the prepared intro's and the recorder's bytes again, in order,
behind a new index. Writing them a second time would cost the SD card the recording's size again per
booking; kept as a splice, the video costs only its head (the MP4's index) and the recording's bytes are
written once. A splice is a directory at the file's path: `splice.json` (the ordered spans), the head,
and a hard link to every file it reads from, so whoever else removes those files (the recording's
cleanup, the intro cache) leaves the splice whole. Readers see one seekable byte stream (`open_read`);
a splice and a plain file are told apart only here.

Writes are atomic like atomic.py's: built in a hidden temp directory beside the target, synced, renamed.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from pydantic import BaseModel, Field

from shared.atomic import atomic_path, fsync_dir, link_or_copy

MANIFEST = "splice.json"
SPLICE_MODE = 0o644  # the video is meant to be shared (the API and the uploader read it)


class SpliceError(Exception):
    """A splice that cannot be built (e.g. a source on another filesystem) or read (damaged)."""


class Manifest(BaseModel):
    """The splice's contract on disk: the file is the concatenation of `spans` ([file index, offset, length])."""

    version: int = 1
    size: int = Field(ge=0)
    files: list[str]
    spans: list[tuple[int, int, int]]

    def check(self, root: Path) -> None:
        if sum(length for _, _, length in self.spans) != self.size:
            raise SpliceError(f"{root.name}: spans add up to another size than {self.size}")
        for index, offset, length in self.spans:
            if not 0 <= index < len(self.files) or offset < 0 or length <= 0:
                raise SpliceError(f"{root.name}: bad span {(index, offset, length)}")


def is_splice(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def exists(path: Path) -> bool:
    return path.is_file() or is_splice(path)


def read_manifest(path: Path) -> Manifest:
    try:
        manifest = Manifest.model_validate_json((path / MANIFEST).read_bytes())
    except (OSError, ValueError) as exc:
        raise SpliceError(f"{path.name}: unreadable splice ({exc})") from exc
    manifest.check(path)
    return manifest


def size(path: Path) -> int:
    return read_manifest(path).size if is_splice(path) else path.stat().st_size


def mtime_ns(path: Path) -> int:
    return (path / MANIFEST).stat().st_mtime_ns if is_splice(path) else path.stat().st_mtime_ns


def open_read(path: Path) -> BinaryIO:
    """A seekable binary reader of the file's bytes, whichever way it is kept."""
    if is_splice(path):
        return io.BufferedReader(SpliceReader(path), buffer_size=256 * 1024)  # type: ignore[return-value]
    return open(path, "rb")  # noqa: SIM115 - the caller closes it


def remove(path: Path) -> None:
    """Remove a file or a splice; nothing if neither is there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def same(a: Path, b: Path) -> bool:
    """Both names reach the same stored bytes (a retry that already placed this very file or splice)."""
    try:
        if is_splice(a) and is_splice(b):
            return os.path.samestat((a / MANIFEST).stat(), (b / MANIFEST).stat())
        return os.path.samestat(a.stat(), b.stat())
    except OSError:
        return False


def place(src: Path, target: Path) -> None:
    """Put `src` (file or splice) at `target` atomically: hard links where the filesystem allows (no byte
    written again), else a copy. A splice is copied out into a plain file when it cannot be linked."""
    if same(src, target):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if not is_splice(src):
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
        try:
            tmp.unlink()
            link_or_copy(src, tmp)
            _replace(tmp, target)
        except BaseException:
            remove(tmp)
            raise
        return
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".splice", dir=target.parent))
    try:
        try:
            for member in sorted(p for p in src.iterdir() if p.name != MANIFEST):
                os.link(member, tmp / member.name)
            os.link(src / MANIFEST, tmp / MANIFEST)  # last: a temp without it is visibly incomplete
        except OSError:
            shutil.rmtree(tmp)
            copy_out(src, target)
            return
        os.chmod(tmp, 0o755)
        fsync_dir(tmp)
        _replace(tmp, target)
    except BaseException:
        remove(tmp)
        raise


def copy_out(src: Path, dest: Path) -> Path:
    """`src`'s bytes as one plain file at `dest` (atomic)."""
    with atomic_path(dest) as tmp, open_read(src) as fin, open(tmp, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1024 * 1024)
    return dest


def _replace(tmp: Path, target: Path) -> None:
    """rename() over `target`; a directory in the way (an older splice) goes first."""
    if target.is_dir() and not target.is_symlink():
        old = target.with_name(f".{target.name}.old-{os.getpid()}.splice")  # a stale one is found as a temp
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    elif tmp.is_dir() and target.exists():
        target.unlink()
        os.replace(tmp, target)
    else:
        os.replace(tmp, target)
    fsync_dir(target.parent)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(path, SPLICE_MODE)


class SpliceReader(io.RawIOBase):
    """The splice's bytes as one seekable stream; source files opened on first use."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._root = path
        self._manifest = read_manifest(path)
        self._starts: list[int] = []
        at = 0
        for _, _, length in self._manifest.spans:
            self._starts.append(at)
            at += length
        self._size = at
        self._pos = 0
        self._fds: dict[int, int] = {}

    @property
    def size(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._size:
            i = bisect.bisect_right(self._starts, self._pos) - 1
            index, offset, length = self._manifest.spans[i]
            within = self._pos - self._starts[i]
            want = min(len(view) - done, length - within)
            data = os.pread(self._fd(index), want, offset + within)
            if len(data) != want:
                raise SpliceError(f"{self._root.name}: {self._manifest.files[index]} is shorter than its span")
            view[done:done + want] = data
            done += want
            self._pos += want
        return done

    def _fd(self, index: int) -> int:
        fd = self._fds.get(index)
        if fd is None:
            fd = self._fds[index] = os.open(self._root / self._manifest.files[index], os.O_RDONLY)
        return fd

    def close(self) -> None:
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        super().close()


class SpliceBuilder:
    """Collects a splice's parts in a hidden temp directory beside `target`; `commit` puts it in place.

    Sources are hard-linked in (SpliceError when that is impossible: the caller writes a plain file).
    """

    def __init__(self, target: Path) -> None:
        self.target = target
        target.parent.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".splice", dir=target.parent))
        self.files: list[str] = []
        self.spans: list[tuple[int, int, int]] = []
        self._sources: dict[Path, int] = {}

    def source(self, path: Path, read: os.stat_result | None = None) -> int:
        """Index of `path` among the splice's files (hard-linked in on first use). `read`: the stat of the file
        its offsets were read from; a path since replaced by another file is refused (SpliceError)."""
        known = self._sources.get(path)
        if known is not None:
            return known
        key = path.resolve()
        if key not in self._sources:
            name = f"p{len(self.files):03d}{path.suffix}"
            try:
                os.link(path, self.dir / name)
                linked = os.stat(self.dir / name)
            except OSError as exc:
                raise SpliceError(f"{path.name} cannot be linked into the splice ({exc})") from exc
            if read is not None and (linked.st_ino, linked.st_dev) != (read.st_ino, read.st_dev):
                raise SpliceError(f"{path.name} was replaced by another file while it was read")
            with contextlib.suppress(OSError):  # shared like any finished video; not ours to change: fine
                os.chmod(self.dir / name, SPLICE_MODE)
            self._sources[key] = len(self.files)
            self.files.append(name)
        self._sources[path] = self._sources[key]
        return self._sources[key]

    def written(self, name: str, data: bytes) -> int:
        """Index of a file written for the splice (its head, generated bytes)."""
        _write_synced(self.dir / name, data)
        self.files.append(name)
        return len(self.files) - 1

    def span(self, index: int, offset: int, length: int) -> None:
        if length <= 0:
            return
        if self.spans:
            last = self.spans[-1]
            if last[0] == index and last[1] + last[2] == offset:
                self.spans[-1] = (index, last[1], last[2] + length)
                return
        self.spans.append((index, offset, length))

    def commit(self) -> Path:
        # constructed, not validated: the spans are ours, checked below (a 2-hour video has ~400 000)
        manifest = Manifest.model_construct(size=sum(s[2] for s in self.spans), files=self.files, spans=self.spans)
        manifest.check(self.dir)
        _write_synced(self.dir / MANIFEST, manifest.model_dump_json().encode())
        os.chmod(self.dir, 0o755)
        fsync_dir(self.dir)
        _replace(self.dir, self.target)
        return self.target

    def abort(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
