# EZREC: one Dockerfile, two images. Build context is the repository root:
#   docker build --target app -t ezrec/ezrec .           # api, status and worker: the command picks the service
#   docker build --target recorder -t ezrec/recorder .   # the same, plus the Raspberry Pi camera layer
#   docker build --target recorder --build-arg WITH_PICAMERA=0 -t ezrec/recorder .   # x86 / no camera
# docker-compose.yml builds both; `docker run ezrec/ezrec worker` runs one service like `ezrec worker`.
#
# No `# syntax=` line on purpose: it makes BuildKit pull a frontend image from Docker Hub, which fails on a
# machine without registry access. Without it the legacy builder (docker-compose 1.29) and BuildKit's
# built-in frontend both build this file offline, once the base image is present.
#
# Stages in this order so that the legacy builder, which builds every stage up to its target, never
# builds the camera stages for `--target app`:
#   deps -> project -> base -> app -> rpi-keyring -> recorder
# Layers, bottom up: base image, user, the dependency venv (~215 MB, changes only with the pins), then the
# camera layer (recorder only, so it is rebuilt only when the pins change too), then the project (~1 MB).
# Both images share every layer up to the venv: on the Pi it is stored and pulled once.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# Every image this file makes carries the label io.ezrec.project (the builder stages' leftovers too), so
# `make clean-images` removes exactly this project's images.

# ---- deps: exactly the pinned dependency set, in a venv without pip, trimmed ----
FROM ${PYTHON_IMAGE} AS deps
LABEL io.ezrec.project="ezrec"
# PIP_CONSTRAINT (not just -c) also pins setuptools inside pip's isolated build environment.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_CONSTRAINT=/src/requirements/constraints.txt
WORKDIR /src
COPY requirements/constraints.txt requirements/constraints.txt
COPY pyproject.toml ./
# The dependency list comes from pyproject.toml (runtime + the supabase extra), so this layer is rebuilt only
# when the pins or the dependencies change, not with every code change.
# --only-binary: every pinned dependency ships manylinux wheels for aarch64 and x86_64, so a missing wheel
# fails here in seconds instead of compiling for an hour on a Pi.
# Trimmed: the packages' own test suites, type stubs and C sources/headers (~18 MB), which nothing imports at
# run time; the import below fails the build, not the first booking, if a trim ever removes too much.
# DL3013 (pin pip versions) does not see PIP_CONSTRAINT, which pins every package installed here.
# hadolint ignore=DL3013
RUN python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
print("\n".join(p["dependencies"] + p["optional-dependencies"]["supabase"]))' > requirements/runtime.txt \
 && python -m venv --without-pip /opt/venv \
 && pip --python /opt/venv/bin/python install --only-binary=:all: -r requirements/runtime.txt \
 && site=/opt/venv/lib/python3.11/site-packages \
 && find "$site" -depth -type d -name tests -exec rm -rf {} + \
 && find "$site" -type f \( -name '*.pyi' -o -name '*.pxd' -o -name '*.pyx' -o -name '*.c' -o -name '*.h' \) -delete \
 && /opt/venv/bin/python -c 'import av, numpy, fastapi, uvicorn, paho.mqtt.client, psutil, pydantic_settings, jwt, supabase'

# ---- project: the ezrec package itself as a wheel (no dependencies: they are in the venv above) ----
FROM deps AS project
# README.m[d]: pyproject's `readme` needs it when present; the glob keeps the build working without it.
COPY README.m[d] ./
COPY shared shared
COPY services services
RUN pip wheel --no-deps --wheel-dir /dist .

# ---- base: what both images run on ----
FROM ${PYTHON_IMAGE} AS base
LABEL io.ezrec.project="ezrec"
# Same uid/gid in both images: they share the ezrec-data volume, which Docker initialises from the first
# container's /data (owned by this user).
RUN groupadd --system --gid 10001 ezrec \
 && useradd --system --uid 10001 --gid ezrec --home-dir /home/ezrec --create-home \
        --shell /usr/sbin/nologin ezrec \
 && mkdir -p /data && chown ezrec:ezrec /data
# The venv's interpreter is the base image's python3.11, identical in every stage.
COPY --from=deps /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DATA_DIR=/data
WORKDIR /home/ezrec
ENTRYPOINT ["ezrec"]

# ---- app: api, status and worker. No HEALTHCHECK here: it depends on the service the command picks, so
# docker-compose.yml sets one per service (`ezrec health <service>`). ----
FROM base AS app
LABEL org.opencontainers.image.title="ezrec" \
      org.opencontainers.image.description="EZREC court recording: api, status and video worker (ezrec <service>)"
