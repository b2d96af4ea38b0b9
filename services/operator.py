"""`ezrec outbox` and `ezrec device`: the operator's commands, as clients of this device's API.

Through the API, not around it: it holds the auth (API_TOKEN), it is the only sender of service commands the
broker accepts, and it logs and publishes every action; so the CLI, the dashboard and curl do exactly the same.
Standard library only (urllib): it runs in every container image and on a bare venv.

Exit codes: 0 done; 1 the action was refused or did not succeed (no cloud outbox, refused again, not
confirmed); 3 the API could not be reached or refused the token.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from typing import Any, TextIO

DEFAULT_TIMEOUT_S = 45.0  # a replay waits up to 30 s for the cloud's answer


class ApiError(Exception):
    def __init__(self, message: str, code: int = 1, status: int | None = None) -> None:
        super().__init__(message)
        self.code, self.status = code, status


class Api:
    def __init__(self, base_url: str, token: str, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.base_url, self.token, self.timeout = base_url.rstrip("/"), token, timeout

    def call(self, method: str, path: str, body: Any = None, **query: object) -> Any:
        url = f"{self.base_url}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Accept": "application/json",
            **({"Content-Type": "application/json"} if data is not None else {})})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - our own API
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = _detail(exc.read())
            if exc.code == 401:
                raise ApiError(f"the API at {self.base_url} refused the token: check API_TOKEN (or --token)", 3,
                               401) from exc
            raise ApiError(detail or f"HTTP {exc.code}", 1, exc.code) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(f"cannot reach the API at {self.base_url} ({reason}): is `ezrec api` (or `ezrec up`) "
                           "running? Another address: --api URL", 3) from exc


def _detail(raw: bytes) -> str:
    try:
        detail = json.loads(raw).get("detail")
    except (ValueError, AttributeError):
        return raw.decode(errors="replace")[:500]
    return detail if isinstance(detail, str) else json.dumps(detail)


def default_api_url(host: str, port: int) -> str:
    """This device's API as a local client reaches it: a wildcard listen address means loopback."""
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _when(iso: str | None) -> str:
    if not iso:
        return "-"
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S UTC")


# ---- ezrec outbox ---------------------------------------------------------------------------------------


def _op_line(op: dict[str, Any]) -> str:
    booking = op["booking"]["id"] if op.get("booking") else op["key"]
    indent = "  " if op["state"] == "held" else ""
    line = f"{indent}{op['id']:>6}  {op['state']:<8}  {_age(op['age_s']):>7}  {booking}: {op['what']}"
    if op["state"] != "held" and op.get("error"):
        line += f"\n{indent}        error: {op['error']}"
    return line


def outbox_list(api: Api, out: TextIO, as_json: bool) -> int:
    view = api.call("GET", "/outbox")
    if as_json:
        out.write(json.dumps(view, indent=2) + "\n")
        return 0
    out.write(f"{view['refused']} refused write(s), {view['held']} held back behind them, "
              f"{view['pending'] - view['held']} on their way to the cloud\n")
    if view["ops"]:
        out.write(f"{'ID':>6}  {'STATE':<8}  {'AGE':>7}  BOOKING: WHAT\n")
        for op in view["ops"]:
            out.write(_op_line(op) + "\n")
        if view.get("not_listed"):
            out.write(f"({view['not_listed']} older refused status row(s) not listed: each supersedes the last)\n")
        if view["refused"]:
            out.write("\nReplay a refused write once its cause is fixed (`ezrec outbox replay ID`), or drop it "
                      "(`ezrec outbox drop ID`: `ezrec outbox show ID` says what the booking loses).\n")
    for fault in view["faults"]:
        out.write(f"fault: {fault['message']}\n")
    for dropped in view["dropped"][:5]:
        out.write(f"dropped {_when(dropped['dropped_at'])}: {dropped['id']} {dropped['what']}\n")
    return 0


