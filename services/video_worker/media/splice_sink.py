"""The remux join's output kept as a splice (shared/spliced_file.py): the muxer writes, only its index stays.

Why: a remuxed video is the intro's and the segments' packets again, byte for byte, behind a new index.
The join still runs PyAV's MP4 muxer exactly as for a plain file (moov in front, in the space reserved
for it), but into `PayloadSink`, which keeps what the muxer writes before the `mdat` payload (ftyp,
moov, the mdat header) and only counts the payload. `Ledger` notes where each muxed packet's bytes
already are: a video packet at its `pos` in the piece it was demuxed from (its ends checked against the file),
an audio packet (the intro's, its silent frame repeated) in a small generated file. Once the muxer
closes, the moov's sample tables say where it put each packet; if every sample is a noted packet of
the same size and the samples tile the payload exactly, the video is the head plus those ranges, and
it is byte-identical to the plain file the same join writes. Anything else raises SpliceUnfit and the
caller writes the plain file instead.
"""

from __future__ import annotations

import io
import os
import struct
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from shared.spliced_file import SpliceBuilder, SpliceError

CHECK_BYTES = 256
"""A video packet's first and last bytes are compared with its file at `pos` (a wrong position cannot match
both); the whole packet would read the recording a second time for nothing more."""


class SpliceUnfit(Exception):
    """The muxer's output is not (verifiably) head + known ranges: write the plain file."""


class PayloadSink(io.RawIOBase):
    """A seekable file for the muxer that keeps the bytes before the mdat payload and counts the payload."""

    def __init__(self) -> None:
        super().__init__()
        self.pos = 0
        self.pieces: list[tuple[int, bytes]] = []  # writes before the payload is found / into the head
        self.payload_start: int | None = None
        self.payload_len = 0
        self.problem: str | None = None

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        end = (self.payload_start + self.payload_len) if self.payload_start is not None else self._head_end()
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: end}[whence]
        self.pos = base + offset
        return self.pos

    def read(self, size: int = -1) -> bytes:  # the muxer never reads back in this mode (no faststart pass)
        self.problem = self.problem or "the muxer read its output back"
        raise OSError("PayloadSink cannot be read")

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        n = len(data)
        if self.payload_start is None:
            self.pieces.append((self.pos, bytes(data)))
            self.pos += n
            self._find_payload()
            return n
        start = self.payload_start
        if self.pos >= start:
            if self.pos != start + self.payload_len:
                self.problem = self.problem or f"a payload write out of order at {self.pos}"
            self.payload_len = max(self.payload_len, self.pos + n - start)
        elif self.pos + n > start:
            self.problem = self.problem or f"a write across the payload's start at {self.pos}"
        else:
            self.pieces.append((self.pos, bytes(data)))  # the index and the mdat size, written at the end
        self.pos += n
        return n

    def _head_end(self) -> int:
        return max((at + len(b) for at, b in self.pieces), default=0)

    def _bytes_at(self, at: int, n: int) -> bytes | None:
        for start, chunk in reversed(self.pieces):
            if start <= at and at + n <= start + len(chunk):
                return chunk[at - start:at - start + n]
        return None

    def _find_payload(self) -> None:
        """Walk the top-level boxes from 0; a gap not written yet is the moov's reserved space."""
        at = 0
        while True:
            header = self._bytes_at(at, 8)
            if header is None:
                later = [start for start, _ in self.pieces if start > at]
                if not later:
                    return
                at = min(later)
                continue
            size, kind = struct.unpack(">I4s", header)
            if kind == b"mdat":
                self.payload_start = at + (16 if size == 1 else 8)
                end = self._head_end()
                if end > self.payload_start:  # payload bytes that came in the same write as the header
                    self.payload_len = end - self.payload_start
                    self.pieces = [(s, c[:max(0, self.payload_start - s)]) for s, c in self.pieces]
                return
            if size < 8:
                self.problem = f"a {kind!r} box of size {size} before the mdat"
                self.payload_start = at
                return
            at += size

    def head(self) -> bytes:
        """Bytes [0, payload start), with every later write (mdat size, moov, free) applied."""
        if self.payload_start is None:
            raise SpliceUnfit("the muxer wrote no mdat")
        head = bytearray(self.payload_start)
        written = bytearray(self.payload_start)  # 1 where some write landed
        for at, chunk in self.pieces:
            n = min(len(chunk), self.payload_start - at)
            if n > 0:
                head[at:at + n] = chunk[:n]
                written[at:at + n] = b"\x01" * n
        if written.count(0):
            raise SpliceUnfit(f"{written.count(0)} bytes of the head were never written")
        return bytes(head)


GENERATED = -1  # a note's source index for bytes kept in Ledger.generated


