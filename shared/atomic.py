"""Atomic file writes: a crash leaves either the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temps(directory: Path, patterns: tuple[str, ...], older_than_s: float) -> list[Path]:
    """Delete temp files of writers killed mid-write (and temp directories of splices being built, named
    `*.splice`: shared/spliced_file.py); returns what went.

    A live writer keeps touching its temp file, so one untouched for `older_than_s` is dead. The newer of
    mtime and ctime counts: a temp that is a fresh hard link to an old file has an old mtime but a new ctime.
    """
    if not directory.is_dir():
        return []
    cutoff = time.time() - older_than_s
    removed = []
    for pattern in patterns:
        for path in directory.glob(pattern):
            try:
                st = path.lstat()
                if max(st.st_mtime, st.st_ctime) >= cutoff:
                    continue
                if stat.S_ISREG(st.st_mode):
                    path.unlink()
                    removed.append(path)
                elif stat.S_ISDIR(st.st_mode) and path.name.endswith(".splice"):
                    shutil.rmtree(path)
                    removed.append(path)
            except OSError:
                continue
    return removed


def link_or_copy(src: Path, dest: Path) -> None:
    """`dest` (not there yet) as a hard link to `src`: no byte written again. Where no link can be made
    (another filesystem), a copy, synced."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)
        with open(dest, "rb") as fh:
            os.fsync(fh.fileno())


@contextlib.contextmanager
def atomic_path(target: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside `target`; on success fsync it and rename it over `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(target: Path, data: bytes, mode: int | None = None) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
        if mode is not None:
            os.chmod(tmp, mode)


def write_text_atomic(target: Path, text: str, mode: int | None = None) -> None:
    write_bytes_atomic(target, text.encode("utf-8"), mode)