COPY --from=project /dist/ /tmp/dist/
# The wheel only (--no-deps --no-index): its dependencies are the venv's. Compiled to .pyc now, because the
# container's user cannot write them and every start would otherwise compile the project again.
RUN pip --python /opt/venv/bin/python install --no-deps --no-index --no-cache-dir --disable-pip-version-check \
        /tmp/dist/*.whl \
 && rm -rf /tmp/dist
# By uid (numeric: the runtime can tell it is not root without reading /etc/passwd). No explicit gid: with
# one, Docker would drop the supplementary groups (the recorder's `video`).
USER 10001
# No EXPOSE: only the api listens (8000), and docker-compose.yml publishes it; on the worker and status
# containers an exposed port would only mislead `docker ps`.
CMD ["--help"]

# ---- rpi-keyring: fetch the Raspberry Pi archive key and check its fingerprint (gpg stays here) ----
FROM ${PYTHON_IMAGE} AS rpi-keyring
LABEL io.ezrec.project="ezrec"
# WITH_PICAMERA: `auto` (default) = 1 on arm64, 0 elsewhere; 1 installs python3-picamera2/libcamera from the
# Raspberry Pi apt repository, which has no amd64 packages, so x86 builds must use 0 (synthetic or V4L2
# camera only). Camera /dev nodes come from docker-compose.yml `devices` + `group_add: [video]`; the
# container is never privileged.
ARG WITH_PICAMERA=auto
# Set by BuildKit; the dpkg fallback covers the legacy builder on the Pi itself.
ARG TARGETARCH
ARG RPI_ARCHIVE_KEY_URL=https://archive.raspberrypi.com/debian/raspberrypi.gpg.key
ARG RPI_ARCHIVE_KEY_FPR=CF8A1AF502A2AA2D763BAE7E82B129927FA3303E
# pipefail: a failing gpg in the key checks below must fail the build, not feed grep/awk an empty input.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# DL3008 (pin apt versions): Debian and the Raspberry Pi archive drop superseded versions, so a pin would
# break the build within weeks; the images are rebuilt from the bookworm suite, the key fingerprint is checked.
# hadolint ignore=DL3008
RUN set -eu; \
    mkdir -p /out; \
    arch="${TARGETARCH:-$(dpkg --print-architecture)}"; \
    case "$WITH_PICAMERA" in \
      auto) if [ "$arch" = arm64 ]; then want=1; else want=0; fi ;; \
      0|1) want="$WITH_PICAMERA" ;; \
      *) echo "WITH_PICAMERA must be auto, 0 or 1 (got '$WITH_PICAMERA')" >&2; exit 1 ;; \
    esac; \
    echo "$want" > /out/with-picamera; \
    if [ "$want" = 1 ]; then \
      if [ "$arch" != arm64 ]; then \
        echo "WITH_PICAMERA=1 needs an arm64 build (the Raspberry Pi repo has no $arch packages);" \
             "build with --build-arg WITH_PICAMERA=0" >&2; \
        exit 1; \
      fi; \
      apt-get update; \
      apt-get install -y --no-install-recommends gpg; \
      python -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], "/tmp/rpi.key")' \
        "$RPI_ARCHIVE_KEY_URL"; \
      keys="$(gpg --show-keys --with-colons /tmp/rpi.key | grep -c '^pub:')"; \
      fpr="$(gpg --show-keys --with-colons /tmp/rpi.key | awk -F: '$1 == "fpr" { print $10; exit }')"; \
      if [ "$keys" != 1 ] || [ "$fpr" != "$RPI_ARCHIVE_KEY_FPR" ]; then \
        echo "Raspberry Pi archive key: expected one key $RPI_ARCHIVE_KEY_FPR, got $keys key(s), first $fpr" >&2; \
        exit 1; \
      fi; \
      gpg --dearmor < /tmp/rpi.key > /out/raspberrypi-archive-keyring.gpg; \
    fi

# ---- recorder: base + the Pi camera layer + the project ----
FROM base AS recorder
LABEL org.opencontainers.image.title="ezrec-recorder" \
      org.opencontainers.image.description="EZREC court recording: camera recorder"
# picamera2 from the Raspberry Pi repository, before the project (so code changes keep this layer).
# --no-install-recommends leaves out the Qt/OpenGL preview stack, as Raspberry Pi's docs advise for headless
# use; libcamera-ipa (the Pi's image-tuning modules) is named so it cannot be dropped. `video` (gid 44 in
# Debian and Raspberry Pi OS alike) opens the camera nodes when the image runs without compose's group_add.
COPY --from=rpi-keyring /out/ /usr/local/share/ezrec/
# How the venv sees picamera2: apt installs it for Debian's own /usr/bin/python3 (3.11) into
# /usr/lib/python3/dist-packages, which the image's python does not search. Same CPython minor version means
# the same extension ABI (cpython-311-aarch64-linux-gnu), so a .pth file in the venv appends that directory
# to sys.path *after* the venv's site-packages: our pinned wheels win where both exist (numpy, av), Debian
# supplies only what the venv lacks (picamera2, libcamera, simplejpeg, prctl, ...). numpy is pinned to 1.26
# in requirements/constraints.txt because Debian's simplejpeg is built against the numpy 1.x ABI. The import
# below fails the build, not the first booking, if that ever stops holding.
# DL3008: unpinned for the reason given in the rpi-keyring stage.
# hadolint ignore=DL3008
RUN set -eu; \
    usermod --append --groups video ezrec; \
    if [ "$(cat /usr/local/share/ezrec/with-picamera)" = 1 ]; then \
      install -m 0644 /usr/local/share/ezrec/raspberrypi-archive-keyring.gpg /usr/share/keyrings/; \
      echo "deb [arch=arm64 signed-by=/usr/share/keyrings/raspberrypi-archive-keyring.gpg]" \
           "http://archive.raspberrypi.com/debian bookworm main" > /etc/apt/sources.list.d/raspi.list; \
      apt-get update; \
      apt-get install -y --no-install-recommends python3-picamera2 python3-libcamera libcamera-ipa; \
      rm -rf /var/lib/apt/lists/*; \
      echo /usr/lib/python3/dist-packages > /opt/venv/lib/python3.11/site-packages/zz_debian_dist_packages.pth; \
      /opt/venv/bin/python -c 'import numpy, simplejpeg, libcamera, picamera2; print("picamera2 OK, numpy", numpy.__version__)'; \
    fi
COPY --from=project /dist/ /tmp/dist/
# As in the app stage.
RUN pip --python /opt/venv/bin/python install --no-deps --no-index --no-cache-dir --disable-pip-version-check \
        /tmp/dist/*.whl \
 && rm -rf /tmp/dist
USER 10001
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["ezrec", "health", "recorder"]
CMD ["recorder"]
