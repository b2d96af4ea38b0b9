"""Runs one plan against the stack: bookings through the API as a client would make them (retrying through a
dead API: POST is idempotent), faults at their moments, a sampler watching the services' footprint. Everything
that happens goes on a timeline, so a failing seed can be read and replayed."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil

from tests.conftest import TOKEN
from tests.media import make_intro, make_logo_png
from tests.soak import hostile
from tests.soak.plan import USERS, Attempt, Fault, Plan
from tests.soak.stack import JWT_SECRET, RtspCamera, Stack

AUTH = {"Authorization": f"Bearer {TOKEN}"}
INTRO_S = 2.0
CLIENT_RETRY_S = 60.0
"""How long the soak's client keeps retrying a request through a dead API before giving up."""


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Outcome:
    """What the client was told about one attempt."""

    attempt: Attempt
    created: int | None = None
    action: int | None = None
    accepted: bool = False
    start: datetime | None = None
    end: datetime | None = None
    notes: list[str] = field(default_factory=list)


class Driver:
    def __init__(self, stack: Stack, plan: Plan) -> None:
        self.stack, self.plan = stack, plan
        self.timeline: list[tuple[float, str]] = []
        self.outcomes = {a.id: Outcome(a) for a in plan.attempts}
        self.injected: Counter[str] = Counter()
        self.skipped: dict[str, str] = {}
        self.findings: list[str] = []
        self.kills: list[tuple[str, int]] = []
        self.samples: list[dict] = []
        self.zero = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._cloud = threading.Lock()  # one cloud fault at a time: an outage and an error spell never overlap
        self.fill_file = stack.disk.path / "foreign-fill.bin"

    # ---- record keeping -----------------------------------------------------------------------------------

    def note(self, what: str) -> None:
        with self._lock:
            self.timeline.append((round(time.time() - self.zero, 2), what))

    def finding(self, what: str) -> None:
        self.note(f"FINDING {what}")
        with self._lock:
            self.findings.append(what)

    def at(self, t: float) -> datetime:
        return datetime.fromtimestamp(self.zero + t, UTC)

    def wait_until(self, t: float) -> None:
        delay = self.zero + t - time.time()
        if delay > 0:
            self._stop.wait(delay)

    # ---- the client ---------------------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs) -> httpx.Response | None:
        """A patient client: retries while the API is down (a kill, a restart), gives up after CLIENT_RETRY_S."""
        deadline = time.monotonic() + CLIENT_RETRY_S
        while True:
            try:
                return httpx.request(method, f"{self.stack.base}{path}", headers=AUTH, timeout=20, **kwargs)
            except httpx.TransportError as exc:
                if time.monotonic() > deadline:
                    self.note(f"{method} {path}: gave up ({exc!r})")
                    return None
                time.sleep(0.5)

    def upload_media(self, scratch: Path) -> None:
        intro = make_intro(scratch / "intro.mp4", INTRO_S, size=(320, 240), fps=25)
        logo = make_logo_png(scratch / "logo.png", size=(48, 24), rgba=(255, 0, 0, 255))
        for user, kinds in USERS.items():
            for kind in kinds:
                data = (intro if kind == "intro" else logo).read_bytes()
                answer = self.request("PUT", f"/users/{user}/media/{kind}", files={"file": (f"{kind}.bin", data)})
                assert answer is not None and answer.is_success, f"{user} {kind}: {answer and answer.text}"

    def run_attempt(self, attempt: Attempt) -> None:
        out = self.outcomes[attempt.id]
        self.wait_until(attempt.create_at_s)
        out.start, out.end = self.at(attempt.start_s), self.at(attempt.end_s)
        body = {"id": attempt.id, "user_id": attempt.user_id, "start_time": iso(out.start),
                "end_time": iso(out.end)}
        answer = self.request("POST", "/bookings", json=body)
        out.created = answer.status_code if answer is not None else None
        out.accepted = out.created in (200, 201)
        self.note(f"POST {attempt.id} ({attempt.action}, {attempt.duration_s}s) -> {out.created}")
        if attempt.action == "overlap":
            if out.accepted:
                self.finding(f"{attempt.id}: an overlapping booking was accepted")
            return
        if not out.accepted:
            self.finding(f"{attempt.id}: a valid booking was refused ({out.created}: {answer and answer.text[:200]})")
            return
        if attempt.action_at_s is None:
            return
        self.wait_until(attempt.action_at_s)
        if attempt.action in ("cancel_before", "end_early"):
            answer = self.request("DELETE", f"/bookings/{attempt.id}")
        else:
            assert attempt.new_end_s is not None
            new_end = self.at(attempt.new_end_s)
            answer = self.request("PUT", f"/bookings/{attempt.id}",
                                  json={"start_time": iso(out.start), "end_time": iso(new_end)})
        out.action = answer.status_code if answer is not None else None
        expected = {"cancel_before": (204,), "end_early": (200,), "shorten": (200,)}[attempt.action]
        self.note(f"{attempt.action} {attempt.id} -> {out.action}")
        if out.action not in expected:
            # an end_early whose DELETE was delayed past the end by a dead API is answered 409: the booking
            # was recorded in full, which is what the player gets
            out.notes.append(f"{attempt.action} answered {out.action}")
            if out.action is not None and out.action >= 500:
                self.finding(f"{attempt.id}: {attempt.action} answered {out.action}: {answer and answer.text[:200]}")

    # ---- faults -------------------------------------------------------------------------------------------

    def run_fault(self, fault: Fault) -> None:
        self.wait_until(fault.at_s)
        if self._stop.is_set():
            return
        kind, stack = fault.kind, self.stack
        try:
            if kind.startswith("kill_"):
                service = kind.removeprefix("kill_")
                pid = stack.kill_service(service)
                self.note(f"kill -9 {service} (pid {pid})")
                if pid is None:
                    self.skipped[kind] = "the service was not running at that moment (restarting)"
                    return
                with self._lock:
                    self.kills.append((service, pid))
            elif kind == "broker_down":
                stack.broker.stop()
                self.note(f"broker stopped for {fault.duration_s}s")
                self._stop.wait(fault.duration_s)
                stack.broker.start()
                self.note("broker started")
            elif kind == "cloud_down":
                with self._cloud:
                    stack.cloud.kill()
                    self.note(f"cloud unreachable for {fault.duration_s}s")
                    self._stop.wait(fault.duration_s)
                    stack.cloud.start()
                    self.note("cloud back")
            elif kind == "cloud_errors":
                half = fault.duration_s / 2
                with self._cloud:  # after an outage in progress, if any
                    stack.cloud.inject({"status": 500, "body": {"message": "soak: internal error"}, "count": None})
                    self.note(f"cloud answers 500 for {half:.1f}s")
                    self._stop.wait(half)
                    stack.cloud.clear_faults()
                    stack.cloud.inject({"status": 429, "body": {"message": "soak: too many requests"},
                                        "headers": {"Retry-After": "1"}, "count": None})
                    self.note(f"cloud answers 429 for {half:.1f}s")
                    self._stop.wait(half)
                    stack.cloud.clear_faults()
                    self.note("cloud answers again")
            elif kind == "disk_fill":
                self.fill_disk(fault.duration_s)
            elif kind == "camera_freeze":
                stack.camera.freeze()
                self.note(f"{stack.camera_kind} camera frozen for {fault.duration_s}s")
                self._stop.wait(fault.duration_s)
                stack.camera.thaw()
                self.note("camera thawed")
            elif kind == "camera_restart":
                if not isinstance(stack.camera, RtspCamera):
                    self.skipped[kind] = "the synthetic camera has no server to kill (camera_freeze stalls it)"
                    self.note(f"{kind} skipped: synthetic camera")
                    return
                stack.camera.kill()
                self.note(f"camera server killed for {fault.duration_s}s")
                self._stop.wait(fault.duration_s)
                stack.camera.start()
                self.note("camera server started")
            elif kind == "mqtt_junk":
                deadline = time.monotonic() + 30
                while not stack.broker.running and time.monotonic() < deadline:  # a broker_down in progress
                    time.sleep(0.5)
                sent = hostile.mqtt_junk(stack.broker.port, stack.camera_id)
                self.note(f"mqtt junk: {sent}")
            elif kind == "api_hostile":
                seen = hostile.api_hostile(stack.base, JWT_SECRET)
                self.note(f"hostile API requests: {len(seen['ok'])} refused as they should, bad: {seen['bad']}")
                for what, status in seen["bad"]:
                    self.finding(f"hostile request {what!r} answered {status}")
            with self._lock:
                self.injected[kind] += 1
        except Exception as exc:  # the soak's own failure to inject is reported, never hidden
            self.finding(f"could not inject {kind}: {exc!r}")

    def fill_disk(self, hold_s: float) -> None:
        """A foreign file (another program's, a log gone wild) takes the disk down to a quarter of a megabyte
        above the guard's threshold: the recorder's next segments cross it, and the guard must free what it may
        (videos the cloud has) and never what it may not."""
        disk = self.stack.disk
        if not disk.mounted:
            self.skipped["disk_fill"] = f"DATA_DIR is not on a filesystem of its own ({disk.reason})"
            return
        room = disk.free_bytes() - self.stack.min_free_mb * 1024 * 1024 - 256 * 1024
        if room > 0:
            with open(self.fill_file, "wb") as fh:
                os.posix_fallocate(fh.fileno(), 0, room)
        self.note(f"disk filled by a foreign file of {room / 1e6:.1f} MB (free {disk.free_bytes() / 1e6:.1f} MB)"
                  f" for {hold_s}s")
        self._stop.wait(hold_s)
        self.fill_file.unlink(missing_ok=True)
        self.note("foreign file removed")

    # ---- footprint ----------------------------------------------------------------------------------------

    def sample(self) -> None:
        while not self._stop.wait(5):
            row: dict = {"t": round(time.time() - self.zero, 1), "disk_used_mb": round(
                self.stack.disk.used_bytes() / 1e6, 1)}
            for name, pid in self.stack.service_pids().items():
                try:
                    proc = psutil.Process(pid)
                    row[name] = {"pid": pid, "rss_mb": round(proc.memory_info().rss / 1e6, 1),
                                 "fds": proc.num_fds(), "threads": proc.num_threads()}
                except psutil.Error:
                    continue
            with self._lock:
                self.samples.append(row)

    # ---- the run ------------------------------------------------------------------------------------------

    def run(self, scratch: Path) -> None:
        self.upload_media(scratch)
        self.zero = time.time()
        self.note(f"zero = {iso(self.at(0))}")
        threads = [threading.Thread(target=self.run_attempt, args=(a,), name=a.id, daemon=True)
                   for a in self.plan.attempts]
        threads += [threading.Thread(target=self.run_fault, args=(f,), name=f.kind, daemon=True)
                    for f in self.plan.faults]
        sampler = threading.Thread(target=self.sample, name="sampler", daemon=True)
        for thread in [*threads, sampler]:
            thread.start()
        for thread in threads:
            thread.join(self.plan.end_s + 300)
            if thread.is_alive():
                self.finding(f"{thread.name}: still running after the plan's end")
        self.clear_all()
        self.note("plan done; every fault cleared")

    def clear_all(self) -> None:
        stack = self.stack
        stack.camera.thaw()
        if not stack.camera.running:
            stack.camera.start()
        if not stack.broker.running:
            stack.broker.start()
        if not stack.cloud.running:
            stack.cloud.start()
        stack.cloud.clear_faults()
        self.fill_file.unlink(missing_ok=True)

    def stop_sampling(self) -> None:
        self._stop.set()

    def elapsed(self) -> float:
        return time.time() - self.zero

    def deadline_for_settle(self, bookings: int) -> float:
        return 180 + 10 * bookings

    @staticmethod
    def ttv(end: datetime, uploaded_at: datetime) -> float:
        return (uploaded_at - end) / timedelta(seconds=1)
