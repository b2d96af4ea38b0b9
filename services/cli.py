"""The `ezrec` command: one subcommand per service, plus `up`, `health`, `process` and set-up helpers."""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from shared.logs import setup_logging

if TYPE_CHECKING:
    from shared.models import LogoPlacement
    from shared.settings import Settings


SERVICE_COMMANDS = ("api", "recorder", "worker", "status")


def _settings() -> Settings:
    # Imported here, not at the top: `ezrec health` (every container's healthcheck) must not load pydantic.
    from shared.settings import Settings

    return Settings()


def cmd_api(_args: argparse.Namespace) -> int:
    from services.api.server import run

    settings = _settings()
    if settings.api_token is None:
        print("API_TOKEN is not set: run `make run` (or `ezrec init-env`) to create one.", file=sys.stderr)
        return 2
    return run(settings)


def cmd_recorder(_args: argparse.Namespace) -> int:
    from services.recorder.main import run

    return run(_settings())


def cmd_worker(_args: argparse.Namespace) -> int:
    from services.video_worker.main import run

    return run(_settings())


def cmd_status(_args: argparse.Namespace) -> int:
    from services.status.main import run

    return run(_settings())


def cmd_up(_args: argparse.Namespace) -> int:
    from services.supervisor import supervise

    settings = _settings()
    if settings.api_token is None:
        print("API_TOKEN is not set: run `make run` (or `ezrec init-env`) to create one.", file=sys.stderr)
        return 2
    setup_logging("up", settings.log_level, settings.secret_values())
    return supervise()


def cmd_health(args: argparse.Namespace) -> int:
    """Exit 0 when healthy: what container healthchecks and `make` call (shared/health.py, stdlib only)."""
    from shared.health import main as health_main

    return health_main([args.service])


