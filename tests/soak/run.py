"""`make soak SEED=<n> BOOKINGS=<n>`: one seeded soak of the whole system, a summary table, a JSON report.

    python -m tests.soak.run --seed 1 --bookings 20 [--camera rtsp|synthetic] [--out bench/results/soak-1.json]
        [--keep]

Exit 0 when every booking is accounted for and nothing global is wrong; else 1, with the seed and the event
timeline in the report (the same seed replays the same plan)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from tests.soak.accounting import account, wait_settled
from tests.soak.driver import Driver
from tests.soak.plan import FAULT_KINDS, CameraKind, make_plan
from tests.soak.stack import RtspCamera, Stack

ROOT = Path(__file__).resolve().parents[2]
BAD = ("LOST", "DUPLICATED", "WRONG")


def soak(seed: int, bookings: int, work: Path, faults_per_kind: int | None = None, min_s: float = 5.0,
         max_s: float = 20.0, camera: CameraKind | None = None) -> dict:
    """One soak; the camera is the seed's (plan.camera_for: odd seeds RTSP, even ones synthetic) unless given."""
    started = time.monotonic()
    plan = make_plan(seed, bookings, min_s=min_s, max_s=max_s, faults_per_kind=faults_per_kind, camera=camera)
    why_not = RtspCamera.available() if plan.camera == "rtsp" else None
    if why_not:
        raise RuntimeError(why_not)
    stack = Stack(work, plan.camera)
    driver = Driver(stack, plan)
    report: dict = {"seed": seed, "bookings": bookings, "camera": plan.camera}
    try:
        stack.start()
        driver.run(work)
        settle = wait_settled(driver, driver.deadline_for_settle(bookings))
        driver.stop_sampling()
        verdicts, global_ = account(driver, work)
        fs = "tmpfs" if stack.disk.mounted else f"plain directory ({stack.disk.reason})"
    finally:
        driver.stop_sampling()
        stack.stop()
    outcomes = Counter(v.outcome for v in verdicts)
    ttv = [v.ttv_s for v in verdicts if v.ttv_s is not None]
    accepted = [v for v in verdicts if v.outcome not in ("refused", "cancelled")]
    failed = [asdict(v) for v in verdicts if v.outcome in BAD] + [{"global": p} for p in global_["problems"]] + [
        {"finding": f} for f in driver.findings]
    report.update({
        "attempts": len(plan.attempts),
        "accepted": len(accepted),
        "faults": {k: driver.injected.get(k, 0) for k in FAULT_KINDS},
        "faults_skipped": driver.skipped,
        "outcomes": dict(outcomes),
        "videos": outcomes.get("delivered", 0) + outcomes.get("WRONG", 0),
        "lost": outcomes.get("LOST", 0),
        "duplicated": outcomes.get("DUPLICATED", 0),
        "late": sum(1 for t in ttv if t > 60),
        "max_time_to_video_s": round(max(ttv), 1) if ttv else None,
        "median_time_to_video_s": round(sorted(ttv)[len(ttv) // 2], 1) if ttv else None,
        "settle_s": round(settle, 1),
        "elapsed_s": round(time.monotonic() - started, 1),
        "data_dir_fs": f"{fs}, {stack.disk_mb} MB, MIN_FREE_DISK_MB={stack.min_free_mb}",
        "global": global_,
        "failures": failed,
        "passed": not failed,
        "verdicts": [asdict(v) for v in verdicts],
        "plan": plan.as_dict(),
        "timeline": driver.timeline,
    })
    return report


def table(report: dict) -> str:
    faults = ", ".join(f"{k}={v}" for k, v in report["faults"].items())
    outcomes = ", ".join(f"{k}={v}" for k, v in sorted(report["outcomes"].items()))
    rows = [
        ("seed", report["seed"]), ("camera", report["camera"]),
        ("bookings (attempts)", f"{report['bookings']} ({report['attempts']})"),
        ("accepted", report["accepted"]), ("faults injected", f"{sum(report['faults'].values())}: {faults}"),
        ("faults skipped", report["faults_skipped"] or "none"),
        ("camera_stall reports", report["global"]["camera_stalls"]), ("outcomes", outcomes),
        ("videos / lost / duplicated / late", f"{report['videos']} / {report['lost']} / {report['duplicated']} / "
                                              f"{report['late']}"),
        ("time to video max / median (s)", f"{report['max_time_to_video_s']} / {report['median_time_to_video_s']}"),
        ("settle after plan (s)", report["settle_s"]), ("elapsed (s)", report["elapsed_s"]),
        ("DATA_DIR filesystem", report["data_dir_fs"]),
        ("footprint first->last quarter", json.dumps(report["global"]["footprint"])),
        ("tracebacks in logs", json.dumps(report["global"]["tracebacks"]) or "none"),
        ("result", "PASS" if report["passed"] else f"FAIL: {len(report['failures'])} problems"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bookings", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, cloud, broker)")
    parser.add_argument("--camera", choices=("rtsp", "synthetic"), default=None,
                        help="the camera (default: the seed's, odd seeds RTSP, even ones synthetic)")
    args = parser.parse_args(argv)
    out = args.out or ROOT / "bench" / "results" / f"soak-{args.seed}.json"
    work = Path(tempfile.mkdtemp(prefix=f"ezrec-soak-{args.seed}-"))
    try:
        report = soak(args.seed, args.bookings, work, camera=args.camera)
    except BaseException:
        print(f"soak seed {args.seed}: work directory kept at {work}", file=sys.stderr)
        raise
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(table(report))
    for failure in report["failures"]:
        print("  -", json.dumps(failure, default=str))
    print(f"report: {out}")
    if report["passed"] and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        shutil.copy(work / "up.log", out.with_suffix(".up.log"))
        print(f"work directory kept at {work} (replay: make soak SEED={args.seed} BOOKINGS={args.bookings})")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