@dataclass
class _Notes:
    """One stream's packets in mux order, compactly (a 2-hour booking has ~500 000 packets)."""

    source: array = field(default_factory=lambda: array("i"))  # index into Ledger.sources, or GENERATED
    pos: array = field(default_factory=lambda: array("q"))
    size: array = field(default_factory=lambda: array("q"))


@dataclass
class Ledger:
    """Where each muxed packet's bytes are, per output stream, in mux order."""

    source: Path | None = None  # the piece whose video packets are being muxed
    sources: list[Path] = field(default_factory=list)
    notes: dict[int, _Notes] = field(default_factory=dict)
    generated: bytearray = field(default_factory=bytearray)
    _index: dict[Path, int] = field(default_factory=dict)
    _fds: dict[Path, int] = field(default_factory=dict)
    _stats: dict[Path, os.stat_result] = field(default_factory=dict)

    def note(self, packet: av.Packet) -> None:
        notes = self.notes.get(packet.stream.index)
        if notes is None:
            notes = self.notes[packet.stream.index] = _Notes()
        size = packet.size
        source = self.source
        if packet.stream.type == "video" and source is not None and packet.pos is not None and packet.pos >= 0:
            fd = self._fds.get(source)
            if fd is None:
                fd = self._fds[source] = os.open(source, os.O_RDONLY)
                self._index[source] = len(self.sources)
                self.sources.append(source)
            data = memoryview(packet)
            ends = [(0, min(size, CHECK_BYTES))] + ([(size - CHECK_BYTES, CHECK_BYTES)] if size > CHECK_BYTES else [])
            for at, n in ends:
                if os.pread(fd, n, packet.pos + at) != data[at:at + n]:
                    raise SpliceUnfit(f"{source.name}: packet bytes are not at its pos {packet.pos}")
            notes.source.append(self._index[source])
            notes.pos.append(packet.pos)
        else:
            notes.source.append(GENERATED)
            notes.pos.append(len(self.generated))
            self.generated += memoryview(packet)
        notes.size.append(size)

    def read_as(self, path: Path) -> os.stat_result:
        """The file this ledger read `path`'s packets from (its name may point elsewhere by now)."""
        return self._stats[path]

    def close(self) -> None:
        for path, fd in self._fds.items():
            self._stats[path] = os.fstat(fd)
            os.close(fd)
        self._fds.clear()


class TappedContainer:
    """The output container with every mux noted in the ledger first."""

    def __init__(self, container: av.container.OutputContainer, ledger: Ledger) -> None:
        self._container = container
        self.ledger = ledger

    def mux(self, packets: av.Packet | list[av.Packet]) -> None:
        for packet in packets if isinstance(packets, list) else [packets]:
            if packet.size == 0:  # an encoder's flush marker: nothing is written for it
                continue
            self.ledger.note(packet)
            self._container.mux(packet)

    def __getattr__(self, name: str):  # noqa: ANN204 - everything else is the container's
        return getattr(self._container, name)


# ---- the moov's sample tables -----------------------------------------------------------------------


def _boxes(data: bytes, start: int, end: int):  # noqa: ANN202 - yields (kind, payload start, box end)
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, at)
        header = 8
        if size == 1:
            size = struct.unpack_from(">Q", data, at + 8)[0]
            header = 16
        elif size == 0:
            size = end - at
        if size < header or at + size > end:
            raise SpliceUnfit(f"a damaged {kind!r} box in the head")
        yield kind, at + header, at + size
        at += size


def _child(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int]:
    for k, s, e in _boxes(data, start, end):
        if k == kind:
            return s, e
    raise SpliceUnfit(f"no {kind!r} box in the head")


def _table(head: bytes, at: int, fmt: str, fields: int = 1) -> np.ndarray:
    """A sample table's entries (their count first, after version and flags) as int64, `fields` per entry."""
    (count,) = struct.unpack_from(">I", head, at + 4)
    return np.frombuffer(head, np.dtype(fmt), count * fields, at + 8).astype(np.int64).reshape(count, fields)


