# syntax=docker/dockerfile:1
# firewatch production image: docs/adr/ADR-003-container-base-image.md.
#
# Both stages start from the same python:3.12-alpine, pinned by digest (the tag
# stays beside it so Dependabot can propose digest refreshes; never type a digest
# in by hand: see the ADR for how to verify and refresh it). Compilers and -dev
# packages live in the builder only; the runtime receives the finished venv.
#
#   docker build -t firewatch .
#   docker run --read-only -v firewatch-data:/data -p 8000:8000 \
#     -e FIREWATCH_DATABASE_URL=... -e FIREWATCH_REDIS_URL=... firewatch

############################ builder ############################
FROM python:3.12-alpine@sha256:236173eb74001afe2f60862de935b74fcbd00adfca247b2c27051a70a6a39a2d AS builder

SHELL ["/bin/ash", "-eo", "pipefail", "-c"]
# appuser has no home: build tools that want a cache directory get /tmp.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp

# C/C++ toolchain for scikit-learn, the one runtime dependency without a musllinux
# wheel (scripts/musl_check.py BUILT_FROM_SOURCE), and patchelf for auditwheel.
# Unpinned on purpose: Alpine drops superseded package versions from its mirrors, so
# pins would break the build on every security update; none of this reaches the
# runtime stage, which installs no package at all.
# hadolint ignore=DL3018
RUN apk add --no-cache build-base linux-headers patchelf pkgconf \
 && addgroup -g 1000 appgroup \
 && adduser -D -H -h /nonexistent -s /sbin/nologin -G appgroup -u 1000 appuser \
 && install -d -o appuser -g appgroup /opt/build /opt/venv /src /wheels

# The rest of the build needs no root (appuser:appgroup).
USER 1000:1000
WORKDIR /src

# Builder tools (meson-python, Cython, numpy, scipy, ninja, hatchling, auditwheel),
# hash-locked and binary-only, in their own venv that never leaves this stage.
COPY --chown=appuser:appgroup requirements-build.lock ./
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes --only-binary=:all: --no-deps \
      -r requirements-build.lock
# meson finds ninja and cython on PATH during the --no-build-isolation build.
ENV PATH="/opt/build/bin:${PATH}"

# Every runtime wheel, checked against requirements.lock: binary-only except
# scikit-learn, compiled from its hash-locked sdist against the build venv's numpy
# and scipy (pinned to the runtime versions), then repaired by auditwheel so
# libstdc++ and libgomp travel inside the wheel and the runtime needs no apk add.
COPY --chown=appuser:appgroup requirements.lock ./
RUN /opt/build/bin/pip wheel --require-hashes --no-deps --no-build-isolation \
      --only-binary=:all: --no-binary=scikit-learn -r requirements.lock -w /wheels/raw \
 && mkdir -p /wheels/ok \
 && for wheel in /wheels/raw/*.whl; do \
      case "$wheel" in \
        */scikit_learn-*.whl) /opt/build/bin/auditwheel repair \
          --plat "musllinux_1_2_$(uname -m)" -w /wheels/ok "$wheel" ;; \
        *) mv "$wheel" /wheels/ok/ ;; \
      esac; \
    done

# firewatch itself, as a wheel (no source tree in the image).
COPY --chown=appuser:appgroup pyproject.toml README.md ./
COPY --chown=appuser:appgroup src ./src
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation -w /wheels/ok .

# The runtime venv has no pip: the build venv's pip installs into it, then checks
# that every requirement is satisfied. Bytecode is compiled here, once, because the
# runtime filesystem is read-only.
RUN /usr/local/bin/python3 -m venv --without-pip /opt/venv \
 && /opt/build/bin/pip --python /opt/venv/bin/python install --no-index --no-deps \
      /wheels/ok/*.whl \
 && /opt/build/bin/pip --python /opt/venv/bin/python check

############################ runtime ############################
FROM python:3.12-alpine@sha256:236173eb74001afe2f60862de935b74fcbd00adfca247b2c27051a70a6a39a2d AS runtime

# CI (docker/metadata-action) adds source, revision, created and the version tag.
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="firewatch" \
      org.opencontainers.image.description="Self-hosted incident tracker for ML and data platform teams" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.12-alpine" \
      org.opencontainers.image.base.digest="sha256:236173eb74001afe2f60862de935b74fcbd00adfca247b2c27051a70a6a39a2d"

# No package step here: no package is added, and none upgraded (that would defeat
# the digest pin; a fix arrives as a new base digest). Nothing installs at run time,
# so the base image's pip (and setuptools/wheel if present) and ensurepip's bundled
# wheel go, as do the package manager binary and busybox's wget/nc applets; the
# package database under /lib/apk stays, so scanners still see every OS package.
RUN addgroup -g 1000 appgroup \
 && adduser -D -H -h /nonexistent -s /sbin/nologin -G appgroup -u 1000 appuser \
 && PIP_ROOT_USER_ACTION=ignore python -m pip uninstall --yes --quiet pip setuptools wheel \
 && rm -rf /usr/local/bin/pip /usr/local/bin/pip3 /usr/local/bin/pip3.12 \
      /usr/local/lib/python3.12/ensurepip /sbin/apk /usr/bin/wget /usr/bin/nc \
 && install -d -o appuser -g appgroup -m 0700 /data

COPY --from=builder --chown=appuser:appgroup /opt/venv /opt/venv

# All writes go to /data (mount a volume; the root filesystem can be read-only).
# Python's temporary files fall back to the working directory when /tmp is not
# writable, so /data is the working directory too.
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FIREWATCH_DATA_DIR=/data \
    FIREWATCH_HOST=0.0.0.0 \
    FIREWATCH_PORT=8000 \
    FIREWATCH_WORKERS=2 \
    FIREWATCH_LOG_FORMAT=json
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000

# Liveness with the venv's own Python (no curl in the image).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/opt/venv/bin/python", "-c", "import os, sys, urllib.request; url = 'http://127.0.0.1:' + os.environ.get('FIREWATCH_PORT', '8000') + '/healthz'; sys.exit(0 if urllib.request.urlopen(url, timeout=4).status == 200 else 1)"]

# uvicorn drains on SIGTERM; firewatch serve stops cleanly on it.
STOPSIGNAL SIGTERM
# appuser:appgroup, numerically, so Kubernetes' runAsNonRoot can verify it.
USER 1000:1000
CMD ["/opt/venv/bin/firewatch", "serve"]
