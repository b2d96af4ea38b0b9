"""The embedded default store: SQLite (WAL, shared by all four processes) plus a files directory."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from shared import spliced_file
from shared.atomic import remove_stale_temps
from shared.durable_db import enable_wal, write_tx
from shared.models import (
    STATUS_REASON_LIMIT,
    Booking,
    BookingIn,
    BookingStatus,
    ObjectInfo,
    ShareLink,
    SystemStatusRow,
    UserSettings,
    Video,
    VideoKind,
)
from shared.store.base import BookingConflict, NotFound, Store, check_object_path
from shared.timeutil import utc_now

_BOOKINGS = """
CREATE TABLE IF NOT EXISTS {name} (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, camera_id TEXT NOT NULL,
    start_time TEXT NOT NULL, end_time TEXT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('confirmed','missed','completed','video_processed','video_uploaded')),
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, status_reason TEXT,
    CHECK (end_time > start_time), CHECK (status_reason IS NULL OR status = 'missed'));
"""
_BOOKING_COLUMNS = "id, user_id, camera_id, start_time, end_time, status, created_at, updated_at"
_VIDEOS = """
CREATE TABLE IF NOT EXISTS {name} (
    id TEXT PRIMARY KEY, booking_id TEXT NOT NULL, user_id TEXT NOT NULL, camera_id TEXT NOT NULL,
    storage_path TEXT NOT NULL, size_bytes INTEGER NOT NULL, duration_seconds REAL NOT NULL,
    created_at TEXT NOT NULL, uploaded_at TEXT, kind TEXT NOT NULL DEFAULT 'full' CHECK (kind IN ('full','highlight')));
"""
_VIDEO_COLUMNS = ("id, booking_id, user_id, camera_id, storage_path, size_bytes, duration_seconds, created_at,"
                  " uploaded_at")
_VIDEO_INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS videos_one_full_per_booking ON videos (booking_id) WHERE kind = 'full';
CREATE INDEX IF NOT EXISTS videos_booking_kind ON videos (booking_id, kind);
"""
_SCHEMA = _BOOKINGS.format(name="bookings") + """
CREATE INDEX IF NOT EXISTS bookings_camera_start ON bookings (camera_id, start_time);
{videos}CREATE TABLE IF NOT EXISTS system_status (
    camera_id TEXT PRIMARY KEY, collected_at TEXT NOT NULL, snapshot TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS system_status_history (
    camera_id TEXT NOT NULL, collected_at TEXT NOT NULL, snapshot TEXT NOT NULL,
    PRIMARY KEY (camera_id, collected_at));
CREATE TABLE IF NOT EXISTS user_settings (
    user_id TEXT PRIMARY KEY, intro_video_path TEXT, logo_path TEXT,
    sponsor_logo_paths TEXT NOT NULL DEFAULT '[]', updated_at TEXT NOT NULL,
    logo_placement TEXT, sponsor_logo_placements TEXT NOT NULL DEFAULT '[]');
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL, path TEXT NOT NULL, size_bytes INTEGER NOT NULL, content_type TEXT NOT NULL,
    updated_at TEXT NOT NULL, PRIMARY KEY (bucket, path));
CREATE TABLE IF NOT EXISTS share_links (
    id TEXT PRIMARY KEY, video_id TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL,
    revoked_at TEXT);
CREATE INDEX IF NOT EXISTS share_links_video ON share_links (video_id);
""".replace("{videos}", _VIDEOS.format(name="videos"))

_HISTORY_KEEP_DAYS = 30
STALE_TEMP_S = 3600.0
"""An object temp file (see put_object) untouched this long belongs to a process that was killed."""


