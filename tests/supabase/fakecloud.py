"""A local stand-in for a Supabase project, run as its own process so tests can kill and restart it.

It answers the way the real servers do, not the way their documentation suggests: each behaviour below
names the real source file it copies (read at supabase/storage 1.11.x with @tus/server 2.4.2 and
@tus/s3-store 2.0.3, PostgREST v12.2/v13 `Error.hs`, storage3 / postgrest-py 2.34.1, and the Kong
config of supabase/supabase's docker setup), so the next reader can check it.

- `/rest/v1/<table>`: the PostgREST subset EZREC uses (select with eq/gt/in filters, order, limit, offset;
  insert and upsert with Prefer resolution=merge-/ignore-duplicates and on_conflict; update and delete with
  filters), executed as `service_role` against the REAL PostgreSQL database the migrations built, so
  constraints, triggers and grants answer as they would in Supabase. Errors are PostgREST's JSON
  (`code`, `message`, `details`, `hint`) with PostgREST's SQLSTATE -> HTTP status mapping (`pg_http_status`).
  Results are capped at `db_max_rows` (Supabase's hosted default: 1000) without any error, as PostgREST does.
- `/storage/v1/object/...` and `/storage/v1/bucket/<id>`: upload (multipart, x-upsert, the bucket's MIME
  types and size limit), download, info, delete, bucket details. Errors are Storage's: HTTP 400 for almost
  everything, with the real code in the body (`{"statusCode": "503", "error": ..., "code": ..., "message":
  ...}`); only a 500 stays 500 and a database timeout answers 544.
- `/storage/v1/object/sign/<bucket>/<path>`: signed URLs as supabase/storage makes and serves them
  (src/http/routes/object/getSignedURL.ts, getSignedObject.ts, src/storage/object.ts signObjectUrl,
  src/storage/renderer/renderer.ts): POST (the service key; `expiresIn`, coerced from a numeric string as
  fastify's ajv does, since storage3 sends a string) answers `{"signedURL": "/object/sign/<bucket>/<path>?token=<JWT>"}`
  for an object that exists (else NoSuchKey), the JWT holding `url` = `<bucket>/<path>` and `exp`, signed with the
  project's JWT secret; GET with `?token=` needs no key (those routes are registered outside the JWT plugin) and
  serves the object (Range, ETag, `Expires` = the token's expiry, `Content-Disposition: attachment` with
  `&download=`), or InvalidJWT (HTTP 400; `jwt expired` once expired) / InvalidSignature for another path.
- `/storage/v1/upload/resumable`: TUS 1.0.0 as Supabase's @tus/server + S3 store run it: OPTIONS
  (Tus-Max-Size = the project's limit), POST (size checked against the bucket's and the project's limit:
  413; MIME type: 415; plain-text bodies; `Location` + `Upload-Expires`), HEAD (after the last byte:
  200 and Upload-Offset = size, whether or not finishing the upload made the object), PATCH (404/410
  for unknown/expired uploads, 409 on an offset mismatch, the object made after the last byte, a failure
  there answered with the Storage error's real status and message as plain text). Upload URLs expire
  `tus_expiry_s` after creation (self-hosted default: 1 h). Objects live under --root; rows go to
  storage.objects.
- Every request is appended to <root>/requests.jsonl (method, path, query, headers, body summary, status,
  `injected` when a fault rule answered) for the contract tests.

Control, from the test process or from outside it (a soak script, curl): an admin API under `/__fake/`
(no key needed; the fake listens on 127.0.0.1 only), also settable at start with the flags shown.

- `POST /__fake/faults` with a rule or a list of rules; `GET /__fake/faults` lists them with their hit counts;
  `DELETE /__fake/faults` removes them all. A rule (JSON object; `--fault RULE` at start, repeatable):
    `method`  "PATCH", "*" (default: any)
    `path`    a regular expression searched in the request path (default: any), e.g. "^/rest/v1/videos"
    `status`  the HTTP status to answer (default 500)
    `body`    a JSON object/list (sent as application/json) or a string (sent as text/plain)
    `headers` extra response headers
    `count`   how many matching requests it answers (default 1; null: all of them)
    `skip`    how many matching requests it lets through first (default 0)
    `phase`   "request" (default: answer instead of handling the request) or "completion" (only a TUS PATCH
              carrying the last byte: the bytes are kept, the object is NOT made, the rule's answer is sent:
              the real server's failed completion)
    `expire`  true: instead of answering, make the matched TUS upload expired and handle the request
              normally (it then answers 410 as the real server does: an upload URL expiring mid-upload)
    `delay_s` seconds to wait before answering (slow server)
  Helpers that build real-shaped answers: `storage_fault`, `postgrest_fault`, `tus_fault` below.
- `POST /__fake/config` with any of `file_size_limit` (project-wide upload limit, bytes; `--file-size-limit`),
  `db_max_rows` (`--db-max-rows`, null: no cap), `tus_expiry_s` (`--tus-expiry-s`), `tus_location_prefix`
  (`--tus-location-prefix`; "" reproduces self-hosted storage without REQUEST_ALLOW_X_FORWARDED_PATH, whose
  Location lacks /storage/v1), `read_only` (the database in read-only mode, as Supabase puts a database over
  its size limit: real PostgreSQL read-only transactions, so every write fails with SQLSTATE 25006).
  `GET /__fake/config` shows them.
- `POST /__fake/expire-uploads`: every open TUS upload is expired now.
- `--die-after-patch-bytes N` makes the process exit mid-PATCH (an interrupted upload); `--patch-delay S` slows
  every PATCH.

    python -m tests.supabase.fakecloud --port P --root DIR --dsn DSN --key KEY
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import itertools
import json
import os
import re
import shutil
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import jwt
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

CHUNK = 6 * 1024 * 1024
TABLES = {"bookings": ["id"], "videos": ["id"], "system_status": ["camera_id"],
          "system_status_history": ["camera_id", "collected_at"], "user_settings": ["user_id"]}
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
_SKIP_HEADERS = {"host", "connection", "accept-encoding", "user-agent", "content-length", "transfer-encoding"}
TUS_PATH = "/upload/resumable"
"""supabase/storage src/config.ts: TUS_URL_PATH defaults to /upload/resumable (behind the gateway's /storage/v1)."""
DEFAULT_FILE_SIZE_LIMIT = 50 * 1024 * 1024
"""supabase/storage src/config.ts FILE_SIZE_LIMIT: 52428800 in supabase/supabase docker/docker-compose.yml."""
DEFAULT_TUS_EXPIRY_S = 3600.0
"""supabase/storage src/config.ts: TUS_URL_EXPIRY_MS defaults to 1 h (hosted projects: up to 24 h)."""
DEFAULT_DB_MAX_ROWS = 1000
"""PGRST_DB_MAX_ROWS defaults to 1000 in supabase/supabase docker/docker-compose.yml (hosted: API settings)."""


class HttpError(Exception):
    """An answer other than success. body: dict/list (JSON), str (text/plain) or None."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(body)
        self.status, self.body, self.headers = status, body, headers or {}


# ---- the real servers' error shapes ---------------------------------------------------------------------

def storage_http_status(status_code: int) -> int:
    """supabase/storage src/http/error-handler.ts + src/internal/errors/storage-error.ts: a StorageBackendError's
    userStatusCode is 500 for a 500 and 400 for anything else (DatabaseTimeout alone is built withStatusCode(544)),
    and the handler answers with it: the real code only travels in the body's `statusCode`."""
    if status_code == 500:
        return 500
    if status_code == 544:
        return 544
    return 400


def storage_body(status_code: int, code: str, message: str, error: str | None = None) -> dict[str, str]:
    """src/http/error-handler.ts: `{...renderableError, error: error.error || renderableError.code}` where render()
    is `{statusCode: String(httpStatusCode), code, error: code, message}` (src/internal/errors/storage-error.ts)."""
    return {"statusCode": str(status_code), "code": code, "error": error or code, "message": message}


def storage_error(status_code: int, code: str, message: str, error: str | None = None) -> HttpError:
    return HttpError(storage_http_status(status_code), storage_body(status_code, code, message, error))


# The errors EZREC can meet, as src/internal/errors/codes.ts (ERRORS.*) builds them.
def no_such_key() -> HttpError:
    return storage_error(404, "NoSuchKey", "Object not found", "not_found")


def no_such_bucket() -> HttpError:
    return storage_error(404, "NoSuchBucket", "Bucket not found", "Bucket not found")


def entity_too_large() -> HttpError:
    return storage_error(413, "EntityTooLarge", "The object exceeded the maximum allowed size", "Payload too large")


def invalid_mime_type(mime: str) -> HttpError:
    return storage_error(415, "InvalidMimeType", f"mime type {mime} is not supported", "invalid_mime_type")


def key_already_exists() -> HttpError:
    return storage_error(409, "ResourceAlreadyExists", "The resource already exists", "Duplicate")


def invalid_jwt(message: str) -> HttpError:
    """src/internal/errors/codes.ts ERRORS.InvalidJWT(e): HTTP 400, code InvalidJWT, the verifier's message."""
    return storage_error(400, "InvalidJWT", message or "Invalid JWT")


def invalid_signature() -> HttpError:
    """ERRORS.InvalidSignature(): a token signed for another object."""
    return storage_error(400, "InvalidSignature", "Invalid signature")


def database_read_only() -> HttpError:
    """src/storage/database/errors.ts: SQLSTATE 25006 -> ERRORS.DatabaseReadOnly (503)."""
    return storage_error(503, "DatabaseReadOnly",
                         "The database is currently in read-only mode. Please try again later.")


def access_denied(message: str) -> HttpError:
    """src/http/plugins/jwt.ts: a JWT that does not verify -> ERRORS.AccessDenied(err.message) (403, 'Unauthorized')."""
    return storage_error(403, "AccessDenied", message, "Unauthorized")


def storage_fault(status_code: int, code: str, message: str, error: str | None = None, **rule: Any) -> dict[str, Any]:
    """A fault rule answering as Storage's error handler would (e.g. 503 DatabaseReadOnly -> HTTP 400)."""
    return {"status": storage_http_status(status_code), "body": storage_body(status_code, code, message, error), **rule}


def tus_fault(status: int, text: str, **rule: Any) -> dict[str, Any]:
    """A fault rule answering as the TUS server does: the real status, a plain-text body (@tus/server server.ts
    `write(context, headers, status_code, body)`; Supabase's onResponseError maps a Storage error to
    `{status_code: parseInt(statusCode), body: message}`, src/http/routes/tus/lifecycle.ts getTusError)."""
    return {"status": status, "body": text, **rule}


def pg_http_status(sqlstate: str, message: str = "", authed: bool = True) -> int:
    """PostgREST src/PostgREST/Error.hs mapSQLtoHTTP (identical in v12.2 and v13): SQLSTATE -> HTTP status."""
    c = sqlstate
    exact = {"23503": 409, "23505": 409, "25006": 405, "53400": 500, "57P01": 503, "42P01": 404, "42P17": 500,
             "P0001": 400}
    if c == "21000":
        return 400 if message.endswith("requires a WHERE clause") else 500
    if c == "22023":
        return 401 if message.startswith("role") and message.endswith("does not exist") else 400
    if c == "42883":
        return 406 if message.startswith("function xmlagg(") else 404
    if c == "42501":
        return 403 if authed else 401
    if c in exact:
        return exact[c]
    prefixes = {"08": 503, "09": 500, "0L": 403, "0P": 403, "25": 500, "28": 403, "2D": 500, "38": 500, "39": 500,
                "3B": 500, "40": 500, "53": 503, "54": 500, "55": 500, "57": 500, "58": 500, "F0": 500, "HV": 500,
                "P0": 500, "XX": 500}
    if c[:2] in prefixes:
        return prefixes[c[:2]]
    if c.startswith("PT") and c[2:].isdigit():
        return int(c[2:])
    return 400


def pg_body(sqlstate: str, message: str, details: str | None = None, hint: str | None = None) -> dict[str, Any]:
    """Error.hs `instance JSON.ToJSON`: code, details, hint, message."""
    return {"code": sqlstate, "details": details, "hint": hint, "message": message}


def postgrest_fault(sqlstate: str, message: str, details: str | None = None, hint: str | None = None,
                    **rule: Any) -> dict[str, Any]:
    """A fault rule answering as PostgREST does for this SQLSTATE (e.g. 25006 -> 405, 23505 -> 409)."""
    return {"status": pg_http_status(sqlstate, message), "body": pg_body(sqlstate, message, details, hint), **rule}


# ---- fault injection -------------------------------------------------------------------------------------

@dataclass
class Rule:
    id: int
    method: str = "*"
    path: str = ""
    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    count: int | None = 1
    skip: int = 0
    phase: str = "request"
    expire: bool = False
    delay_s: float = 0.0
    seen: int = 0
    hits: int = 0

    def active(self) -> bool:
        return self.count is None or self.hits < self.count


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.rules: list[Rule] = []

    def add(self, spec: dict[str, Any]) -> Rule:
        unknown = set(spec) - {f for f in Rule.__dataclass_fields__ if f not in ("id", "seen", "hits")}
        if unknown:
            raise HttpError(400, {"message": f"unknown rule fields {sorted(unknown)}"})
        if spec.get("phase", "request") not in ("request", "completion"):
            raise HttpError(400, {"message": "phase must be 'request' or 'completion'"})
        re.compile(spec.get("path", ""))
        with self._lock:
            rule = Rule(id=next(self._ids), **spec)
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def listing(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(r) for r in self.rules]

    def match(self, method: str, path: str, phase: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.phase != phase or not rule.active():
                    continue
                if rule.method not in ("*", method) or not re.search(rule.path, path):
                    continue
                rule.seen += 1
                if rule.seen <= rule.skip:
                    continue
                rule.hits += 1
                return rule
        return None


# ---- the project -----------------------------------------------------------------------------------------

@dataclass
class Config:
    file_size_limit: int = DEFAULT_FILE_SIZE_LIMIT
    db_max_rows: int | None = DEFAULT_DB_MAX_ROWS
    tus_expiry_s: float = DEFAULT_TUS_EXPIRY_S
    tus_location_prefix: str = "/storage/v1"
    read_only: bool = False


class Cloud:
    def __init__(self, root: Path, dsn: str, key: str, port: int, die_after: int | None, patch_delay: float,
                 config: Config) -> None:
        self.root, self.dsn, self.key, self.port = root, dsn, key, port
        self.objects, self.tus_dir = root / "objects", root / "tus"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.tus_dir.mkdir(parents=True, exist_ok=True)
        self.die_after, self.patch_delay = die_after, patch_delay
        # The project's JWT secret (getJwtSecret(tenant)): signs the signed URLs' tokens. Not the service key.
        self.jwt_secret = hashlib.sha256(b"fake project jwt secret:" + key.encode()).hexdigest()
        self.config = config
        self.faults = Faults()
        self.patch_bytes = 0
        self.lock = threading.Lock()
        self.log = open(root / "requests.jsonl", "a", buffering=1)  # noqa: SIM115 - open for the process

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.log.write(json.dumps(entry) + "\n")
            self.log.flush()

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.dsn)

    def begin(self, conn: psycopg.Connection) -> None:
        """Every request's transaction; in read-only mode a real read-only one, so PostgreSQL itself answers 25006."""
        if self.config.read_only:
            conn.execute("SET TRANSACTION READ ONLY")

    # ---- REST ----------------------------------------------------------------------------------------

    def rest(self, method: str, table: str, query: list[tuple[str, str]], headers: dict[str, str],
             body: Any) -> tuple[int, Any, dict[str, str]]:
        if table not in TABLES:
            # PostgREST v12+ (src/PostgREST/Error.hs TableNotFound): 404 PGRST205
            raise HttpError(404, pg_body("PGRST205", f"Could not find the table 'public.{table}' in the schema cache"))
        prefer = {p.split("=")[0].strip(): p.split("=", 1)[1].strip() if "=" in p else ""
                  for p in headers.get("prefer", "").split(",") if p.strip()}
        params = {k: v for k, v in query if k in ("select", "order", "limit", "offset", "on_conflict", "columns")}
        where, args = self._filters(table, [(k, v) for k, v in query if k not in params])
        tbl = sql.Identifier("public", table)
        returning = sql.SQL(" RETURNING to_jsonb({}.*)").format(sql.Identifier(table))
        if method == "GET":
            cols = params.get("select", "*")
            columns = sql.SQL("*") if cols == "*" else sql.SQL(", ").join(
                sql.Identifier(self._ident(c)) for c in cols.split(","))
            offset = int(params.get("offset", 0))
            # PostgREST src/PostgREST/Plan.hs treeRestrictRange + RangeQuery.hs restrictRange: db-max-rows caps the
            # range starting at the requested offset, silently (200, Content-Range lower-upper/*).
            limits = [int(params["limit"])] if "limit" in params else []
            if self.config.db_max_rows is not None:
                limits.append(self.config.db_max_rows)
            limit = sql.SQL("LIMIT {}").format(min(limits)) if limits else sql.SQL("")
            stmt = sql.SQL("SELECT to_jsonb(t) FROM (SELECT {} FROM {} {} {} {} OFFSET {}) t").format(
                columns, tbl, where, self._order(params.get("order")), limit, offset)
            rows = [r[0] for r in self._run(stmt, args)]
            span = f"{offset}-{offset + len(rows) - 1}" if rows else "*"
            return 200, rows, {"Content-Range": f"{span}/*"}
        if method == "POST":
            rows = body if isinstance(body, list) else [body]
            cols = sorted({c for r in rows for c in r})
            conflict = [self._ident(c) for c in params.get("on_conflict", ",".join(TABLES[table])).split(",")]
            ident_cols = sql.SQL(", ").join(sql.Identifier(self._ident(c)) for c in cols)
            stmt = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM jsonb_populate_recordset(NULL::{}, %s)").format(
                tbl, ident_cols, ident_cols, tbl)
            resolution = prefer.get("resolution")
            if resolution in ("merge-duplicates", "ignore-duplicates"):
                target = sql.SQL(", ").join(sql.Identifier(c) for c in conflict)
                if resolution == "ignore-duplicates":
                    stmt += sql.SQL(" ON CONFLICT ({}) DO NOTHING").format(target)
                else:
                    stmt += sql.SQL(" ON CONFLICT ({}) DO UPDATE SET {}").format(target, sql.SQL(", ").join(
                        sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in cols))
            result = self._run(stmt + returning, [Jsonb(rows)])
            return 201, ([r[0] for r in result] if prefer.get("return") == "representation" else None), {}
        if method == "PATCH":
            cols = sorted(body)
            stmt = sql.SQL("UPDATE {} SET {} FROM jsonb_populate_record(NULL::{}, %s) AS r {}").format(
                tbl, sql.SQL(", ").join(sql.SQL("{} = r.{}").format(sql.Identifier(self._ident(c)),
                                                                   sql.Identifier(c)) for c in cols), tbl, where)
            result = self._run(stmt + returning, [Jsonb(body), *args])
            return (200, [r[0] for r in result], {}) if prefer.get("return") == "representation" else (204, None, {})
        if method == "DELETE":
            result = self._run(sql.SQL("DELETE FROM {} {}").format(tbl, where) + returning, args)
            return (200, [r[0] for r in result], {}) if prefer.get("return") == "representation" else (204, None, {})
        raise HttpError(405, pg_body("PGRST117", f"Unsupported HTTP method: {method}"))

    @staticmethod
    def _ident(name: str) -> str:
        if not _IDENT.match(name):
            raise HttpError(400, pg_body("PGRST100", f"failed to parse column {name!r}"))
        return name

    def _filters(self, table: str, filters: list[tuple[str, str]]) -> tuple[sql.Composable, list[Any]]:
        clauses, args = [], []
        ops = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
        for column, expr in filters:
            col = sql.Identifier(table, self._ident(column))
            op, _, value = expr.partition(".")
            if op in ops:
                clauses.append(sql.SQL("{} {} %s").format(col, sql.SQL(ops[op])))
                args.append(value)
            elif op == "in":
                items = [v.strip().strip('"') for v in value.strip("()").split(",") if v.strip()]
                clauses.append(sql.SQL("{}::text = ANY(%s)").format(col))
                args.append(items)
            elif op == "is":
                clauses.append(sql.SQL("{} IS {}").format(col, sql.SQL({"null": "NULL", "true": "TRUE",
                                                                          "false": "FALSE"}[value])))
            else:
                raise HttpError(400, pg_body("PGRST100", f"unsupported operator {op!r}"))
        if not clauses:
            return sql.SQL(""), args
        return sql.SQL("WHERE ") + sql.SQL(" AND ").join(clauses), args

    def _order(self, order: str | None) -> sql.Composable:
        if not order:
            return sql.SQL("")
        terms = []
        for term in order.split(","):
            column, _, direction = term.partition(".")
            terms.append(sql.SQL("{} {}").format(sql.Identifier(self._ident(column)),
                                                 sql.SQL("DESC" if direction.startswith("desc") else "ASC")))
        return sql.SQL("ORDER BY ") + sql.SQL(", ").join(terms)

    def _run(self, stmt: sql.Composable, args: list[Any]) -> list[tuple[Any, ...]]:
        try:
            with self.connect() as conn, conn.transaction():
                self.begin(conn)
                conn.execute("SET LOCAL ROLE service_role")
                conn.execute("SELECT set_config('request.jwt.claims', '{\"role\":\"service_role\"}', true)")
                cur = conn.execute(stmt, args)
                return cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            diag = exc.diag
            state, message = diag.sqlstate or "XX000", diag.message_primary or str(exc)
            raise HttpError(pg_http_status(state, message),
                            pg_body(state, message, diag.message_detail, diag.message_hint)) from exc

    # ---- storage -------------------------------------------------------------------------------------

    def bucket(self, bucket: str) -> dict[str, Any]:
        """src/http/routes/bucket/getBucket.ts: the bucket's row, or NoSuchBucket."""
        with self.connect() as conn:
            row = conn.execute("SELECT to_jsonb(b) FROM (SELECT id, name, owner, public, created_at, updated_at,"
                               " file_size_limit, allowed_mime_types FROM storage.buckets WHERE id = %s) b",
                               (bucket,)).fetchone()
        if row is None:
            raise no_such_bucket()
        return row[0]

    def size_limit(self, bucket: dict[str, Any]) -> int:
        """src/http/routes/tus/index.ts maxSize: the bucket's file_size_limit, else the project's; never above the
        project's (src/storage/limits.ts getFileSizeLimit)."""
        limit = bucket.get("file_size_limit") or self.config.file_size_limit
        return min(limit, self.config.file_size_limit)

    @staticmethod
    def check_mime(bucket: dict[str, Any], content_type: str) -> None:
        """src/storage/uploader.ts validateMimeType: type/subtype against the bucket's list (`type/*` allowed)."""
        allowed = bucket.get("allowed_mime_types")
        if not allowed:
            return
        mime = content_type.split(";")[0].strip()
        kind, _, sub = mime.partition("/")
        for entry in allowed:
            a_kind, _, a_sub = entry.partition("/")
            if a_kind == kind and a_sub in ("*", sub):
                return
        raise invalid_mime_type(content_type)

    def object_file(self, bucket: str, path: str) -> Path:
        parts = path.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise storage_error(400, "InvalidKey", f"Invalid key: {path}")
        return self.objects / bucket / path

    def check_writable(self, bucket: str, path: str, upsert: bool) -> None:
        """src/storage/uploader.ts canUpload: a test insert (or upsert) in a rolled-back transaction, so a duplicate
        without x-upsert is 409 and a read-only database is DatabaseReadOnly before any byte is taken."""
        if self.config.read_only:
            raise database_read_only()
        if not upsert and self.object_file(bucket, path).exists():
            raise key_already_exists()

    def store_object(self, bucket: str, path: str, data_file: Path, content_type: str, cache_control: str,
                     upsert: bool, version: str | None = None) -> dict[str, Any]:
        """src/storage/uploader.ts completeUpload: the object's row is upserted (read-only database: DatabaseReadOnly)
        and only then is the object there for info/download."""
        target = self.object_file(bucket, path)
        size = data_file.stat().st_size
        version = version or uuid.uuid4().hex
        meta = {"size": size, "mimetype": content_type, "cacheControl": cache_control, "version": version,
                "eTag": f'"{hashlib.md5(data_file.read_bytes()).hexdigest()}"'}  # noqa: S324 - S3's ETag
        with self.lock:
            if target.exists() and not upsert:
                raise key_already_exists()
            try:
                with self.connect() as conn, conn.transaction():
                    self.begin(conn)
                    row = conn.execute(
                        "INSERT INTO storage.objects (bucket_id, name, metadata) VALUES (%s, %s, %s)"
                        " ON CONFLICT (bucket_id, name) DO UPDATE SET metadata = excluded.metadata, updated_at = now()"
                        " RETURNING id::text, created_at, updated_at", (bucket, path, Jsonb(meta))).fetchone()
            except psycopg.errors.ReadOnlySqlTransaction as exc:
                raise database_read_only() from exc
            meta.update(id=row[0], created_at=row[1].isoformat(), last_modified=row[2].isoformat())
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(data_file, target)
            sha = hashlib.sha256(target.read_bytes()).hexdigest()
            target.with_name(target.name + ".meta.json").write_text(json.dumps(meta))
        self.record({"event": "object_stored", "bucket": bucket, "path": path, "size": size, "sha256": sha,
                     "content_type": content_type, "version": version})
        return {"Key": f"{bucket}/{path}", "Id": meta["id"]}

    def meta(self, bucket: str, path: str) -> dict[str, Any]:
        target = self.object_file(bucket, path)
        if not target.is_file():
            raise no_such_key()
        return json.loads(target.with_name(target.name + ".meta.json").read_text())

    # ---- signed URLs ---------------------------------------------------------------------------------

    def sign_url(self, bucket: str, name: str, body: bytes) -> dict[str, str]:
        """src/http/routes/object/getSignedURL.ts + src/storage/object.ts signObjectUrl: the object must exist
        (findObject: NoSuchKey), the token is `{url: "<bucket>/<name>"}` signed with the project's JWT secret for
        `expiresIn` seconds (jsonwebtoken's expiresIn: `exp` = iat + expiresIn)."""
        try:
            request = json.loads(body or b"{}")
        except ValueError as exc:
            raise HttpError(400, {"statusCode": "400", "error": "Bad Request",
                                  "message": "Body is not valid JSON"}) from exc
        expires_in = request.get("expiresIn") if isinstance(request, dict) else None
        if isinstance(expires_in, str) and expires_in.strip().lstrip("-").isdigit():
            expires_in = int(expires_in)  # fastify's ajv coerceTypes: storage3 sends "300"
        if not isinstance(expires_in, int) or isinstance(expires_in, bool) or expires_in < 1:
            # A Fastify validation error through the error handler's `'statusCode' in error` branch.
            raise HttpError(400, {"statusCode": "400", "error": "Bad Request",
                                  "message": "body/expiresIn must be integer" if expires_in is not None else
                                  "body must have required property 'expiresIn'"})
        self.bucket(bucket)
        self.meta(bucket, name)
        now = int(time.time())
        token = jwt.encode({"url": f"{bucket}/{name}", "iat": now, "exp": now + expires_in}, self.jwt_secret,
                           algorithm="HS256")
        return {"signedURL": f"/object/sign/{bucket}/{name}?token={token}"}

    def signed_object(self, bucket: str, name: str, query: dict[str, str],
                      headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        """src/http/routes/object/getSignedObject.ts, then the asset renderer (src/storage/renderer/renderer.ts)."""
        try:
            claims = jwt.decode(query.get("token", ""), self.jwt_secret, algorithms=["HS256"])
        except jwt.ExpiredSignatureError as exc:
            raise invalid_jwt("jwt expired") from exc
        except jwt.InvalidSignatureError as exc:
            raise invalid_jwt("invalid signature") from exc
        except jwt.PyJWTError as exc:
            raise invalid_jwt("jwt malformed") from exc
        if claims.get("url") != f"{bucket}/{name}":
            raise invalid_signature()
        meta = self.meta(bucket, name)
        data = self.object_file(bucket, name).read_bytes()
        answer = {"Accept-Ranges": "bytes", "Content-Type": meta["mimetype"], "ETag": meta.get("eTag", ""),
                  "Last-Modified": formatdate(time.time(), usegmt=True),
                  "Expires": formatdate(claims["exp"], usegmt=True)}
        if "download" in query:
            download = query["download"]
            answer["Content-Disposition"] = "attachment;" if download == "" else \
                f"attachment; filename={quote(download)}; filename*=UTF-8''{quote(download)};"
        status, body = 200, data
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", headers.get("range", "").strip())
        if match and (match[1] or match[2]):
            size = len(data)
            start, end = (int(match[1]), int(match[2] or size - 1)) if match[1] else (max(0, size - int(match[2])),
                                                                                      size - 1)
            if start >= size or start > end:
                raise storage_error(400, "InvalidRange", "invalid range provided", "invalid_range")
            end = min(end, size - 1)
            status, body = 206, data[start:end + 1]
            answer["Content-Range"] = f"bytes {start}-{end}/{size}"
        return status, body, answer

    # ---- TUS uploads ---------------------------------------------------------------------------------

    @staticmethod
    def upload_url_id(bucket: str, name: str, version: str) -> str:
        """src/http/routes/tus/lifecycle.ts generateUrl: base64url of `bucket/objectName/version` (UploadId without
        its tenant, src/storage/protocols/tus/upload-id.ts)."""
        return base64.urlsafe_b64encode(f"{bucket}/{name}/{version}".encode()).decode().rstrip("=")

    def tus_meta(self, url_id: str) -> dict[str, Any]:
        """@tus/s3-store getUpload: unknown -> ERRORS.FILE_NOT_FOUND (404)."""
        try:
            decoded = base64.urlsafe_b64decode(url_id + "=" * (-len(url_id) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        version = decoded.rsplit("/", 1)[-1]
        file = self.tus_dir / f"{version}.json"
        if not re.fullmatch(r"[0-9a-f]{32}", version) or not file.exists():
            raise HttpError(404, "The file for this url was not found\n")
        return json.loads(file.read_text())

    def save_tus_meta(self, meta: dict[str, Any]) -> None:
        (self.tus_dir / f"{meta['version']}.json").write_text(json.dumps(meta))

    def tus_expired(self, meta: dict[str, Any]) -> bool:
        """@tus/server HeadHandler/PatchHandler: creation_date + the store's expiration in the past ->
        ERRORS.FILE_NO_LONGER_EXISTS (410), for a finished upload too."""
        return time.time() > meta["created_at"] + self.config.tus_expiry_s or meta.get("expired", False)

    def tus_offset(self, meta: dict[str, Any]) -> int:
        """@tus/s3-store getUpload: once the multipart upload is finished (NoSuchUpload) the offset is the size,
        whether or not Supabase's onUploadFinish then managed to make the object."""
        if meta.get("finished"):
            return meta["length"]
        part = self.tus_dir / f"{meta['version']}.part"
        return part.stat().st_size if part.exists() else 0

    def upload_expires(self, meta: dict[str, Any]) -> str:
        """@tus/server PostHandler/PatchHandler: Upload-Expires = creation + expiration, RFC 7231 date."""
        return formatdate(meta["created_at"] + self.config.tus_expiry_s, usegmt=True)

    def expire_uploads(self) -> int:
        count = 0
        for file in self.tus_dir.glob("*.json"):
            meta = json.loads(file.read_text())
            meta["expired"] = True
            file.write_text(json.dumps(meta))
            count += 1
        return count


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    cloud: Cloud

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        split = urlsplit(self.path)
        path, query = unquote(split.path), parse_qsl(split.query, keep_blank_values=True)
        headers = {k.lower(): v for k, v in self.headers.items()}
        if path.startswith("/__fake/"):
            self._admin(path, self._read_body())
            return
        entry: dict[str, Any] = {"method": self.command, "path": path, "query": split.query,
                                 "headers": {k: v for k, v in headers.items() if k not in _SKIP_HEADERS}}
        status, payload, extra = 500, None, {}
        try:
            rule = self.cloud.faults.match(self.command, path, "request")
            if rule is not None and rule.expire:
                self._expire(path)
                entry["injected"] = rule.id
                rule = None
            if rule is not None:
                self._drain_request()
                entry["injected"] = rule.id
                if rule.delay_s:
                    time.sleep(rule.delay_s)
                raise HttpError(rule.status, rule.body, dict(rule.headers))
            self._authorize(path, headers)
            if self.command == "PATCH" and path.startswith(f"/storage/v1{TUS_PATH}/"):
                status, extra = self._tus_patch(path.rsplit("/", 1)[1], headers, entry)
            else:
                body = self._read_body() if self.command in ("POST", "PUT", "PATCH", "DELETE") else b""
                status, payload, extra = self._route(path, query, headers, body, entry)
        except HttpError as exc:
            status, payload, extra = exc.status, exc.body, exc.headers
        entry["status"] = status
        self.cloud.record(entry)
        self._respond(status, payload, extra)

    def _drain_request(self) -> None:
        """An injected answer still reads the request's body, so the connection stays usable (keep-alive)."""
        if self.command in ("POST", "PUT", "PATCH", "DELETE"):
            self._read_body()

    def _expire(self, path: str) -> None:
        if path.startswith(f"/storage/v1{TUS_PATH}/"):
            try:
                meta = self.cloud.tus_meta(path.rsplit("/", 1)[1])
            except HttpError:
                return
            meta["expired"] = True
            self.cloud.save_tus_meta(meta)

    def _authorize(self, path: str, headers: dict[str, str]) -> None:
        key = self.cloud.key
        if path.startswith("/storage/v1/object/sign/") and self.command == "GET":
            return  # src/http/routes/object/index.ts: registered outside the jwt plugin; the token is the credential
        if path.startswith("/storage/v1/"):
            # supabase/supabase docker/volumes/api/kong.yml: no key-auth on /storage/v1; Storage checks the JWT itself
            # (src/http/plugins/jwt.ts) and answers AccessDenied through the error handler (HTTP 400, statusCode 403),
            # on the TUS routes too (the preHandler runs before the TUS server).
            if self.command != "OPTIONS" and headers.get("authorization") != f"Bearer {key}":
                raise access_denied("invalid signature")
            return
        if path.startswith("/rest/v1/"):
            # kong.yml: key-auth on /rest/v1, answering as Kong's kong/plugins/key-auth/handler.lua does; then
            # PostgREST verifies the JWT (Error.hs JwtDecodeError: PGRST301, 401; the message is jose's, illustrative).
            if headers.get("apikey") is None:
                raise HttpError(401, {"message": "No API key found in request"})
            if headers.get("apikey") != key:
                raise HttpError(401, {"message": "Invalid authentication credentials"})
            if headers.get("authorization") != f"Bearer {key}":
                raise HttpError(401, pg_body("PGRST301", "No suitable key or wrong key type"),
                                {"WWW-Authenticate": "Bearer"})
            return
        # kong.yml: anything else falls to the catch-all `dashboard` route and its basic-auth (Kong's 401), e.g. a
        # TUS Location without /storage/v1.
        raise HttpError(401, {"message": "Unauthorized"}, {"WWW-Authenticate": 'Basic realm="service"'})

    def _respond(self, status: int, payload: Any, extra: dict[str, str]) -> None:
        if isinstance(payload, bytes | Path):
            data = payload.read_bytes() if isinstance(payload, Path) else payload
        elif isinstance(payload, str):
            data = payload.encode()
            extra.setdefault("Content-Type", "text/plain; charset=utf-8")
        else:
            data = b"" if payload is None else json.dumps(payload).encode()
            if payload is not None:
                extra.setdefault("Content-Type", "application/json")
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(data)

    def _admin(self, path: str, body: bytes) -> None:
        cloud = self.cloud
        try:
            data = json.loads(body) if body else None
            if path == "/__fake/faults" and self.command == "POST":
                rules = [cloud.faults.add(spec) for spec in (data if isinstance(data, list) else [data])]
                result: Any = [asdict(r) for r in rules]
            elif path == "/__fake/faults" and self.command == "DELETE":
                cloud.faults.clear()
                result = []
            elif path == "/__fake/faults":
                result = cloud.faults.listing()
            elif path == "/__fake/config" and self.command == "POST":
                unknown = set(data) - set(Config.__dataclass_fields__)
                if unknown:
                    raise HttpError(400, {"message": f"unknown settings {sorted(unknown)}"})
                for name, value in data.items():
                    setattr(cloud.config, name, value)
                result = asdict(cloud.config)
            elif path == "/__fake/config":
                result = asdict(cloud.config)
            elif path == "/__fake/expire-uploads" and self.command == "POST":
                result = {"expired": cloud.expire_uploads()}
            else:
                raise HttpError(404, {"message": f"no admin route {self.command} {path}"})
            self._respond(200, result, {})
        except HttpError as exc:
            self._respond(exc.status, exc.body, {})
        except (ValueError, TypeError, re.error) as exc:
            self._respond(400, {"message": str(exc)}, {})

    def _route(self, path: str, query: list[tuple[str, str]], headers: dict[str, str], body: bytes,
               entry: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        cloud = self.cloud
        if path.startswith("/rest/v1/"):
            data = json.loads(body) if body else None
            entry["body"] = data
            return cloud.rest(self.command, path.removeprefix("/rest/v1/"), query, headers, data)
        tus = f"/storage/v1{TUS_PATH}"
        if path in (tus, tus + "/") and self.command == "OPTIONS":
            # @tus/server OptionsHandler: Tus-Max-Size = maxSize(req, null) = the project's limit (tus/index.ts)
            return 204, None, {"Tus-Resumable": "1.0.0", "Tus-Version": "1.0.0",
                               "Tus-Extension": "creation,creation-with-upload,termination,expiration",
                               "Tus-Max-Size": str(cloud.config.file_size_limit)}
        if path in (tus, tus + "/") and self.command == "POST":
            return self._tus_create(headers, entry)
        if path.startswith(tus + "/") and self.command == "HEAD":
            return self._tus_head(path.rsplit("/", 1)[1], headers)
        if path.startswith("/storage/v1/bucket/") and self.command == "GET":
            return 200, cloud.bucket(path.removeprefix("/storage/v1/bucket/")), {}
        if path.startswith("/storage/v1/object/info/") and self.command == "GET":
            bucket, _, name = path.removeprefix("/storage/v1/object/info/").partition("/")
            cloud.bucket(bucket)
            meta = cloud.meta(bucket, name)
            # src/storage/renderer/info.ts InfoRenderer body
            return 200, {"id": meta.get("id"), "name": name, "version": meta.get("version"), "bucket_id": bucket,
                         "size": meta["size"], "content_type": meta["mimetype"],
                         "cache_control": meta["cacheControl"], "etag": meta.get("eTag"), "metadata": {},
                         "last_modified": meta.get("last_modified"), "created_at": meta.get("created_at")}, {}
        if path.startswith("/storage/v1/object/sign/"):
            bucket, _, name = path.removeprefix("/storage/v1/object/sign/").partition("/")
            if self.command == "POST":
                return 200, cloud.sign_url(bucket, name, body), {}
            if self.command in ("GET", "HEAD"):
                return self._signed(bucket, name, query, headers, entry)
        if path.startswith("/storage/v1/object/list/") and self.command == "POST":
            return self._list_objects(path.removeprefix("/storage/v1/object/list/"), body)
        if path.startswith("/storage/v1/object/"):
            bucket, _, name = path.removeprefix("/storage/v1/object/").partition("/")
            if self.command == "DELETE" and not name:
                return self._delete_objects(bucket, body, entry)
            if self.command in ("POST", "PUT"):
                return self._multipart_upload(bucket, name, headers, body, entry)
            if self.command == "GET":
                cloud.bucket(bucket)
                meta = cloud.meta(bucket, name)
                return 200, cloud.object_file(bucket, name), {"Content-Type": meta["mimetype"]}
        raise storage_error(404, "NotFound", f"Route {self.command}:{path} not found", "Not Found")

    def _signed(self, bucket: str, name: str, query: list[tuple[str, str]], headers: dict[str, str],
                entry: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        params = dict(query)
        entry["query"] = "&".join(f"{k}={'<token>' if k == 'token' else v}" for k, v in query)  # no token in the log
        status, body, answer = self.cloud.signed_object(bucket, name, params, headers)
        self.cloud.record({"event": "signed_get", "bucket": bucket, "path": name, "status": status,
                           "range": headers.get("range")})
        return status, body, answer

    def _list_objects(self, bucket: str, body: bytes) -> tuple[int, Any, dict[str, str]]:
        """src/http/routes/object/listObjects.ts (storage.searchObjects): one folder level under `prefix`, files with
        their id and metadata, sub-folders with id null; `limit` / `offset` applied to names in order."""
        cloud = self.cloud
        request = json.loads(body or b"{}")
        cloud.bucket(bucket)
        base = cloud.objects / bucket / request.get("prefix", "").strip("/")
        items: list[dict[str, Any]] = []
        if base.is_dir():
            for entry in sorted(base.iterdir()):
                if entry.name.endswith(".meta.json"):
                    continue
                if entry.is_dir():
                    items.append({"name": entry.name, "id": None, "metadata": None})
                else:
                    meta = json.loads(entry.with_name(entry.name + ".meta.json").read_text())
                    items.append({"name": entry.name, "id": meta.get("id"), "metadata": meta,
                                  "updated_at": meta.get("last_modified"), "created_at": meta.get("created_at")})
        offset = int(request.get("offset", 0))
        return 200, items[offset:offset + int(request.get("limit", 100))], {}

    def _delete_objects(self, bucket: str, body: bytes, entry: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        """src/http/routes/object/deleteObjects.ts + src/storage/object.ts deleteObjects: the rows deleted in one
        transaction are the answer (missing objects are left out, no error; the bucket is not looked up)."""
        cloud = self.cloud
        prefixes = json.loads(body)["prefixes"]
        entry["body"] = {"prefixes": prefixes}
        if cloud.config.read_only:
            raise database_read_only()
        removed = []
        for prefix in prefixes:
            target = cloud.object_file(bucket, prefix)
            if target.exists():
                target.unlink()
                target.with_name(target.name + ".meta.json").unlink(missing_ok=True)
                removed.append({"name": prefix, "bucket_id": bucket})
                with cloud.connect() as conn:
                    conn.execute("DELETE FROM storage.objects WHERE bucket_id = %s AND name = %s", (bucket, prefix))
                cloud.record({"event": "object_removed", "bucket": bucket, "path": prefix})
        return 200, removed, {}

    def _multipart_upload(self, bucket: str, name: str, headers: dict[str, str], body: bytes,
                          entry: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        """src/http/routes/object/createObject.ts + src/storage/uploader.ts: MIME type and size checked against the
        bucket (and the project's limit), every failure through the error handler (HTTP 400, real code in the body)."""
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {headers.get('content-type', '')}\r\n\r\n".encode() + body)
        fields: dict[str, str] = {}
        file_part = None
        for part in message.iter_parts():
            field_name = part.get_param("name", header="content-disposition")
            if part.get_filename() is not None:
                file_part = part
            else:
                fields[field_name] = part.get_payload(decode=True).decode()
        if file_part is None:
            raise storage_error(400, "InvalidRequest", "No content provided")
        data = file_part.get_payload(decode=True)
        entry["body"] = {"fields": fields, "file": {"field": file_part.get_param("name", header="content-disposition"),
                                                    "filename": file_part.get_filename(),
                                                    "content_type": file_part.get_content_type(),
                                                    "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}}
        cloud = self.cloud
        upsert = self.command == "PUT" or headers.get("x-upsert") == "true"
        if self.command == "PUT" and not cloud.object_file(bucket, name).exists():
            raise no_such_key()
        info = cloud.bucket(bucket)
        cloud.check_mime(info, file_part.get_content_type())  # fileUploadFromRequest, before the upload
        cloud.check_writable(bucket, name, upsert)  # Uploader.upload -> prepareUpload -> canUpload
        if len(data) > cloud.size_limit(info):  # the multipart stream truncated at the limit -> EntityTooLarge
            raise entity_too_large()
        tmp = cloud.root / f"upload-{uuid.uuid4().hex}"
        tmp.write_bytes(data)
        try:
            cache = fields.get("cacheControl")
            result = cloud.store_object(bucket, name, tmp, file_part.get_content_type(),
                                        f"max-age={cache}" if cache else "no-cache", upsert)
        finally:
            tmp.unlink(missing_ok=True)
        return 200, result, {}

    def _tus_create(self, headers: dict[str, str], entry: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        """@tus/server PostHandler.send with Supabase's hooks (src/http/routes/tus/index.ts, lifecycle.ts), in the
        order they run: Tus-Resumable, Upload-Length, namingFunction, maxSize (413), onIncomingRequest (canUpload:
        409 / read-only), onUploadCreate (bucket, MIME type: 415), create; errors as plain text with the real status."""
        cloud = self.cloud
        if headers.get("tus-resumable") is None:
            raise HttpError(412, "Tus-Resumable Required\n")
        if not headers.get("upload-length", "").isdigit():
            raise HttpError(400, "Upload-Length or Upload-Defer-Length header required\n")
        metadata = {}
        for pair in headers.get("upload-metadata", "").split(","):
            key, _, value = pair.strip().partition(" ")
            metadata[key] = base64.b64decode(value).decode() if value else ""
        entry["body"] = {"metadata": metadata}
        bucket_id, name = metadata.get("bucketName"), metadata.get("objectName")
        if not bucket_id:
            raise HttpError(400, "Bucket name invalid")
        if not name:
            raise HttpError(400, "Invalid key: ")
        length = int(headers["upload-length"])
        try:
            info = cloud.bucket(bucket_id)
            if length > cloud.size_limit(info):
                raise HttpError(413, "Maximum size exceeded\n")  # @tus/utils ERRORS.ERR_MAX_SIZE_EXCEEDED
            upsert = headers.get("x-upsert") == "true"
            cloud.check_writable(bucket_id, name, upsert)
            content_type = metadata.get("contentType", "application/octet-stream")
            cloud.check_mime(info, content_type)
        except HttpError as exc:
            if isinstance(exc.body, dict) and "statusCode" in exc.body:  # lifecycle.ts onResponseError/getTusError
                raise HttpError(int(exc.body["statusCode"]), exc.body["message"]) from exc
            raise
        cache = metadata.get("cacheControl", "")
        version = uuid.uuid4().hex
        meta = {"version": version, "bucket": bucket_id, "name": name, "length": length,
                "content_type": content_type,
                # lifecycle.ts onCreate: a numeric cacheControl becomes max-age=N, anything else no-cache
                "cache_control": f"max-age={cache}" if re.fullmatch(r"-?\d+", cache) else "no-cache",
                "upsert": upsert, "created_at": time.time(), "finished": False}
        (cloud.tus_dir / f"{version}.part").write_bytes(b"")
        cloud.save_tus_meta(meta)
        location = (f"http://127.0.0.1:{cloud.port}{cloud.config.tus_location_prefix}{TUS_PATH}/"
                    f"{cloud.upload_url_id(bucket_id, name, version)}")
        return 201, None, {"Location": location, "Tus-Resumable": "1.0.0", "Upload-Expires": cloud.upload_expires(meta)}

    def _tus_head(self, url_id: str, headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        """@tus/server HeadHandler.send."""
        cloud = self.cloud
        if headers.get("tus-resumable") is None:
            raise HttpError(412, "Tus-Resumable Required\n")
        meta = cloud.tus_meta(url_id)
        if cloud.tus_expired(meta):
            raise HttpError(410, "The file for this url no longer exists\n")
        return 200, None, {"Upload-Offset": str(cloud.tus_offset(meta)), "Upload-Length": str(meta["length"]),
                           "Tus-Resumable": "1.0.0", "Cache-Control": "no-store"}

    def _tus_patch(self, url_id: str, headers: dict[str, str], entry: dict[str, Any]) -> tuple[int, dict]:
        """@tus/server PatchHandler.send over @tus/s3-store write(), then Supabase's onUploadFinish."""
        cloud = self.cloud
        length = int(headers.get("content-length", 0))
        # Read the chunk in full before storing any of it: @tus/s3-store uploadParts removes the part it was writing
        # when the request stream fails (pendingChunkFilepath), so a chunk that does not arrive whole is not kept and
        # offsets advance by whole chunks only.
        received = bytearray()
        while len(received) < length:
            piece = self.rfile.read(min(256 * 1024, length - len(received)))
            if not piece:
                raise HttpError(400, "connection closed mid-chunk\n")
            received += piece
            cloud.patch_bytes += len(piece)
            if cloud.die_after is not None and cloud.patch_bytes >= cloud.die_after:
                cloud.record({"event": "dying", "patch_bytes": cloud.patch_bytes})
                os._exit(3)
        entry["body"] = {"size": length, "upload_offset": headers.get("upload-offset")}
        if headers.get("tus-resumable") is None:
            raise HttpError(412, "Tus-Resumable Required\n")
        if headers.get("upload-offset") is None:
            raise HttpError(403, "Upload-Offset header required\n")
        if headers.get("content-type") is None:
            raise HttpError(403, "Content-Type header required\n")
        if headers.get("content-type") != "application/offset+octet-stream":
            raise HttpError(400, "Invalid content-type\n")  # server.ts header validation
        meta = cloud.tus_meta(url_id)  # lifecycle.ts onIncomingRequest: datastore.getUpload (404), then canUpload
        if cloud.config.read_only:
            raise HttpError(503, database_read_only().body["message"])
        if cloud.tus_expired(meta):
            raise HttpError(410, "The file for this url no longer exists\n")
        offset = cloud.tus_offset(meta)
        if int(headers["upload-offset"]) != offset:
            raise HttpError(409, "Upload-Offset conflict\n")
        if meta.get("finished"):
            # s3-store write() on a finished multipart upload: retrieveParts -> NoSuchUpload, not a TUS error
            raise HttpError(500, "Something went wrong with that request\n")
        if offset + length > meta["length"]:
            raise HttpError(413, "upload's size exceeded\n")
        # Not the server's rule but Supabase's documented client contract ("it must be set to 6MB (for now) do
        # not change it"): checked here so the client's chunking stays as documented.
        if offset + length < meta["length"] and length != CHUNK:
            raise HttpError(400, f"non-final chunks must be {CHUNK} bytes, got {length}\n")
        if cloud.patch_delay:
            threading.Event().wait(cloud.patch_delay)
        part = cloud.tus_dir / f"{meta['version']}.part"
        with open(part, "ab") as fh:
            fh.write(received)
            fh.flush()
            os.fsync(fh.fileno())
        offset += length
        answer = {"Upload-Offset": str(offset), "Tus-Resumable": "1.0.0"}
        if offset < meta["length"]:
            answer["Upload-Expires"] = cloud.upload_expires(meta)
            return 204, answer
        # The last byte: s3-store finishes the multipart upload (from now on HEAD says offset = size), then
        # lifecycle.ts onUploadFinish makes the object's row; its failure is the PATCH's answer.
        done = cloud.root / f"tus-{meta['version']}"
        shutil.copyfile(part, done)
        part.unlink()
        meta["finished"] = True
        cloud.save_tus_meta(meta)
        rule = cloud.faults.match("PATCH", f"/storage/v1{TUS_PATH}/{url_id}", "completion")
        try:
            if rule is not None:
                entry["injected"] = rule.id
                raise HttpError(rule.status, rule.body, dict(rule.headers))
            cloud.store_object(meta["bucket"], meta["name"], done, meta["content_type"], meta["cache_control"],
                               meta["upsert"], version=meta["version"])
        except HttpError as exc:
            if isinstance(exc.body, dict) and "statusCode" in exc.body:  # lifecycle.ts getTusError
                raise HttpError(int(exc.body["statusCode"]), exc.body["message"]) from exc
            raise
        finally:
            done.unlink(missing_ok=True)
        return 204, {**answer, "Tus-Complete": "1"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--die-after-patch-bytes", type=int, default=None)
    parser.add_argument("--patch-delay", type=float, default=0.0)
    parser.add_argument("--file-size-limit", type=int, default=DEFAULT_FILE_SIZE_LIMIT)
    parser.add_argument("--db-max-rows", type=int, default=DEFAULT_DB_MAX_ROWS)
    parser.add_argument("--tus-expiry-s", type=float, default=DEFAULT_TUS_EXPIRY_S)
    parser.add_argument("--tus-location-prefix", default="/storage/v1")
    parser.add_argument("--fault", action="append", default=[], help="a fault rule as JSON (repeatable)")
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    config = Config(file_size_limit=args.file_size_limit, db_max_rows=args.db_max_rows or None,
                    tus_expiry_s=args.tus_expiry_s, tus_location_prefix=args.tus_location_prefix)
    cloud = Cloud(args.root, args.dsn, args.key, args.port, args.die_after_patch_bytes, args.patch_delay, config)
    for spec in args.fault:
        cloud.faults.add(json.loads(spec))
    Handler.cloud = cloud
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    (args.root / "ready").write_text(str(os.getpid()))
    server.serve_forever(poll_interval=0.1)


if __name__ == "__main__":
    main()