def _same_file(a: Path, b: Path) -> bool:
    """Also through another path, a symlink or a hard link (same device and inode)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): not the same file
        return False


def _unreadable(path: Path) -> str | None:
    """Why `path` cannot be read as a media file (None: it can be opened and is not empty)."""
    try:
        with open(path, "rb") as fh:
            if not fh.read(1):
                return "empty file"
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


_CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


def _logo_arg(value: str) -> tuple[Path, LogoPlacement | None]:
    """`FILE[:corner[:width_fraction]]` -> (file, LogoPlacement or None). A file that exists is taken whole,
    so a name with a colon in it still works; otherwise the corner and width are read off the end."""
    from pydantic import ValidationError

    from shared.models import LogoPlacement

    parts = value.split(":")
    if Path(value).exists() or len(parts) == 1:
        return Path(value), None
    if len(parts) >= 3 and parts[-2] in _CORNERS:
        file, corner, width = ":".join(parts[:-2]), parts[-2], parts[-1]
    elif parts[-1] in _CORNERS:
        file, corner, width = ":".join(parts[:-1]), parts[-1], None
    else:
        bad = parts[-2] if len(parts) >= 3 and _is_number(parts[-1]) else parts[-1]
        raise argparse.ArgumentTypeError(f"{value}: unknown corner {bad!r} (one of {', '.join(_CORNERS)})")
    if not file:
        raise argparse.ArgumentTypeError(f"{value}: no file before the corner")
    try:
        placement = LogoPlacement(corner=corner, **({} if width is None else {"width_fraction": width}))
    except ValidationError as exc:
        reason = "; ".join(e["msg"] for e in exc.errors())
        raise argparse.ArgumentTypeError(f"{value}: width_fraction {width!r}: {reason}") from exc
    return Path(file), placement


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def cmd_process(args: argparse.Namespace) -> int:
    """One-shot: refuses an output that is one of its inputs, and fails (nothing written) on an intro or
    logo it cannot use, unless --allow-missing-media asks for the video without it."""
    from services.video_worker.media.intro_cache import IntroCache
    from services.video_worker.media.process import EncodeSettings, RecordingUnreadable, process_video
    from shared.atomic import fsync_dir
    from shared.logo_layout import place_logos

    setup_logging("process", "INFO")
    raw, output = Path(args.input), Path(args.output)
    media = [("intro", Path(args.intro))] if args.intro else []
    media += [("logo", path) for path, _ in args.logo or []]
    corners = [p.corner for _, p in args.logo or [] if p is not None]
    if len(set(corners)) < len(corners):
        print(f"two logos placed in one corner ({', '.join(corners)}): each needs a corner of its own",
              file=sys.stderr)
        return 2
    for kind, path in [("input", raw), *media]:
        if _same_file(output, path):
            print(f"refusing to write {output}: it is the {kind} {path}", file=sys.stderr)
            return 2
    if not args.allow_missing_media:
        for kind, path in media:
            if (problem := _unreadable(path)) is not None:
                print(f"{kind} {path}: {problem}; nothing made (--allow-missing-media makes the video without it)",
                      file=sys.stderr)
                return 1
    logos = place_logos(args.logo or [], lambda path: path)
    encode = EncodeSettings(codec=args.codec, preset=args.preset, crf=args.crf,
                            bitrate=args.bitrate, threads=args.threads)
    cache = IntroCache(Path(args.intro_cache)) if args.intro_cache else None
    # Unless a missing intro or logo is allowed, the video is made beside the output and takes its name
    # only once the pipeline reports every medium used (it turns an undecodable one into a warning).
    staged = media and not args.allow_missing_media
    if staged:
        output.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".staged.mp4", dir=output.parent)
        os.close(fd)
    target = Path(name) if staged else output
    try:
        result = process_video(raw, target, intro=Path(args.intro) if args.intro else None,
                               logos=logos, encode=encode, intro_cache=cache, frame_threads=True)
        unusable = [w for w in result.warnings if w.startswith(("intro", "logo"))]  # named by their element
        if staged and unusable:
            print(f"{'; '.join(unusable)}\nnothing made (--allow-missing-media makes the video without it)",
                  file=sys.stderr)
            return 1
        if staged:
            os.replace(target, output)
            fsync_dir(output.parent)
    except RecordingUnreadable as exc:
        print(f"cannot read {args.input}: {exc}", file=sys.stderr)
        return 1
    finally:
        if staged:
            target.unlink(missing_ok=True)
    print(json.dumps({"output": str(output), "frames": result.frames, "duration_s": result.duration_s,
                      "intro_frames": result.intro_frames, "intro_cached": result.intro_cached,
                      "elapsed_s": round(result.elapsed_s, 3), "warnings": result.warnings}))
    return 0


def cmd_init_env(args: argparse.Namespace) -> int:
    """First run: give the API a random token; never overwrite one that exists."""
    path = Path(args.env_file)
    text = path.read_text() if path.exists() else ""
    if any(line.startswith("API_TOKEN=") and line.strip() != "API_TOKEN=" for line in text.splitlines()):
        print(f"{path} already has an API_TOKEN (unchanged)")
        return 0
    from shared.atomic import write_text_atomic

    token = secrets.token_urlsafe(32)
    body = (text if text.endswith("\n") or not text else text + "\n") + f"API_TOKEN={token}\n"
    write_text_atomic(path, body, mode=0o600)
    print(f"wrote a new API_TOKEN to {path}:\n\n    {token}\n\nuse it as: Authorization: Bearer <token>")
    return 0


def cmd_operator(args: argparse.Namespace) -> int:
    """`ezrec outbox ...` and `ezrec device ...`: clients of this device's API (services/operator.py)."""
    from services.operator import default_api_url, run

    settings = _settings()
    url = args.api or os.environ.get("EZREC_API_URL") or default_api_url(settings.api_host, settings.api_port)
    token = args.token or (settings.api_token.get_secret_value() if settings.api_token else None)
    return run(args, url, token)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ezrec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, text in (
        ("api", cmd_api, "run the HTTP API"),
        ("recorder", cmd_recorder, "run the recorder"),
        ("worker", cmd_worker, "run the video worker"),
        ("status", cmd_status, "run the status service"),
        ("up", cmd_up, "run all four services locally and supervise them"),
    ):
        sub.add_parser(name, help=text).set_defaults(func=func)
    health = sub.add_parser("health", help="exit 0 if a service is healthy")
    health.add_argument("service", choices=["api", "recorder", "worker", "status"])
    health.set_defaults(func=cmd_health)
    process = sub.add_parser("process", help="make a finished video from a recording, once")
    process.add_argument("input")
    process.add_argument("-o", "--output", required=True)
    process.add_argument("--intro")
    process.add_argument("--logo", action="extend", nargs="+", metavar="FILE[:CORNER[:WIDTH]]", type=_logo_arg,
                         help="PNG with alpha: the user's logo, then up to three sponsor logos. CORNER: top-left, "
                         "top-right, bottom-left or bottom-right; WIDTH: fraction of the video's width, 0.02..0.5 "
                         "(default 0.15; margin 0.02). Without a corner: the first free one of top-right, "
                         "top-left, bottom-right, bottom-left")
    process.add_argument("--codec", default="libx264")
    process.add_argument("--preset", default="veryfast")
    process.add_argument("--crf", type=int, default=23)
    process.add_argument("--bitrate", type=int, default=None, help="bits per second (overrides --crf)")
    process.add_argument("--threads", type=int, default=0)
    process.add_argument("--intro-cache", metavar="DIR",
                         help="keep the intro prepared for this output here and reuse it (default: prepare it anew)")
    process.add_argument("--allow-missing-media", action="store_true",
                         help="make the video without an --intro or --logo that cannot be used (default: exit 1)")
    process.set_defaults(func=cmd_process)
    from services.operator import add_parsers

    add_parsers(sub)
    for name in ("outbox", "device"):
        sub.choices[name].set_defaults(func=cmd_operator)
    init_env = sub.add_parser("init-env", help="create .env with a random API_TOKEN if it has none")
    init_env.add_argument("--env-file", default=".env")
    init_env.set_defaults(func=cmd_init_env)
    # `passwords` parses its own options (services/deploy/passwords.py); listed here for --help only.
    sub.add_parser("passwords", help="generate broker passwords and .env for docker compose", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["passwords"]:
        from services.deploy.passwords import main as passwords_main

        return passwords_main(argv[1:])
    if argv[:1] == ["health"]:  # before argparse and the settings: it runs every 10 s in every container
        from shared.health import main as health_main

        return health_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args) or 0)
    except KeyboardInterrupt:
        logging.getLogger(__name__).info("interrupted")
        return 130
    if args.command in SERVICE_COMMANDS:  # a service the operator restarted says so to its supervisor
        from shared.runtime import exit_code

        return exit_code(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
