# syntax=docker/dockerfile:1
#
# govpipe worker image. Two stages:
#   build    turns the project and every dependency into wheels (compilers live here only);
#   runtime  python:3.11-slim with those wheels installed offline into /opt/venv, no build
#            tools, no pip cache, running as an unprivileged user.
#
#   docker build -t govpipe:0.1.0 .
#   docker run --rm govpipe:0.1.0 --help
#
# No secret is ever passed at build time: credentials come from the environment at run time
# (KAFKA_*, REDIS_URL, …; see DESIGN §5 and k8s/).

# --------------------------------------------------------------------------- build stage
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# Compilers only in case a dependency has no wheel for this platform (e.g. arm64);
# none of this reaches the runtime image. Unpinned on purpose: the distribution's current
# toolchain for a throwaway stage.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY pipeline ./pipeline

# The govpipe wheel plus a wheel for every runtime dependency, in /wheels.
RUN python -m pip wheel --wheel-dir /wheels .

# ------------------------------------------------------------------------- runtime stage
FROM python:3.11-slim AS runtime

LABEL org.opencontainers.image.title="govpipe" \
      org.opencontainers.image.description="Governance evidence for AI agents and non-human identities" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    FAUST_DATADIR=/var/lib/govpipe \
    GOVPIPE_WEB_HOST=0.0.0.0 \
    GOVPIPE_WEB_PORT=6066 \
    GOVPIPE_LOG_FORMAT=json

# Install from the build stage's wheels only (--no-index: no network, no compilers), into a
# venv that root owns and the runtime user cannot modify; then drop pip from the venv.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-index --find-links=/wheels govpipe \
 && /opt/venv/bin/pip uninstall -y pip \
 && groupadd --system --gid 10001 govpipe \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin govpipe \
 && mkdir -p /var/lib/govpipe \
 && chown 10001:10001 /var/lib/govpipe

# faust's table state (RocksDB / changelog offsets). Writable; in Kubernetes an emptyDir.
VOLUME ["/var/lib/govpipe"]
WORKDIR /var/lib/govpipe

# Numeric so Kubernetes can verify runAsNonRoot without resolving names.
USER 10001:10001

# faust web (liveness/readiness probes, Prometheus /metrics).
EXPOSE 6066

# Exec form: `govpipe` is PID 1 and receives SIGTERM directly; the worker stops cleanly on it.
ENTRYPOINT ["govpipe"]
CMD ["worker"]
