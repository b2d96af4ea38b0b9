"""The end of a soak: every booking accounted for, through what a player and an operator can see (the API, the
cloud's rows and bucket, the finished videos), never through the recorder's or worker's file layout."""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import psycopg

from tests.media import probe
from tests.soak.driver import AUTH, INTRO_S, Driver, Outcome
from tests.soak.plan import USERS
from tests.soak.stack import FPS, KEYFRAME_S, SEGMENT_S, STALL_S

RECORDING_FAULTS = ("kill_recorder", "camera_freeze", "camera_restart", "disk_fill", "broker_down")
"""Faults that may cost a booking footage while they last (plus the recovery allowance below)."""
RECOVERY_S = 6.0
"""A killed recorder is restarted after 1 s, needs ~2-3 s to start Python and the camera warm-up; a camera back
from a stall is reopened with backoff: footage lost beyond the fault itself, at most this much."""
TOLERANCE_S = KEYFRAME_S + 2 / FPS
"""An IP camera's packets are remuxed, never re-encoded, so a recording can only begin on a keyframe (the recorder
keeps the group of pictures before the start), and their capture times are estimated from the stream's clock
(services/recorder/pyav_cameras.py StreamClock): a booking no fault touched is exact to one keyframe interval."""
SYNTHETIC_TOLERANCE_S = 2 / FPS
"""The synthetic camera's frames are encoded at capture, on the epoch-aligned frame grid: exact to two frames."""
MOVED_END_S = 1.0
"""An end moved while recording (end_early, shorten) reaches the recorder late: over MQTT at once, but with the
broker down only through the bookings cache file it polls every BOOKING_CHECK_INTERVAL (1 s in the soak); the
footage runs on until it knows (seed 2: ended early during a broker outage, 0.18 s past the new end)."""


@dataclass
class Verdict:
    booking_id: str
    outcome: str  # delivered, missed, cancelled, refused, LOST, DUPLICATED, WRONG
    detail: str = ""
    ttv_s: float | None = None
    duration_s: float | None = None
    expected_s: float | None = None
    touched_by: list[str] = field(default_factory=list)


def touched(driver: Driver, start: datetime, end: datetime) -> tuple[list[str], float]:
    """Faults that overlapped [start, end] and could cost footage, and the footage they may cost."""
    kinds, allowance = [], 0.0
    s, e = (start.timestamp() - driver.zero), (end.timestamp() - driver.zero)
    for fault in driver.plan.faults:
        if fault.kind not in RECORDING_FAULTS or fault.kind in driver.skipped:
            continue
        # a fault that ended up to RECOVERY_S before the start still costs its first seconds (a recorder killed
        # just before a booking is back ~4 s later)
        if fault.at_s <= e + 1 and fault.at_s + fault.duration_s >= s - RECOVERY_S:
            kinds.append(fault.kind)
            allowance += fault.duration_s + RECOVERY_S + (SEGMENT_S if fault.kind == "kill_recorder" else STALL_S)
    return kinds, allowance


def files_named(root: Path, booking_id: str) -> list[str]:
    pattern = re.compile(rf"(^|[^A-Za-z0-9_-]){re.escape(booking_id)}([^A-Za-z0-9_-]|$)")
    return [str(p.relative_to(root)) for p in root.rglob("*") if pattern.search(p.name)]


def account(driver: Driver, scratch: Path) -> tuple[list[Verdict], dict]:
    stack = driver.stack
    verdicts: list[Verdict] = []
    client = httpx.Client(base_url=stack.base, headers=AUTH, timeout=30, follow_redirects=True)
    with psycopg.connect(stack.cloud.dsn, autocommit=True) as db:
        for out in driver.outcomes.values():
            verdicts.append(_one(driver, client, db, out, scratch))
    client.close()
    return verdicts, _global(driver)


