#!/usr/bin/env bash
# `make test-containers`: a Docker engine that answers, and the base images the compose stack builds on.
#  1. a daemon already answering `docker info` is used as it is (Docker Desktop, a systemd docker.service);
#  2. otherwise docker.io is installed from Debian if missing (scripts/system-deps.sh) and dockerd started
#     (systemd if it runs, else in the background, logging to $DOCKERD_LOG);
#  3. each base image (the Dockerfile's PYTHON_IMAGE, the compose file's eclipse-mosquitto) that is not
#     present is pulled; where the registry cannot be reached, the container lab builds local stand-ins
#     under the same names: $EZREC_CONTAINER_LAB, else ../shared/container-lab beside this checkout (they
#     differ from the official images: for tests only, never for a court).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dockerd_log="${DOCKERD_LOG:-/var/log/dockerd.log}"
say() { printf '[ensure-docker] %s\n' "$*"; }
die() { printf '[ensure-docker] ERROR: %s\n' "$*" >&2; exit 1; }

# ---- 1-2. the engine ----
if ! docker info >/dev/null 2>&1; then
  "$root/scripts/system-deps.sh" docker docker-compose
  [ "$(id -u)" = 0 ] || die "no Docker daemon answers and starting one needs root: start Docker, then re-run"
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    say "starting docker.service"
    systemctl start docker
  else
    say "starting dockerd in the background (log: $dockerd_log)"
    setsid nohup dockerd >"$dockerd_log" 2>&1 </dev/null &
  fi
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || die "dockerd does not answer after 60 s; see $dockerd_log"
else
  "$root/scripts/system-deps.sh" docker-compose
fi
say "Docker $(docker version --format '{{.Server.Version}}') answers"

# ---- 3. the base images ----
python_image="$(sed -n 's/^ARG PYTHON_IMAGE=//p' "$root/Dockerfile" | head -n 1)"
mosquitto_image="$(sed -n 's/^ *image: \(eclipse-mosquitto:[^ ]*\)$/\1/p' "$root/docker-compose.yml" | head -n 1)"
[ -n "$python_image" ] && [ -n "$mosquitto_image" ] || die "cannot read the base image names from Dockerfile / docker-compose.yml"
missing=()
for image in "$python_image" "$mosquitto_image"; do
  if docker image inspect "$image" >/dev/null 2>&1; then continue; fi
  say "pulling $image"
  if timeout 300 docker pull -q "$image" >/dev/null 2>&1; then continue; fi
  missing+=("$image")
done
[ ${#missing[@]} -eq 0 ] && { say "base images present: $python_image, $mosquitto_image"; exit 0; }

lab="${EZREC_CONTAINER_LAB:-$root/../shared/container-lab}"
if [ ! -x "$lab/setup.sh" ]; then
  die "cannot pull ${missing[*]} (no registry reachable?) and no container lab to build local stand-ins:
  looked for \$EZREC_CONTAINER_LAB${EZREC_CONTAINER_LAB:+ ($EZREC_CONTAINER_LAB)} and $root/../shared/container-lab/setup.sh.
  Pull the images on a machine with registry access (docker save | docker load), or point EZREC_CONTAINER_LAB at the lab."
fi
say "cannot pull ${missing[*]}: building local stand-ins with $lab/setup.sh (tests only)"
"$lab/setup.sh"
for image in "${missing[@]}"; do
  docker image inspect "$image" >/dev/null 2>&1 || die "$lab/setup.sh did not provide $image"
done