def track_samples(head: bytes) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Per trak, in order: (handler type, file offset of each sample, its size), samples in decode order."""
    moov = _child(head, 0, len(head), b"moov")
    tracks = []
    for kind, s, e in _boxes(head, *moov):
        if kind != b"trak":
            continue
        mdia = _child(head, s, e, b"mdia")
        hs, _ = _child(head, *mdia, b"hdlr")
        handler = head[hs + 8:hs + 12].decode("latin-1")
        stbl = _child(head, *_child(head, *mdia, b"minf"), b"stbl")
        ss, _ = _child(head, *stbl, b"stsz")
        fixed, count = struct.unpack_from(">II", head, ss + 4)
        sizes = np.full(count, fixed, np.int64) if fixed else _table(head, ss + 4, ">u4")[:, 0]
        cs, _ = _child(head, *stbl, b"stsc")
        runs = _table(head, cs, ">u4", 3)  # (first chunk, samples per chunk, description)
        try:
            chunk_at = _table(head, _child(head, *stbl, b"stco")[0], ">u4")[:, 0]
        except SpliceUnfit:
            chunk_at = _table(head, _child(head, *stbl, b"co64")[0], ">u8")[:, 0]
        chunks = len(chunk_at)
        if (len(runs) == 0 or runs[0, 0] != 1 or np.any(np.diff(runs[:, 0]) <= 0) or runs[-1, 0] > max(chunks, 1)
                or np.any(runs[:, 1] <= 0)):
            raise SpliceUnfit(f"{handler}: an unusable sample-to-chunk table")
        lengths = np.diff(np.append(runs[:, 0], chunks + 1))  # chunks in each run
        per_chunk = np.repeat(runs[:, 1], lengths)
        if int(per_chunk.sum()) != count:
            raise SpliceUnfit(f"{handler}: the chunk table holds {int(per_chunk.sum())} samples, the size table "
                              f"{count}")
        first = np.cumsum(per_chunk) - per_chunk  # index of each chunk's first sample
        ends = np.cumsum(sizes)
        before = np.repeat(ends[first] - sizes[first] if count else first, per_chunk)  # bytes before the chunk
        offsets = np.repeat(chunk_at, per_chunk) + (ends - sizes) - before
        tracks.append((handler, offsets, sizes))
    return tracks


def build_splice(target: Path, sink: PayloadSink, ledger: Ledger,
                 streams: list[av.stream.Stream]) -> SpliceBuilder:
    """The splice for `target` from a closed muxer's sink and its ledger, built but not committed (the
    caller commits it into place or aborts it). Raises SpliceUnfit."""
    if sink.problem:
        raise SpliceUnfit(sink.problem)
    head = sink.head()
    tracks = track_samples(head)
    if len(tracks) != len(streams):
        raise SpliceUnfit(f"{len(tracks)} tracks in the index for {len(streams)} streams")
    parts = []
    for (handler, offsets, sizes), stream in zip(tracks, streams, strict=True):
        expected = {"video": "vide", "audio": "soun"}.get(stream.type)
        notes = ledger.notes.get(stream.index, _Notes())
        if handler != expected or len(offsets) != len(notes.size):
            raise SpliceUnfit(f"track {handler}: {len(offsets)} samples for {len(notes.size)} packets of a "
                              f"{stream.type} stream")
        noted = np.frombuffer(notes.size, np.int64)
        if not np.array_equal(sizes, noted):
            k = int(np.argmax(sizes != noted))
            raise SpliceUnfit(f"a {handler} sample of {sizes[k]} bytes for a packet of {noted[k]}")
        parts.append((offsets, sizes, np.frombuffer(notes.source, np.int32), np.frombuffer(notes.pos, np.int64)))
    offsets, sizes, source, pos = (np.concatenate(column) for column in zip(*parts, strict=True))
    order = np.argsort(offsets, kind="stable")
    offsets, sizes, source, pos = offsets[order], sizes[order], source[order], pos[order]
    start = sink.payload_start or 0
    expected_at = start + np.cumsum(sizes) - sizes
    if len(offsets) and not np.array_equal(offsets, expected_at):
        at = int(expected_at[int(np.argmax(offsets != expected_at))])
        raise SpliceUnfit(f"the payload has a gap or an overlap at {at}")
    if int(sizes.sum()) != sink.payload_len:
        raise SpliceUnfit(f"the payload holds {sink.payload_len} bytes, its samples {int(sizes.sum())}")
    builder = SpliceBuilder(target)
    try:
        builder.span(builder.written("head.bin", head), 0, len(head))
        files = {GENERATED: builder.written("generated.bin", bytes(ledger.generated)) if ledger.generated else -1}
        files.update({i: builder.source(path, ledger.read_as(path)) for i, path in enumerate(ledger.sources)})
        # one span per run of samples that lie back to back in one file
        new = np.ones(len(sizes), bool)
        new[1:] = (source[1:] != source[:-1]) | (pos[1:] != pos[:-1] + sizes[:-1])
        starts = np.flatnonzero(new)
        lengths = np.add.reduceat(sizes, starts) if len(starts) else starts
        for i, length in zip(starts.tolist(), lengths.tolist(), strict=True):
            builder.span(files[int(source[i])], int(pos[i]), length)
    except SpliceError as exc:
        builder.abort()
        raise SpliceUnfit(str(exc)) from exc
    except BaseException:
        builder.abort()
        raise
    return builder
