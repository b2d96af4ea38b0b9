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
from dataclasses import dataclass, field
from pathlib import Path

import av

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


@dataclass
class Ledger:
    """Where each muxed packet's bytes are, per output stream, in mux order."""

    source: Path | None = None  # the piece whose video packets are being muxed
    notes: dict[int, list[tuple[Path | None, int, int]]] = field(default_factory=dict)
    generated: bytearray = field(default_factory=bytearray)
    _fds: dict[Path, int] = field(default_factory=dict)

    def note(self, packet: av.Packet) -> None:
        where = self.notes.setdefault(packet.stream.index, [])
        size = packet.size
        if packet.stream.type == "video" and self.source is not None and packet.pos is not None and packet.pos >= 0:
            fd = self._fds.get(self.source)
            if fd is None:
                fd = self._fds[self.source] = os.open(self.source, os.O_RDONLY)
            data = memoryview(packet)
            ends = [(0, min(size, CHECK_BYTES))] + ([(size - CHECK_BYTES, CHECK_BYTES)] if size > CHECK_BYTES else [])
            for at, n in ends:
                if os.pread(fd, n, packet.pos + at) != data[at:at + n]:
                    raise SpliceUnfit(f"{self.source.name}: packet bytes are not at its pos {packet.pos}")
            where.append((self.source, packet.pos, size))
            return
        where.append((None, len(self.generated), size))
        self.generated += memoryview(packet)

    def close(self) -> None:
        for fd in self._fds.values():
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


def track_samples(head: bytes) -> list[tuple[str, list[tuple[int, int]]]]:
    """Per trak, in order: (handler type, [(file offset, size)] per sample in decode order)."""
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
        sizes = [fixed] * count if fixed else list(struct.unpack_from(f">{count}I", head, ss + 12))
        cs, _ = _child(head, *stbl, b"stsc")
        (runs,) = struct.unpack_from(">I", head, cs + 4)
        table = [struct.unpack_from(">III", head, cs + 8 + 12 * i)[:2] for i in range(runs)]
        try:
            os_, _ = _child(head, *stbl, b"stco")
            (n,) = struct.unpack_from(">I", head, os_ + 4)
            chunks = list(struct.unpack_from(f">{n}I", head, os_ + 8))
        except SpliceUnfit:
            os_, _ = _child(head, *stbl, b"co64")
            (n,) = struct.unpack_from(">I", head, os_ + 4)
            chunks = list(struct.unpack_from(f">{n}Q", head, os_ + 8))
        samples: list[tuple[int, int]] = []
        k = 0
        run = 0
        for c, offset in enumerate(chunks, start=1):
            while run + 1 < len(table) and table[run + 1][0] <= c:
                run += 1
            per = table[run][1] if table and table[run][0] <= c else 0
            for _ in range(per):
                if k >= len(sizes):
                    raise SpliceUnfit("the chunk table holds more samples than the size table")
                samples.append((offset, sizes[k]))
                offset += sizes[k]
                k += 1
        if k != len(sizes):
            raise SpliceUnfit("the chunk table holds fewer samples than the size table")
        tracks.append((handler, samples))
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
    placed: list[tuple[int, int, Path | None, int]] = []  # (output offset, size, source, source offset)
    for (handler, samples), stream in zip(tracks, streams, strict=True):
        expected = {"video": "vide", "audio": "soun"}.get(stream.type)
        notes = ledger.notes.get(stream.index, [])
        if handler != expected or len(samples) != len(notes):
            raise SpliceUnfit(f"track {handler}: {len(samples)} samples for {len(notes)} packets of a {stream.type} "
                              "stream")
        for (offset, size), (source, at, length) in zip(samples, notes, strict=True):
            if size != length:
                raise SpliceUnfit(f"a {handler} sample of {size} bytes for a packet of {length}")
            placed.append((offset, size, source, at))
    placed.sort(key=lambda p: p[0])
    at = sink.payload_start or 0
    for offset, size, _, _ in placed:
        if offset != at:
            raise SpliceUnfit(f"the payload has {'a gap' if offset > at else 'an overlap'} at {at}")
        at += size
    if at != (sink.payload_start or 0) + sink.payload_len:
        raise SpliceUnfit(f"the payload holds {sink.payload_len} bytes, its samples {at - (sink.payload_start or 0)}")
    builder = SpliceBuilder(target)
    try:
        builder.span(builder.written("head.bin", head), 0, len(head))
        extra = builder.written("generated.bin", bytes(ledger.generated)) if ledger.generated else -1
        for _, size, source, offset in placed:
            builder.span(builder.source(source) if source is not None else extra, offset, size)
    except SpliceError as exc:
        builder.abort()
        raise SpliceUnfit(str(exc)) from exc
    except BaseException:
        builder.abort()
        raise
    return builder
