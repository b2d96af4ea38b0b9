"""GET /bookings latency under a steady load, against the real API process.

Starts `python -m services.cli api` on a free loopback port with a temporary DATA_DIR holding
BOOKINGS bookings and a private Mosquitto, then sends GET /bookings open-loop at RATE requests/s for
SECONDS from a pool of client threads (a bounded number of requests, loopback only). Latency is measured
from each request's scheduled start, so a server that falls behind shows it. Prints one JSON object.

    .venv/bin/python bench/api_load.py [--rate 200] [--seconds 20] [--bookings 200]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from shared.models import BookingIn  # noqa: E402
from shared.store import LocalStore  # noqa: E402
from shared.timeutil import utc_now  # noqa: E402
from tests.broker import Broker, free_port  # noqa: E402

CAMERA = "benchcam"


def seed(data_dir: Path, count: int) -> None:
    """`count` back-to-back one-hour bookings starting tomorrow (what a busy week on one court looks like)."""
    store = LocalStore(data_dir)
    start = (utc_now() + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    items = [BookingIn(id=f"bench-{i:04d}", user_id=f"player{i % 37}", start_time=start + timedelta(hours=i),
                       end_time=start + timedelta(hours=i + 1)) for i in range(count)]
    store.create_bookings(items, CAMERA)
    store.close()


def start_api(data_dir: Path, mqtt_port: int, token: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "DATA_DIR": str(data_dir), "API_TOKEN": token, "API_HOST": "127.0.0.1",
           "API_PORT": str(port), "MQTT_HOST": "127.0.0.1", "MQTT_PORT": str(mqtt_port), "CAMERA_ID": CAMERA,
           "LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "api"], cwd=data_dir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"api exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("api did not answer /health within 30 s")


def load(url: str, token: str, rate: float, seconds: float, expected: int, workers: int = 8) -> dict:
    """Open loop: a dispatcher releases request i at t0 + i/rate to a pool of threads, each with its own
    keep-alive connection (httpx's sync client costs the client far less CPU than its async one)."""
    total = int(rate * seconds)
    latencies: list[float] = []
    sizes: list[int] = []
    errors = 0
    lock = threading.Lock()
    due: queue.Queue[tuple[int, float] | None] = queue.Queue()

    def worker() -> None:
        nonlocal errors
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
            for _ in range(3):  # warm-up: open the connection
                client.get("/bookings")
            ready.wait()
            while (item := due.get()) is not None:
                index, scheduled = item
                try:
                    response = client.get("/bookings")
                    ok = response.status_code == 200 and response.content.startswith(b"[")
                    if ok and index % 100 == 0:  # parsing every body would load the client more than the server
                        ok = len(response.json()) == expected
                    size = len(response.content)
                except httpx.HTTPError:
                    ok, size = False, 0
                took = (time.perf_counter() - scheduled) * 1000
                with lock:
                    latencies.append(took)
                    sizes.append(size)
                    errors += 0 if ok else 1

    # The client's own GIL hand-offs (5 ms by default) would otherwise show up as server latency.
    sys.setswitchinterval(0.0005)
    ready = threading.Event()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    ready.set()
    t0 = time.perf_counter() + 0.1
    for i in range(total):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        due.put((i, scheduled))
    for _ in threads:
        due.put(None)
    for thread in threads:
        thread.join(60)
    elapsed = time.perf_counter() - t0
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))], 2)

    return {"rate_rps": round(total / elapsed, 1), "target_rps": rate, "requests": total,
            "duration_s": round(elapsed, 2), "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
            "max_ms": round(latencies[-1], 2), "mean_ms": round(statistics.fmean(latencies), 2), "errors": errors,
            "bookings_per_response": expected, "response_bytes": int(statistics.median(sizes)) if sizes else 0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--bookings", type=int, default=200)
    args = parser.parse_args()
    if args.rate * args.seconds > 20000:
        parser.error("at most 20000 requests per run")
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="ezrec-bench-") as tmp:
        root = Path(tmp)
        broker = Broker(root / "mosquitto")
        broker.start()
        data_dir = root / "data"
        data_dir.mkdir()
        seed(data_dir, args.bookings)
        proc, url = start_api(data_dir, broker.port, token)
        try:
            result = load(url, token, args.rate, args.seconds, args.bookings)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
            broker.stop()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