def _one(driver: Driver, client: httpx.Client, db: psycopg.Connection, out: Outcome, scratch: Path) -> Verdict:
    a = out.attempt
    booking = client.get(f"/bookings/{a.id}")
    rows = db.execute("SELECT id, user_id, storage_path, duration_seconds, uploaded_at FROM videos"
                      " WHERE booking_id = %s", (a.id,)).fetchall()
    objects = db.execute("SELECT name FROM storage.objects WHERE bucket_id = 'videos' AND name LIKE %s",
                         (f"%{a.id}%",)).fetchall()
    leftovers = files_named(driver.stack.data_dir, a.id)
    if not out.accepted or (a.action == "cancel_before" and out.action == 204):
        what = "refused" if not out.accepted else "cancelled"
        problems = []
        if booking.status_code != 404:
            problems.append(f"the booking exists ({booking.status_code})")
        if rows or objects:
            problems.append(f"{len(rows)} video rows, {len(objects)} objects")
        if leftovers:
            problems.append(f"files left: {leftovers[:5]}")
        return Verdict(a.id, "WRONG" if problems else what, "; ".join(problems))
    if booking.status_code != 200:
        return Verdict(a.id, "LOST", f"the accepted booking answers {booking.status_code}")
    b = booking.json()
    start, end = datetime.fromisoformat(b["start_time"]), datetime.fromisoformat(b["end_time"])
    kinds, allowance = touched(driver, start, end)
    if b["status"] == "missed":
        why = b.get("status_reason") or ""
        ok = bool(why) and bool(kinds) and not rows
        return Verdict(a.id, "missed" if ok else "LOST", f"missed: {why or 'no reason'}", touched_by=kinds)
    if len(rows) > 1 or len(objects) > 1:
        return Verdict(a.id, "DUPLICATED", f"{len(rows)} rows, {len(objects)} objects", touched_by=kinds)
    if b["status"] != "video_uploaded" or not rows or not objects:
        return Verdict(a.id, "LOST", f"status {b['status']}, {len(rows)} rows, {len(objects)} objects",
                       touched_by=kinds)
    video_id, user_id, path, duration, uploaded_at = rows[0]
    problems = []
    if user_id != a.user_id or not path.startswith(f"{a.user_id}/"):
        problems.append(f"owner {user_id} at {path}, booked by {a.user_id}")
    listed = client.get("/videos", params={"booking_id": a.id}).json()
    if len(listed) != 1:
        problems.append(f"the API lists {len(listed)} videos")
    obj = driver.stack.cloud.object_file("videos", path)
    info = probe(obj) if obj.exists() else None
    if info is None:
        problems.append("the object's bytes are missing from the bucket")
    recorded = (end - start).total_seconds()
    intro = INTRO_S if "intro" in USERS.get(a.user_id, ()) else 0.0
    expected = recorded + intro
    got = info["duration"] if info else duration
    tolerance = SYNTHETIC_TOLERANCE_S if driver.stack.camera_kind == "synthetic" else TOLERANCE_S
    if a.action in ("end_early", "shorten"):
        tolerance += MOVED_END_S
    if got > expected + tolerance:
        problems.append(f"{got:.2f}s, longer than the booking's {expected:.2f}s")
    elif got < expected - tolerance - allowance:
        problems.append(f"{got:.2f}s, short of {expected:.2f}s by more than {allowance:.1f}s the faults allow"
                        f" ({kinds or 'none'})")
    download = client.get(f"/videos/{video_id}/download")
    if download.status_code != 200 or download.content[4:8] != b"ftyp":
        problems.append(f"download answered {download.status_code}")
    ttv = driver.ttv(end, uploaded_at) if uploaded_at else None
    return Verdict(a.id, "WRONG" if problems else "delivered", "; ".join(problems), ttv, round(got, 3),
                   round(expected, 3), kinds)


