"""A local stand-in for a Supabase project, run as its own process so tests can kill and restart it.

- `/rest/v1/<table>`: the PostgREST subset EZREC uses (select with eq/gt/in filters, order, limit; insert
  and upsert with Prefer resolution=merge-/ignore-duplicates and on_conflict; update and delete with
  filters), executed as `service_role` against the REAL PostgreSQL database the migrations built, so
  constraints, triggers and grants answer as they would in Supabase.
- `/storage/v1/object/...`: upload (multipart, x-upsert, the bucket's allowed MIME types), download,
  info, delete; `/storage/v1/upload/resumable`: TUS 1.0.0 creation, HEAD, PATCH with Supabase's 6 MB
  chunks. Objects live under --root; their rows go to storage.objects.
- Every request is appended to <root>/requests.jsonl (method, path, query, headers, body summary, status)
  for the contract tests. --die-after-patch-bytes makes the process exit mid-PATCH (an interrupted upload).

    python -m tests.supabase.fakecloud --port P --root DIR --dsn DSN --key KEY
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import threading
import uuid
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

CHUNK = 6 * 1024 * 1024
TABLES = {"bookings": ["id"], "videos": ["id"], "system_status": ["camera_id"],
          "system_status_history": ["camera_id", "collected_at"], "user_settings": ["user_id"]}
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
_SKIP_HEADERS = {"host", "connection", "accept-encoding", "user-agent", "content-length", "transfer-encoding"}


class HttpError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body)
        self.status, self.body = status, body


def storage_error(status: int, error: str, message: str, http_status: int = 400) -> HttpError:
    return HttpError(http_status, {"statusCode": str(status), "error": error, "message": message})


class Cloud:
    def __init__(self, root: Path, dsn: str, key: str, port: int, die_after: int | None, patch_delay: float) -> None:
        self.root, self.dsn, self.key, self.port = root, dsn, key, port
        self.objects, self.tus_dir = root / "objects", root / "tus"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.tus_dir.mkdir(parents=True, exist_ok=True)
        self.die_after, self.patch_delay = die_after, patch_delay
        self.patch_bytes = 0
        self.lock = threading.Lock()
        self.log = open(root / "requests.jsonl", "a", buffering=1)  # noqa: SIM115 - open for the process

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.log.write(json.dumps(entry) + "\n")
            self.log.flush()

    # ---- REST ----------------------------------------------------------------------------------------

    def rest(self, method: str, table: str, query: list[tuple[str, str]], headers: dict[str, str],
             body: Any) -> tuple[int, Any]:
        if table not in TABLES:
            raise HttpError(404, {"code": "PGRST205", "message": f"Could not find the table 'public.{table}'"})
        prefer = {p.split("=")[0].strip(): p.split("=", 1)[1].strip() if "=" in p else ""
                  for p in headers.get("prefer", "").split(",") if p.strip()}
        params = {k: v for k, v in query if k in ("select", "order", "limit", "on_conflict", "columns")}
        where, args = self._filters(table, [(k, v) for k, v in query if k not in params])
        tbl = sql.Identifier("public", table)
        returning = sql.SQL(" RETURNING to_jsonb({}.*)").format(sql.Identifier(table))
        if method == "GET":
            cols = params.get("select", "*")
            columns = sql.SQL("*") if cols == "*" else sql.SQL(", ").join(
                sql.Identifier(self._ident(c)) for c in cols.split(","))
            stmt = sql.SQL("SELECT to_jsonb(t) FROM (SELECT {} FROM {} {} {} {}) t").format(
                columns, tbl, where, self._order(params.get("order")),
                sql.SQL("LIMIT {}").format(int(params["limit"])) if "limit" in params else sql.SQL(""))
            return 200, [r[0] for r in self._run(stmt, args)]
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
            return 201, ([r[0] for r in result] if prefer.get("return") == "representation" else None)
        if method == "PATCH":
            cols = sorted(body)
            stmt = sql.SQL("UPDATE {} SET {} FROM jsonb_populate_record(NULL::{}, %s) AS r {}").format(
                tbl, sql.SQL(", ").join(sql.SQL("{} = r.{}").format(sql.Identifier(self._ident(c)),
                                                                   sql.Identifier(c)) for c in cols), tbl, where)
            result = self._run(stmt + returning, [Jsonb(body), *args])
            return (200, [r[0] for r in result]) if prefer.get("return") == "representation" else (204, None)
        if method == "DELETE":
            result = self._run(sql.SQL("DELETE FROM {} {}").format(tbl, where) + returning, args)
            return (200, [r[0] for r in result]) if prefer.get("return") == "representation" else (204, None)
        raise HttpError(405, {"message": f"{method} not supported"})

    @staticmethod
    def _ident(name: str) -> str:
        if not _IDENT.match(name):
            raise HttpError(400, {"code": "PGRST100", "message": f"bad column {name!r}"})
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
                raise HttpError(400, {"code": "PGRST100", "message": f"unsupported operator {op!r}"})
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
            with psycopg.connect(self.dsn) as conn, conn.transaction():
                conn.execute("SET LOCAL ROLE service_role")
                conn.execute("SELECT set_config('request.jwt.claims', '{\"role\":\"service_role\"}', true)")
                cur = conn.execute(stmt, args)
                return cur.fetchall() if cur.description else []
        except psycopg.errors.UniqueViolation as exc:
            raise HttpError(409, _pg_error(exc)) from exc
        except psycopg.errors.InsufficientPrivilege as exc:
            raise HttpError(403, _pg_error(exc)) from exc
        except psycopg.Error as exc:
            raise HttpError(400, _pg_error(exc)) from exc

    # ---- storage -------------------------------------------------------------------------------------

    def bucket(self, bucket: str) -> tuple[list[str] | None, int | None]:
        with psycopg.connect(self.dsn) as conn:
            row = conn.execute("SELECT allowed_mime_types, file_size_limit FROM storage.buckets WHERE id = %s",
                               (bucket,)).fetchone()
        if row is None:
            raise storage_error(404, "Bucket not found", "Bucket not found")
        return row[0], row[1]

    def object_file(self, bucket: str, path: str) -> Path:
        parts = path.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise storage_error(400, "InvalidKey", f"Invalid key: {path}")
        return self.objects / bucket / path

    def store_object(self, bucket: str, path: str, data_file: Path, content_type: str, cache_control: str,
                     upsert: bool) -> dict[str, Any]:
        allowed, limit = self.bucket(bucket)
        if allowed and content_type.split(";")[0].strip() not in allowed:
            raise storage_error(415, "invalid_mime_type", f"mime type {content_type} is not supported")
        size = data_file.stat().st_size
        if limit is not None and size > limit:
            raise storage_error(413, "Payload too large", "The object exceeded the maximum allowed size")
        target = self.object_file(bucket, path)
        with self.lock:
            if target.exists() and not upsert:
                raise storage_error(409, "Duplicate", "The resource already exists")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(data_file, target)
            sha = hashlib.sha256(target.read_bytes()).hexdigest()
            meta = {"size": size, "mimetype": content_type, "cacheControl": f"max-age={cache_control}"}
            target.with_name(target.name + ".meta.json").write_text(json.dumps(meta))
        with psycopg.connect(self.dsn) as conn:
            conn.execute("INSERT INTO storage.objects (bucket_id, name, metadata) VALUES (%s, %s, %s)"
                         " ON CONFLICT (bucket_id, name) DO UPDATE SET metadata = excluded.metadata,"
                         " updated_at = now()", (bucket, path, Jsonb(meta)))
        self.record({"event": "object_stored", "bucket": bucket, "path": path, "size": size, "sha256": sha,
                     "content_type": content_type})
        return {"Key": f"{bucket}/{path}", "Id": str(uuid.uuid4())}

    def meta(self, bucket: str, path: str) -> dict[str, Any]:
        target = self.object_file(bucket, path)
        if not target.is_file():
            raise storage_error(404, "not_found", "Object not found", http_status=404)
        return json.loads(target.with_name(target.name + ".meta.json").read_text())

    def tus_meta(self, upload_id: str) -> dict[str, Any]:
        if not re.match(r"^[0-9a-f]{32}$", upload_id) or not (self.tus_dir / f"{upload_id}.json").exists():
            raise HttpError(404, {"message": "Upload not found"})
        return json.loads((self.tus_dir / f"{upload_id}.json").read_text())


def _pg_error(exc: psycopg.Error) -> dict[str, Any]:
    diag = exc.diag
    return {"code": diag.sqlstate, "message": diag.message_primary, "details": diag.message_detail,
            "hint": diag.message_hint}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    cloud: Cloud

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

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
        entry: dict[str, Any] = {"method": self.command, "path": path, "query": split.query,
                                 "headers": {k: v for k, v in headers.items() if k not in _SKIP_HEADERS}}
        status, payload, extra = 500, None, {}
        try:
            if headers.get("apikey") != self.cloud.key or headers.get("authorization") != f"Bearer {self.cloud.key}":
                raise HttpError(401, {"message": "Invalid API key"})
            if self.command == "PATCH" and path.startswith("/storage/v1/upload/resumable/"):
                status, extra = self._tus_patch(path.rsplit("/", 1)[1], headers, entry)
            else:
                body = self._read_body() if self.command in ("POST", "PUT", "PATCH", "DELETE") else b""
                status, payload, extra = self._route(path, query, headers, body, entry)
        except HttpError as exc:
            status, payload = exc.status, exc.body
        entry["status"] = status
        self.cloud.record(entry)
        self._respond(status, payload, extra)

    def _respond(self, status: int, payload: Any, extra: dict[str, str]) -> None:
        if isinstance(payload, bytes | Path):
            data = payload.read_bytes() if isinstance(payload, Path) else payload
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

    def _route(self, path: str, query: list[tuple[str, str]], headers: dict[str, str], body: bytes,
               entry: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        cloud = self.cloud
        if path.startswith("/rest/v1/"):
            data = json.loads(body) if body else None
            entry["body"] = data
            status, payload = cloud.rest(self.command, path.removeprefix("/rest/v1/"), query, headers, data)
            return status, payload, {}
        if path == "/storage/v1/upload/resumable" and self.command == "POST":
            return self._tus_create(headers, entry)
        if path.startswith("/storage/v1/upload/resumable/") and self.command == "HEAD":
            meta = cloud.tus_meta(path.rsplit("/", 1)[1])
            offset = (cloud.tus_dir / f"{meta['id']}.part").stat().st_size
            return 200, None, {"Upload-Offset": str(offset), "Upload-Length": str(meta["length"]),
                               "Tus-Resumable": "1.0.0", "Cache-Control": "no-store"}
        if path.startswith("/storage/v1/object/info/") and self.command == "GET":
            bucket, _, name = path.removeprefix("/storage/v1/object/info/").partition("/")
            meta = cloud.meta(bucket, name)
            return 200, {"name": name, "bucket_id": bucket, "size": meta["size"],
                         "content_type": meta["mimetype"]}, {}
        if path.startswith("/storage/v1/object/"):
            bucket, _, name = path.removeprefix("/storage/v1/object/").partition("/")
            if self.command == "DELETE" and not name:
                prefixes = json.loads(body)["prefixes"]
                entry["body"] = {"prefixes": prefixes}
                removed = []
                for prefix in prefixes:
                    target = cloud.object_file(bucket, prefix)
                    if target.exists():
                        target.unlink()
                        target.with_name(target.name + ".meta.json").unlink(missing_ok=True)
                        removed.append({"name": prefix, "bucket_id": bucket})
                        with psycopg.connect(cloud.dsn) as conn:
                            conn.execute("DELETE FROM storage.objects WHERE bucket_id = %s AND name = %s",
                                         (bucket, prefix))
                        cloud.record({"event": "object_removed", "bucket": bucket, "path": prefix})
                return 200, removed, {}
            if self.command in ("POST", "PUT"):
                return self._multipart_upload(bucket, name, headers, body, entry)
            if self.command == "GET":
                meta = cloud.meta(bucket, name)
                return 200, cloud.object_file(bucket, name), {"Content-Type": meta["mimetype"]}
        raise HttpError(404, {"message": f"no route {self.command} {path}"})

    def _multipart_upload(self, bucket: str, name: str, headers: dict[str, str], body: bytes,
                          entry: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {headers.get('content-type', '')}\r\n\r\n".encode() + body)
        fields: dict[str, str] = {}
        file_part = None
        for part in message.iter_parts():
            field = part.get_param("name", header="content-disposition")
            if part.get_filename() is not None:
                file_part = part
            else:
                fields[field] = part.get_payload(decode=True).decode()
        if file_part is None:
            raise storage_error(400, "InvalidRequest", "no file in the form")
        data = file_part.get_payload(decode=True)
        entry["body"] = {"fields": fields, "file": {"field": file_part.get_param("name", header="content-disposition"),
                                                    "filename": file_part.get_filename(),
                                                    "content_type": file_part.get_content_type(),
                                                    "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}}
        tmp = self.cloud.root / f"upload-{uuid.uuid4().hex}"
        tmp.write_bytes(data)
        upsert = self.command == "PUT" or headers.get("x-upsert") == "true"
        if self.command == "PUT" and not self.cloud.object_file(bucket, name).exists():
            tmp.unlink()
            raise storage_error(404, "not_found", "Object not found")
        try:
            result = self.cloud.store_object(bucket, name, tmp, file_part.get_content_type(),
                                             fields.get("cacheControl", "3600"), upsert)
        finally:
            tmp.unlink(missing_ok=True)
        return 200, result, {}

    def _tus_create(self, headers: dict[str, str], entry: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        if headers.get("tus-resumable") != "1.0.0":
            raise HttpError(412, {"message": "Tus-Resumable 1.0.0 required"})
        metadata = {}
        for pair in headers.get("upload-metadata", "").split(","):
            key, _, value = pair.strip().partition(" ")
            metadata[key] = base64.b64decode(value).decode() if value else ""
        entry["body"] = {"metadata": metadata}
        bucket, name = metadata.get("bucketName"), metadata.get("objectName")
        if not bucket or not name:
            raise HttpError(400, {"message": "bucketName and objectName metadata are required"})
        self.cloud.bucket(bucket)
        upsert = headers.get("x-upsert") == "true"
        if self.cloud.object_file(bucket, name).exists() and not upsert:
            raise storage_error(409, "Duplicate", "The resource already exists", http_status=409)
        upload_id = uuid.uuid4().hex
        meta = {"id": upload_id, "bucket": bucket, "name": name, "length": int(headers["upload-length"]),
                "content_type": metadata.get("contentType", "application/octet-stream"),
                "cache_control": metadata.get("cacheControl", "3600"), "upsert": upsert}
        (self.cloud.tus_dir / f"{upload_id}.part").write_bytes(b"")
        (self.cloud.tus_dir / f"{upload_id}.json").write_text(json.dumps(meta))
        location = f"http://127.0.0.1:{self.cloud.port}/storage/v1/upload/resumable/{upload_id}"
        return 201, None, {"Location": location, "Tus-Resumable": "1.0.0"}

    def _tus_patch(self, upload_id: str, headers: dict[str, str], entry: dict[str, Any]) -> tuple[int, dict]:
        cloud = self.cloud
        length = int(headers.get("content-length", 0))
        meta = cloud.tus_meta(upload_id)
        part = cloud.tus_dir / f"{upload_id}.part"
        offset = part.stat().st_size
        # Read the chunk in full before storing any of it: like Supabase's S3-backed TUS server, a chunk
        # that does not arrive whole is not kept, so offsets advance by whole chunks only.
        received = bytearray()
        while len(received) < length:
            piece = self.rfile.read(min(256 * 1024, length - len(received)))
            if not piece:
                raise HttpError(400, {"message": "connection closed mid-chunk"})
            received += piece
            cloud.patch_bytes += len(piece)
            if cloud.die_after is not None and cloud.patch_bytes >= cloud.die_after:
                cloud.record({"event": "dying", "patch_bytes": cloud.patch_bytes})
                os._exit(3)
        entry["body"] = {"size": length, "upload_offset": headers.get("upload-offset")}
        if headers.get("content-type") != "application/offset+octet-stream":
            raise HttpError(415, {"message": "Content-Type must be application/offset+octet-stream"})
        if int(headers.get("upload-offset", -1)) != offset:
            raise HttpError(409, {"message": f"Upload-Offset {headers.get('upload-offset')} != {offset}"})
        if offset + length < meta["length"] and length != CHUNK:
            raise HttpError(400, {"message": f"non-final chunks must be {CHUNK} bytes, got {length}"})
        if offset + length > meta["length"]:
            raise HttpError(413, {"message": "more bytes than Upload-Length"})
        if cloud.patch_delay:
            threading.Event().wait(cloud.patch_delay)
        with open(part, "ab") as fh:
            fh.write(received)
            fh.flush()
            os.fsync(fh.fileno())
        offset += length
        if offset == meta["length"]:
            done = cloud.root / f"tus-{upload_id}"
            shutil.copyfile(part, done)
            cloud.store_object(meta["bucket"], meta["name"], done, meta["content_type"], meta["cache_control"],
                               meta["upsert"])
            part.unlink()
            (cloud.tus_dir / f"{upload_id}.json").unlink()
        return 204, {"Upload-Offset": str(offset), "Tus-Resumable": "1.0.0"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--die-after-patch-bytes", type=int, default=None)
    parser.add_argument("--patch-delay", type=float, default=0.0)
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    Handler.cloud = Cloud(args.root, args.dsn, args.key, args.port, args.die_after_patch_bytes, args.patch_delay)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    (args.root / "ready").write_text(str(os.getpid()))
    server.serve_forever(poll_interval=0.1)


if __name__ == "__main__":
    main()