def _show(op: dict[str, Any], out: TextIO) -> None:
    out.write(f"operation {op['id']}: {op['what']}\n")
    out.write(f"  state:    {op['state']}" + (f" (behind refused operation {op['held_by']})" if op.get("held_by")
                                               else "") + "\n")
    out.write(f"  kind:     {op['kind']} (key {op['key']})\n")
    if op.get("booking"):
        b = op["booking"]
        out.write(f"  booking:  {b['id']} of {b['user_id']}, {_when(b['start_time'])}, status {b['status']} here\n")
    out.write(f"  queued:   {_when(op['created_at'])}, {op['attempts']} attempt(s)\n")
    if op.get("failed_at"):
        out.write(f"  refused:  {_when(op['failed_at'])} ({_age(op['age_s'])} ago)\n")
    if op.get("error"):
        out.write(f"  error:    {op['error']}\n")
    if op.get("holds"):
        out.write(f"  holds back {len(op['holds'])} later write(s):\n")
        for held in op["holds"]:
            out.write(f"    {held['id']:>6}  {held['what']}\n")
    if op.get("if_dropped"):
        out.write(f"  if dropped: {op['if_dropped']}\n")


def outbox_show(api: Api, op_id: int, out: TextIO, as_json: bool) -> int:
    op = api.call("GET", f"/outbox/{op_id}")
    if as_json:
        out.write(json.dumps(op, indent=2) + "\n")
    else:
        _show(op, out)
        if op.get("payload") is not None:
            out.write(f"  write:    {json.dumps(op['payload'], sort_keys=True)}\n")
    return 0


def outbox_replay(api: Api, op_id: int, wait_s: float, out: TextIO, as_json: bool) -> int:
    result = api.call("POST", f"/outbox/{op_id}/replay", wait_s=wait_s)
    if as_json:
        out.write(json.dumps(result, indent=2) + "\n")
    else:
        out.write(f"{result['outcome']}: {result['detail']}\n")
    return 0 if result["outcome"] == "applied" else 1


def outbox_drop(api: Api, op_id: int, yes: bool, out: TextIO, ask: TextIO, as_json: bool) -> int:
    op = api.call("GET", f"/outbox/{op_id}")
    if op["state"] != "refused":
        out.write(f"operation {op_id} is {op['state']}, not refused: only a refused write can be dropped"
                  + (f" (it waits behind operation {op['held_by']})" if op.get("held_by") else "") + "\n")
        return 1
    if not yes:
        _show(op, out)
        out.write(f"\nDrop operation {op_id} for good? The cloud will never get it. [y/N] ")
        out.flush()
        answer = ask.readline().strip().lower()
        if answer not in ("y", "yes"):
            out.write("\nnot dropped (answer y to drop; --yes in scripts)\n")
            return 1
    result = api.call("DELETE", f"/outbox/{op_id}")
    if as_json:
        out.write(json.dumps(result, indent=2) + "\n")
    else:
        out.write(f"dropped operation {op_id}: {result['what']}\n{result['lost']}\n")
    return 0


# ---- ezrec device ---------------------------------------------------------------------------------------


def device_services(api: Api, out: TextIO, as_json: bool) -> int:
    services = api.call("GET", "/device/services")
    if as_json:
        out.write(json.dumps(services, indent=2) + "\n")
        return 0
    for s in services:
        name = s["service"] + (f"/{s['instance']}" if s.get("instance") else "")
        pid = f"pid {s['pid']}" if s.get("pid") else "no fresh heartbeat"
        records = s["records"]
        errors = sum(1 for r in records if r["level"] != "WARNING")
        out.write(f"{name:<16} {s['availability']:<8} {pid:<20} {len(records)} recent warning(s)/error(s)"
                  + (f", {errors} error(s)" if errors else "") + "\n")
        if records:
            last = records[-1]
            out.write(f"{'':<16} last: {_when(last['at'])} {last['level']} {last['message']}\n")
    return 0


def device_logs(api: Api, service: str | None, count: int, out: TextIO, as_json: bool) -> int:
    services = [s for s in api.call("GET", "/device/services") if service in (None, s["service"])]
    if as_json:
        out.write(json.dumps(services, indent=2) + "\n")
        return 0
    for s in services:
        name = s["service"] + (f"/{s['instance']}" if s.get("instance") else "")
        records = s["records"][-count:] if count else s["records"]
        out.write(f"== {name} ({s['availability']}): {len(s['records'])} record(s)\n")
        for r in records:
            out.write(f"{_when(r['at'])} {r['level']:<8} {r['logger']}: {r['message']}\n")
    return 0


def device_restart(api: Api, service: str, reason: str | None, out: TextIO, as_json: bool) -> int:
    result = api.call("POST", f"/device/services/{service}/restart", {"reason": reason} if reason else None)
    if as_json:
        out.write(json.dumps(result, indent=2) + "\n")
    else:
        outcome = result["ack"]["outcome"] if result.get("ack") else "no answer"
        out.write(f"{service}: {outcome}: {result['message']}\n")
    return 0 if result.get("ack") and result["ack"]["outcome"] == "accepted" else 1