def _global(driver: Driver) -> dict:
    """Outbox, services, logs, temp files, footprint."""
    stack = driver.stack
    problems: list[str] = []
    client = httpx.Client(base_url=stack.base, headers=AUTH, timeout=30)
    deadline = time.monotonic() + 30
    while True:  # the status service queues a status row every few seconds: empty at some moment, not always
        outbox = client.get("/outbox").json()
        if not (outbox["pending"] or outbox["refused"]) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if outbox["pending"] or outbox["refused"]:
        problems.append(f"cloud outbox not empty: {outbox['pending']} pending, {outbox['refused']} refused")
    services = {s["service"]: s["availability"] for s in client.get("/device/services").json()}
    client.close()
    if any(v != "online" for v in services.values()) or len(services) < 4:
        problems.append(f"services not all online: {services}")
    alive = stack.service_pids()
    if sorted(alive) != ["api", "recorder", "status", "worker"]:
        problems.append(f"services running under ezrec up: {sorted(alive)}")
    log = stack.up_log.read_text(errors="replace")
    killed = {pid for _, pid in driver.kills}
    exits = re.findall(r"(\w+) \(pid (\d+)\) exited|(\w+) exited with (-?\d+)", log)
    crashes = [line for line in log.splitlines() if " exited with " in line and " -9;" not in line]
    if crashes:
        problems.append(f"services exited on their own: {crashes[:5]}")
    kills_seen = sum(1 for line in log.splitlines() if " exited with -9;" in line)
    if kills_seen != len(killed):
        problems.append(f"{kills_seen} exits by SIGKILL in the log, {len(killed)} kills sent")
    # Each freeze lands mid-booking (plan.py). Alone it is a camera_stall; when it meets a camera still reopening
    # after a server kill, the open hangs and is reported as camera_open / camera_error instead: any camera fault
    # counts here (tests/recorder/test_rtsp_stall.py pins the stall itself).
    stalls = log.count("recorder fault camera_stall")
    camera_faults = len(re.findall(r"recorder fault camera_(?:stall|open|error)", log))
    if driver.injected.get("camera_freeze") and not camera_faults:
        problems.append("the camera was frozen mid-booking and the recorder reported no camera fault")
    tracebacks = Counter(_traceback_heads(log))
    if tracebacks:  # every exception the services expect is logged without one: a traceback is a bug's trace
        problems.append(f"tracebacks in the logs: {dict(tracebacks)}")
    temps = [str(p.relative_to(stack.data_dir)) for p in stack.data_dir.rglob(".*tmp*")]
    if temps:
        problems.append(f"temp files left: {temps[:10]}")
    growth = _growth(driver.samples)
    for name, figures in growth.items():
        if name == "disk_used_mb":
            continue
        (rss0, rss1), (fds0, fds1) = figures["rss_mb"], figures["fds"]
        if rss1 > 1.5 * rss0 + 30 or fds1 > fds0 + 20:
            problems.append(f"{name} grew: RSS {rss0} -> {rss1} MB, fds {fds0} -> {fds1}")
    return {"outbox": {k: outbox[k] for k in ("pending", "refused", "held")}, "services": services,
            "camera_stalls": stalls, "camera_faults": camera_faults,
            "tracebacks": dict(tracebacks), "temp_files": temps, "footprint": growth,
            "exits": len(exits), "problems": problems}


def _traceback_heads(log: str) -> list[str]:
    """The last line of each traceback (the exception), with numbers and ids blurred so repeats group."""
    heads, lines = [], log.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Traceback"):
            j = i + 1
            while j < len(lines) and (lines[j].startswith((" ", "\t")) or lines[j].startswith("During handling")
                                      or not lines[j].strip()):
                j += 1
            if j < len(lines):
                heads.append(re.sub(r"\d+", "N", lines[j])[:200])
    return heads


def _growth(samples: list[dict]) -> dict:
    """Each service's RSS and fds in the first and last quarter of the run (a restarted process starts low)."""
    out: dict = {}
    if len(samples) < 4:
        return out
    q = max(1, len(samples) // 4)
    for name in ("api", "recorder", "worker", "status"):
        first = [s[name] for s in samples[:q] if name in s]
        last = [s[name] for s in samples[-q:] if name in s]
        if first and last:
            out[name] = {"rss_mb": [max(x["rss_mb"] for x in first), max(x["rss_mb"] for x in last)],
                         "fds": [max(x["fds"] for x in first), max(x["fds"] for x in last)],
                         "threads": [max(x["threads"] for x in first), max(x["threads"] for x in last)]}
    out["disk_used_mb"] = [samples[0]["disk_used_mb"], samples[-1]["disk_used_mb"]]
    return out


def wait_settled(driver: Driver, timeout: float) -> float:
    """Until every accepted booking is video_uploaded or missed, the outbox is empty and every service is back
    online (after a broker restart they reconnect with backoff); returns the wait."""
    started = time.monotonic()
    client = httpx.Client(base_url=driver.stack.base, headers=AUTH, timeout=30)
    ids = [o.attempt.id for o in driver.outcomes.values()
           if o.accepted and not (o.attempt.action == "cancel_before" and o.action == 204)]
    while time.monotonic() - started < timeout:
        try:
            states = {i: client.get(f"/bookings/{i}").json().get("status") for i in ids}
            outbox = client.get("/outbox").json()
        except (httpx.HTTPError, ValueError):
            time.sleep(2)
            continue
        try:
            services = {s["service"]: s["availability"] for s in client.get("/device/services").json()}
        except (httpx.HTTPError, ValueError, TypeError, KeyError):
            services = {}
        online = len(services) == 4 and all(v == "online" for v in services.values())
        if all(s in ("video_uploaded", "missed") for s in states.values()) and not outbox["pending"] and online:
            break
        time.sleep(2)
    client.close()
    return time.monotonic() - started
