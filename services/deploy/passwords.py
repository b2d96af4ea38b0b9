"""Generate the broker credentials and API token for a deployment (`ezrec passwords`).

`.env` is the source of truth: missing or empty secrets are generated and appended, existing ones are
kept unless `--force`. `mosquitto/passwd` is then re-derived from the `.env` values on every run, so the
two can never disagree. The hashes are computed here, byte-compatible with what mosquitto 2.x's
`mosquitto_passwd` writes, so a fresh Pi needs no mosquitto tools on the host. Standard library only
(plus shared.atomic): `python3 -m services.deploy.passwords` works from a fresh clone before any install.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import re
import secrets
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shared.atomic import write_text_atomic

SERVICES: tuple[str, ...] = ("api", "recorder", "worker", "status")
# `healthcheck` only reads $SYS/broker/uptime: the broker container's healthcheck logs in with it, so
# that container never holds a service's password.
BROKER_USERS: tuple[str, ...] = (*SERVICES, "healthcheck")
API_TOKEN_KEY = "API_TOKEN"
PASSWD_RELPATH = Path("mosquitto") / "passwd"
ENV_RELPATH = Path(".env")
SECRET_MODE = 0o600

# mosquitto 2.0.x `mosquitto_passwd` defaults: PBKDF2-HMAC-SHA512, 101 iterations, 12-byte salt,
# written as `user:$7$<iterations>$<b64 salt>$<b64 hash>`. The secrets are 256-bit random, so the low
# iteration count costs nothing in strength and keeps each broker login cheap on a Pi.
MOSQUITTO_ITERATIONS = 101
MOSQUITTO_SALT_BYTES = 12
_HASH_RE = re.compile(r"^\$7\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$")
_ENV_LINE_RE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$")
_PASSWORD_KEY_RE = re.compile(r"^MQTT_PASSWORD_([A-Z0-9_]+)$")


def env_key_for(user: str) -> str:
    """`.env` variable holding a broker user's password (read by docker-compose.yml)."""
    return f"MQTT_PASSWORD_{user.upper()}"


def broker_users(env: Mapping[str, str]) -> list[str]:
    """The five built-in users plus one per extra `MQTT_PASSWORD_<NAME>` key already in `.env`.

    Adding e.g. `MQTT_PASSWORD_HOMEASSISTANT=` (empty) and re-running gives Home Assistant a login
    without hand-editing the password file, which this command rewrites on every run.
    """
    extra = sorted(m.group(1).lower() for key in env if (m := _PASSWORD_KEY_RE.match(key)))
    return [*BROKER_USERS, *(user for user in extra if user not in BROKER_USERS)]


def generate_secret() -> str:
    """256 random bits, URL-safe: no quoting needed in `.env` and no `$` for compose to interpolate."""
    return secrets.token_urlsafe(32)


def mosquitto_hash(password: str, salt: bytes | None = None, iterations: int = MOSQUITTO_ITERATIONS) -> str:
    """Hash `password` into mosquitto's `$7$` (PBKDF2-SHA512) password-file format."""
    salt = secrets.token_bytes(MOSQUITTO_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def mosquitto_verify(password: str, encoded: str) -> bool:
    """Check `password` against a `$7$` hash, as the broker does at CONNECT."""
    match = _HASH_RE.match(encoded)
    if match is None:
        return False
    iterations, salt_b64, hash_b64 = match.groups()
    salt, expected = base64.b64decode(salt_b64), base64.b64decode(hash_b64)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, int(iterations))
    return hmac.compare_digest(digest, expected)


def render_passwd(passwords: Mapping[str, str]) -> str:
    """The whole password file, one `user:hash` line per broker user, in a stable order."""
    return "".join(f"{user}:{mosquitto_hash(pw)}\n" for user, pw in passwords.items())