def device_snapshot(api: Api, out: TextIO, as_json: bool) -> int:
    result = api.call("POST", "/device/status/snapshot")
    if as_json:
        out.write(json.dumps(result, indent=2) + "\n")
        return 0 if result.get("snapshot") else 1
    snapshot = result.get("snapshot")
    if not snapshot:
        out.write(f"no snapshot: {result['message']}\n")
        return 1
    services = ", ".join(f"{k} {v}" for k, v in sorted(snapshot.get("services", {}).items()))
    out.write(f"snapshot collected {_when(snapshot['collected_at'])}: cpu {snapshot['cpu_percent']:.0f} %, disk free "
              f"{snapshot['disk_free_gb']:.1f} GB, recording {snapshot.get('recording_now') or 'nothing'}; "
              f"{services}\n")
    if snapshot.get("alerts_active"):
        out.write(f"alerts: {', '.join(snapshot['alerts_active'])}\n")
    return 0


# ---- wiring -----------------------------------------------------------------------------------------------


def add_parsers(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--api", metavar="URL", help="the device's API (default: http://127.0.0.1:API_PORT)")
    common.add_argument("--token", help="API_TOKEN (default: from the environment or .env)")
    common.add_argument("--json", action="store_true", help="print the API's JSON answer")

    outbox = sub.add_parser("outbox", help="cloud writes that have not gone through: list, show, replay, drop")
    actions = outbox.add_subparsers(dest="outbox_action", required=True)
    actions.add_parser("list", parents=[common], help="refused writes, the writes they hold back, retries")
    for name, text in (("show", "one operation: its error, what it holds back, what dropping it costs"),
                       ("replay", "retry a refused write once its cause is fixed"),
                       ("drop", "give a refused write up for good (asks first; says what the booking loses)")):
        action = actions.add_parser(name, parents=[common], help=text)
        action.add_argument("id", type=int, help="the outbox operation id (from `ezrec outbox list`)")
        if name == "replay":
            action.add_argument("--wait", type=float, default=10.0, metavar="S",
                                help="seconds to wait for the cloud's answer (default 10, at most 30)")
        if name == "drop":
            action.add_argument("--yes", "-y", action="store_true", help="do not ask (scripts)")

    device = sub.add_parser("device", help="the services: recent warnings, restart one, a status snapshot now")
    actions = device.add_subparsers(dest="device_action", required=True)
    actions.add_parser("services", parents=[common], help="each service's availability and recent warnings")
    logs = actions.add_parser("logs", parents=[common], help="the services' recent warnings and errors")
    logs.add_argument("service", nargs="?", choices=["api", "recorder", "worker", "status"])
    logs.add_argument("-n", type=int, default=0, metavar="N", help="only the last N of each (default: all, <= 50)")
    restart = actions.add_parser("restart", parents=[common], help="restart one service (it stops cleanly and is "
                                 "started again by `ezrec up` or Docker)")
    restart.add_argument("service", choices=["api", "recorder", "worker", "status"])
    restart.add_argument("--reason", help="noted in the service's log and the operator's event")
    actions.add_parser("snapshot", parents=[common], help="collect and publish a status snapshot now")


def run(args: argparse.Namespace, api_url: str, token: str | None, out: TextIO = sys.stdout,
        ask: TextIO = sys.stdin) -> int:
    if not token:
        sys.stderr.write("no API token: set API_TOKEN (in .env or the environment) or pass --token\n")
        return 3
    api = Api(api_url, token)
    try:
        if args.command == "outbox":
            action = args.outbox_action
            if action == "list":
                return outbox_list(api, out, args.json)
            if action == "show":
                return outbox_show(api, args.id, out, args.json)
            if action == "replay":
                return outbox_replay(api, args.id, args.wait, out, args.json)
            return outbox_drop(api, args.id, args.yes, out, ask, args.json)
        action = args.device_action
        if action == "services":
            return device_services(api, out, args.json)
        if action == "logs":
            return device_logs(api, args.service, args.n, out, args.json)
        if action == "restart":
            return device_restart(api, args.service, args.reason, out, args.json)
        return device_snapshot(api, out, args.json)
    except ApiError as exc:
        sys.stderr.write(f"{exc}\n")
        return exc.code