def _ts(value: datetime) -> str:
    """Fixed-width UTC text, so SQL string comparison is time comparison."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _dt(text: str) -> datetime:
    """fromisoformat, not strptime: 50x faster, and listing 200 bookings parses 800 of these."""
    value = datetime.fromisoformat(text)
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


class LocalStore(Store):
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir
        self.files_dir = data_dir / "files"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        # A kill between link/copy and rename leaves `.<name>.<random>.tmp`; as a hard link it would keep
        # a deleted video's bytes on the disk for good.
        remove_stale_temps(self.files_dir, ("**/.*.tmp", "**/.*.splice"), STALE_TEMP_S)
        self.db_path = data_dir / "ezrec.sqlite3"
        self._local = threading.local()
        self._conn().executescript(_SCHEMA)  # idempotent DDL; executescript manages its own transaction
        self._migrate()
        self._migrate_videos()

    # ---- plumbing --------------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            enable_wal(conn, 30)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def _tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """Several processes write this file: the write lock is taken up front (shared.durable_db.write_tx)."""
        return write_tx(self._conn())

    def _migrate(self) -> None:
        """A database made before `missed` existed: its bookings CHECK refuses the status and it has no
        status_reason. SQLite cannot alter a CHECK, so the table is rebuilt (sqlite.org/lang_altertable.html),
        in one write transaction; a process opening it meanwhile waits and then finds it done."""
        with self._tx() as db:
            settings_columns = {row["name"] for row in db.execute("PRAGMA table_info(user_settings)")}
            if "logo_placement" not in settings_columns:  # a database made before logo placements existed
                db.execute("ALTER TABLE user_settings ADD COLUMN logo_placement TEXT")
                db.execute("ALTER TABLE user_settings ADD COLUMN sponsor_logo_placements TEXT NOT NULL DEFAULT '[]'")
            columns = {row["name"] for row in db.execute("PRAGMA table_info(bookings)")}
            if "status_reason" in columns:
                return
            db.execute("DROP TABLE IF EXISTS bookings_new")
            db.execute(_BOOKINGS.format(name="bookings_new"))
            db.execute(f"INSERT INTO bookings_new ({_BOOKING_COLUMNS}) SELECT {_BOOKING_COLUMNS} FROM bookings")
            db.execute("DROP TABLE bookings")
            db.execute("ALTER TABLE bookings_new RENAME TO bookings")
            db.execute("CREATE INDEX IF NOT EXISTS bookings_camera_start ON bookings (camera_id, start_time)")

    def _migrate_videos(self) -> None:
        """A database made before highlights: `videos.booking_id` was UNIQUE (one video per booking) and there was
        no `kind`. Rebuilt the same way: every old row is a `full` video, still one per booking (partial index)."""
        with self._tx() as db:
            columns = {row["name"] for row in db.execute("PRAGMA table_info(videos)")}
            if "kind" not in columns:
                db.execute("DROP TABLE IF EXISTS videos_new")
                db.execute(_VIDEOS.format(name="videos_new"))
                db.execute(f"INSERT INTO videos_new ({_VIDEO_COLUMNS}) SELECT {_VIDEO_COLUMNS} FROM videos")
                db.execute("DROP TABLE videos")
                db.execute("ALTER TABLE videos_new RENAME TO videos")
            for statement in filter(str.strip, _VIDEO_INDEXES.split(";")):
                db.execute(statement)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ---- bookings --------------------------------------------------------------------------------

    @staticmethod
    def _booking(row: sqlite3.Row) -> Booking:
        return Booking(
            id=row["id"], user_id=row["user_id"], camera_id=row["camera_id"],
            start_time=_dt(row["start_time"]), end_time=_dt(row["end_time"]),
            status=BookingStatus(row["status"]), status_reason=row["status_reason"],
            created_at=_dt(row["created_at"]), updated_at=_dt(row["updated_at"]),
        )

    def create_bookings(self, items: list[BookingIn], default_camera_id: str) -> list[tuple[Booking, bool]]:
        results: list[tuple[Booking, bool]] = []
        now = _ts(utc_now())
        with self._tx() as db:
            for item in items:
                camera_id = item.camera_id or default_camera_id
                row = db.execute("SELECT * FROM bookings WHERE id = ?", (item.id,)).fetchone()
                if row is not None:
                    existing = self._booking(row)
                    if not existing.same_request(item, default_camera_id):
                        raise BookingConflict(
                            f"booking {item.id} already exists with different details", item.id
                        )
                    results.append((existing, False))
                    continue
                clash = db.execute(
                    "SELECT id FROM bookings WHERE camera_id = ? AND start_time < ? AND end_time > ? LIMIT 1",
                    (camera_id, _ts(item.end_time), _ts(item.start_time)),
                ).fetchone()
                if clash is not None:
                    raise BookingConflict(
                        f"booking {item.id} overlaps booking {clash['id']} on camera {camera_id}", clash["id"]
                    )
                db.execute(
                    f"INSERT INTO bookings ({_BOOKING_COLUMNS}) VALUES (?, ?, ?, ?, ?, 'confirmed', ?, ?)",
                    (item.id, item.user_id, camera_id, _ts(item.start_time), _ts(item.end_time), now, now),
                )
                row = db.execute("SELECT * FROM bookings WHERE id = ?", (item.id,)).fetchone()
                results.append((self._booking(row), True))
        return results

    def get_booking(self, booking_id: str) -> Booking | None:
        row = self._conn().execute("SELECT * FROM bookings WHERE id = ?", (booking_id,)).fetchone()
        return self._booking(row) if row else None

    def list_bookings(
        self,
        *,
        camera_id: str | None = None,
        user_id: str | None = None,
        status: BookingStatus | None = None,
        ends_after: datetime | None = None,
        starts_before: datetime | None = None,
    ) -> list[Booking]:
        clauses, args = [], []
        for column, value in (("camera_id", camera_id), ("user_id", user_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if status is not None:
            clauses.append("status = ?")
            args.append(status.value)
        if ends_after is not None:
            clauses.append("end_time > ?")
            args.append(_ts(ends_after))
        if starts_before is not None:
            clauses.append("start_time < ?")
            args.append(_ts(starts_before))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._conn().execute(f"SELECT * FROM bookings {where} ORDER BY start_time, id", args)
        return [self._booking(r) for r in rows.fetchall()]

    def advance_booking_status(self, booking_id: str, status: BookingStatus,
                               reason: str | None = None) -> Booking | None:
        kept = ((reason or "")[:STATUS_REASON_LIMIT] or None) if status == BookingStatus.missed else None
        with self._tx() as db:
            row = db.execute("SELECT * FROM bookings WHERE id = ?", (booking_id,)).fetchone()
            if row is None:
                return None
            current = BookingStatus(row["status"])
            if current.can_advance_to(status):
                db.execute(
                    "UPDATE bookings SET status = ?, status_reason = ?, updated_at = ? WHERE id = ?",
                    (status.value, kept, _ts(utc_now()), booking_id),
                )
                row = db.execute("SELECT * FROM bookings WHERE id = ?", (booking_id,)).fetchone()
            return self._booking(row)

    def delete_booking(self, booking_id: str) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM bookings WHERE id = ?", (booking_id,)).rowcount > 0

    def update_booking_times(self, booking_id: str, start_time: datetime, end_time: datetime) -> Booking:
        with self._tx() as db:
            row = db.execute("SELECT * FROM bookings WHERE id = ?", (booking_id,)).fetchone()
            if row is None:
                raise NotFound(f"booking {booking_id}")
            if row["status"] != BookingStatus.confirmed.value:
                raise BookingConflict(f"booking {booking_id} is {row['status']} and can no longer change", booking_id)
            clash = db.execute(
                "SELECT id FROM bookings WHERE camera_id = ? AND id != ? AND start_time < ? AND end_time > ?"
                " ORDER BY start_time LIMIT 1",
                (row["camera_id"], booking_id, _ts(end_time), _ts(start_time)),
            ).fetchone()
            if clash is not None:
                raise BookingConflict(
                    f"booking {booking_id} would overlap booking {clash['id']} on camera {row['camera_id']}",
                    clash["id"],
                )
            db.execute("UPDATE bookings SET start_time = ?, end_time = ?, updated_at = ? WHERE id = ?",
                       (_ts(start_time), _ts(end_time), _ts(utc_now()), booking_id))
            row = db.execute("SELECT * FROM bookings WHERE id = ?", (booking_id,)).fetchone()
        return self._booking(row)

    # ---- videos ----------------------------------------------------------------------------------

    @staticmethod
    def _video(row: sqlite3.Row) -> Video:
        return Video(
            id=row["id"], kind=row["kind"], booking_id=row["booking_id"], user_id=row["user_id"],
            camera_id=row["camera_id"], storage_path=row["storage_path"], size_bytes=row["size_bytes"],
            duration_seconds=row["duration_seconds"], created_at=_dt(row["created_at"]),
            uploaded_at=_dt(row["uploaded_at"]) if row["uploaded_at"] else None,
        )

    def upsert_video(self, video: Video) -> Video:
        """A booking's full video is keyed on the booking (one each); a highlight on its own id (many each)."""
        target = "(booking_id) WHERE kind = 'full'" if video.kind == "full" else "(id)"
        with self._tx() as db:
            db.execute(
                f"INSERT INTO videos ({_VIDEO_COLUMNS}, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                f" ON CONFLICT {target} DO UPDATE SET"
                " storage_path = excluded.storage_path, size_bytes = excluded.size_bytes,"
                " duration_seconds = excluded.duration_seconds, uploaded_at = excluded.uploaded_at",
                (video.id, video.booking_id, video.user_id, video.camera_id, video.storage_path,
                 video.size_bytes, video.duration_seconds, _ts(video.created_at),
                 _ts(video.uploaded_at) if video.uploaded_at else None, video.kind),
            )
            if video.kind == "full":
                row = db.execute("SELECT * FROM videos WHERE booking_id = ? AND kind = 'full'",
                                 (video.booking_id,)).fetchone()
            else:
                row = db.execute("SELECT * FROM videos WHERE id = ?", (video.id,)).fetchone()
        return self._video(row)

    def get_video(self, video_id: str) -> Video | None:
        row = self._conn().execute("SELECT * FROM videos WHERE id = ?", (video_id,)).fetchone()
        return self._video(row) if row else None

    def list_videos(self, *, booking_id: str | None = None, user_id: str | None = None,
                    kind: VideoKind | None = None) -> list[Video]:
        clauses, args = [], []
        for column, value in (("booking_id", booking_id), ("user_id", user_id), ("kind", kind)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._conn().execute(f"SELECT * FROM videos {where} ORDER BY created_at DESC", args)
        return [self._video(r) for r in rows.fetchall()]

    # ---- share links -----------------------------------------------------------------------------

    @staticmethod
    def _share_link(row: sqlite3.Row) -> ShareLink:
        return ShareLink(id=row["id"], video_id=row["video_id"], created_at=_dt(row["created_at"]),
                         expires_at=_dt(row["expires_at"]),
                         revoked_at=_dt(row["revoked_at"]) if row["revoked_at"] else None)

    def create_share_link(self, link: ShareLink) -> ShareLink:
        with self._tx() as db:
            db.execute("INSERT INTO share_links VALUES (?, ?, ?, ?, NULL)",
                       (link.id, link.video_id, _ts(link.created_at), _ts(link.expires_at)))
            row = db.execute("SELECT * FROM share_links WHERE id = ?", (link.id,)).fetchone()
        return self._share_link(row)

    def get_share_link(self, link_id: str) -> ShareLink | None:
        row = self._conn().execute("SELECT * FROM share_links WHERE id = ?", (link_id,)).fetchone()
        return self._share_link(row) if row else None

    def list_share_links(self, video_id: str) -> list[ShareLink]:
        rows = self._conn().execute(
            "SELECT * FROM share_links WHERE video_id = ? ORDER BY created_at, id", (video_id,)).fetchall()
        return [self._share_link(r) for r in rows]

    def revoke_share_links(self, video_id: str, link_id: str | None = None) -> int:
        sql, args = "UPDATE share_links SET revoked_at = ? WHERE video_id = ? AND revoked_at IS NULL", [
            _ts(utc_now()), video_id]
        if link_id is not None:
            sql += " AND id = ?"
            args.append(link_id)
        with self._tx() as db:
            return db.execute(sql, args).rowcount

    # ---- system status ---------------------------------------------------------------------------

    def put_system_status(self, row: SystemStatusRow) -> None:
        collected, snapshot = _ts(row.collected_at), json.dumps(row.snapshot)
        with self._tx() as db:
            db.execute(
                "INSERT INTO system_status VALUES (?, ?, ?) ON CONFLICT (camera_id) DO UPDATE SET"
                " collected_at = excluded.collected_at, snapshot = excluded.snapshot",
                (row.camera_id, collected, snapshot),
            )
            db.execute("INSERT OR REPLACE INTO system_status_history VALUES (?, ?, ?)",
                       (row.camera_id, collected, snapshot))
            cutoff = _ts(datetime.fromtimestamp(row.collected_at.timestamp() - _HISTORY_KEEP_DAYS * 86400, UTC))
            db.execute("DELETE FROM system_status_history WHERE camera_id = ? AND collected_at < ?",
                       (row.camera_id, cutoff))

    def get_system_status(self, camera_id: str) -> SystemStatusRow | None:
        row = self._conn().execute("SELECT * FROM system_status WHERE camera_id = ?", (camera_id,)).fetchone()
        if row is None:
            return None
        return SystemStatusRow(camera_id=row["camera_id"], collected_at=_dt(row["collected_at"]),
                               snapshot=json.loads(row["snapshot"]))

    def list_system_status(self, camera_id: str, since: datetime) -> list[SystemStatusRow]:
        rows = self._conn().execute(
            "SELECT * FROM system_status_history WHERE camera_id = ? AND collected_at >= ? ORDER BY collected_at",
            (camera_id, _ts(since)),
        ).fetchall()
        return [SystemStatusRow(camera_id=r["camera_id"], collected_at=_dt(r["collected_at"]),
                                snapshot=json.loads(r["snapshot"])) for r in rows]

    # ---- user settings ---------------------------------------------------------------------------

    def get_user_settings(self, user_id: str) -> UserSettings | None:
        row = self._conn().execute("SELECT * FROM user_settings WHERE user_id = ?", (user_id,)).fetchone()
        if row is None:
            return None
        return UserSettings(
            user_id=row["user_id"], intro_video_path=row["intro_video_path"], logo_path=row["logo_path"],
            sponsor_logo_paths=json.loads(row["sponsor_logo_paths"]), updated_at=_dt(row["updated_at"]),
            logo_placement=json.loads(row["logo_placement"]) if row["logo_placement"] else None,
            sponsor_logo_placements=json.loads(row["sponsor_logo_placements"]),
        )

    def put_user_settings(self, settings: UserSettings) -> UserSettings:
        placement = settings.logo_placement.model_dump_json() if settings.logo_placement else None
        sponsors = json.dumps([p.model_dump() if p else None for p in settings.sponsor_logo_placements])
        with self._tx() as db:
            db.execute(
                "INSERT INTO user_settings (user_id, intro_video_path, logo_path, sponsor_logo_paths, updated_at,"
                " logo_placement, sponsor_logo_placements) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (user_id) DO UPDATE SET"
                " intro_video_path = excluded.intro_video_path, logo_path = excluded.logo_path,"
                " sponsor_logo_paths = excluded.sponsor_logo_paths, updated_at = excluded.updated_at,"
                " logo_placement = excluded.logo_placement, sponsor_logo_placements = excluded.sponsor_logo_placements",
                (settings.user_id, settings.intro_video_path, settings.logo_path,
                 json.dumps(settings.sponsor_logo_paths), _ts(utc_now()), placement, sponsors),
            )
        stored = self.get_user_settings(settings.user_id)
        assert stored is not None
        return stored

    # ---- objects ---------------------------------------------------------------------------------

    def _object_file(self, bucket: str, path: str) -> Path:
        check_object_path(bucket, path)
        return self.files_dir / bucket / path

    def put_object(self, bucket: str, path: str, src: Path, content_type: str) -> ObjectInfo:
        """`src` is a finished file or splice (shared/spliced_file.py) its caller never rewrites in place: on
        the same filesystem the object is hard links to it (no copy, so storing a long video costs no time
        and writes no byte again), else a copy. A retry that finds this very object in place does nothing."""
        target = self._object_file(bucket, path)
        spliced_file.place(src, target)
        size = spliced_file.size(target)
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?)",
                       (bucket, path, size, content_type, _ts(utc_now())))
        return ObjectInfo(bucket=bucket, path=path, size_bytes=size, content_type=content_type)

    def get_object(self, bucket: str, path: str, dest: Path) -> Path:
        source = self._object_file(bucket, path)
        if not spliced_file.exists(source):
            raise NotFound(f"{bucket}/{path}")
        return spliced_file.copy_out(source, dest)

    def object_exists(self, bucket: str, path: str) -> bool:
        return spliced_file.exists(self._object_file(bucket, path))

    def delete_object(self, bucket: str, path: str) -> None:
        spliced_file.remove(self._object_file(bucket, path))
        with self._tx() as db:
            db.execute("DELETE FROM objects WHERE bucket = ? AND path = ?", (bucket, path))

    def local_object_path(self, bucket: str, path: str) -> Path | None:
        target = self._object_file(bucket, path)
        return target if spliced_file.exists(target) else None

    def reclaimable_files(self) -> list[Path]:
        """Nothing: in embedded mode these files ARE the storage (the only copy of every video)."""
        return []

    def reclaim_file(self, file: Path) -> bool:
        return False

    def change_token(self) -> tuple[int, int]:
        """SQLite's data_version moves when any other connection (any process) commits; total_changes
        counts this thread's own writes. Together: unchanged token = unchanged database."""
        conn = self._conn()
        return conn.execute("PRAGMA data_version").fetchone()[0], conn.total_changes

    def object_content_type(self, bucket: str, path: str) -> str | None:
        row = self._conn().execute(
            "SELECT content_type FROM objects WHERE bucket = ? AND path = ?", (bucket, path)
        ).fetchone()
        return row["content_type"] if row else None