def parse_env(text: str) -> dict[str, str]:
    """`KEY=VALUE` pairs of a dotenv file (comments, `export` and simple quotes handled)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = _ENV_LINE_RE.match(line)
        if match is None or line.lstrip().startswith("#"):
            continue
        key, raw = match.group(1), match.group(2).strip()
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
            raw = raw[1:-1]
        elif " #" in raw:
            raw = raw.split(" #", 1)[0].rstrip()
        values[key] = raw
    return values


@dataclass
class EnvUpdate:
    """Result of merging secrets into `.env`: the new text and which keys were generated or kept."""

    text: str
    values: dict[str, str]
    generated: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def merge_env(existing: str, keys: Sequence[str], force: bool) -> EnvUpdate:
    """Fill `keys` into the dotenv text `existing`, keeping every other line as it was.

    A key that is absent or empty gets a fresh secret; a key with a value keeps it unless `force`.
    Replaced keys are rewritten in place so the operator's layout and comments survive.
    """
    current = parse_env(existing)
    update = EnvUpdate(text="", values={})
    for key in keys:
        if current.get(key) and not force:
            update.values[key] = current[key]
            update.kept.append(key)
        else:
            update.values[key] = generate_secret()
            update.generated.append(key)

    out: list[str] = []
    placed: set[str] = set()
    for line in existing.splitlines():
        match = _ENV_LINE_RE.match(line)
        key = match.group(1) if match and not line.lstrip().startswith("#") else None
        if key in update.generated:
            if key in placed:  # a duplicate definition would shadow ours in some parsers: drop it
                continue
            out.append(f"{key}={update.values[key]}")
            placed.add(key)
        else:
            out.append(line)
    missing = [key for key in update.generated if key not in placed]
    if missing:
        if out and out[-1].strip():
            out.append("")
        out.append("# Secrets generated by `ezrec passwords`; mosquitto/passwd is derived from these.")
        out.extend(f"{key}={update.values[key]}" for key in missing)
    update.text = "\n".join(out) + "\n"
    return update


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ezrec passwords",
        description="Generate MQTT passwords for the four services and the API token; write .env and "
        "mosquitto/passwd (mode 0600).",
    )
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root (default: cwd)")
    parser.add_argument("--force", action="store_true", help="replace secrets already present in .env")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point for `ezrec passwords`; returns a process exit code."""
    args = _build_parser().parse_args(argv)
    root: Path = args.root.resolve()
    env_path, passwd_path = root / ENV_RELPATH, root / PASSWD_RELPATH
    try:
        existing = env_path.read_text(encoding="utf-8") if env_path.exists() else ""
    except OSError as exc:
        print(f"ezrec passwords: cannot read {env_path}: {exc}", file=sys.stderr)
        return 1

    users = broker_users(parse_env(existing))
    keys = [env_key_for(user) for user in users] + [API_TOKEN_KEY]
    update = merge_env(existing, keys, force=args.force)
    passwords = {user: update.values[env_key_for(user)] for user in users}
    try:
        if update.generated or not env_path.exists():
            write_text_atomic(env_path, update.text, mode=SECRET_MODE)
        else:
            env_path.chmod(SECRET_MODE)  # nothing new, but a secret file must not stay world-readable
        write_text_atomic(passwd_path, render_passwd(passwords), mode=SECRET_MODE)
    except OSError as exc:
        print(f"ezrec passwords: cannot write secrets: {exc}", file=sys.stderr)
        return 1

    if update.generated:
        print(f"wrote {env_path}: generated {', '.join(update.generated)}")
    if update.kept:
        print(f"kept existing values in {env_path}: {', '.join(update.kept)} (use --force to replace)")
    print(f"wrote {passwd_path}: {len(passwords)} broker users ({', '.join(passwords)})")
    if API_TOKEN_KEY in update.generated:
        # The only secret ever printed, and only when it is new: the operator needs it for API clients.
        print(f"API token (shown once, also stored in .env): {update.values[API_TOKEN_KEY]}")
    if update.generated:
        print("containers read secrets only at start; apply with: docker compose up -d --force-recreate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
