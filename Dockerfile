# syntax=docker/dockerfile:1
# The tracker image: one image for every tracker process. The subcommand
# (collector, worker, serve, simulate) is the container's command, given by
# docker-compose.yml; settings come from TRACKER_* environment variables.
#
#   docker build -t tracker:local .
#   docker run --rm tracker:local collector --help

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build

# faust-streaming publishes no arm64 wheel: its sdist compiles Cython speedups
# (and silently falls back to pure Python without a compiler). The compiler
# stays in this stage; the runtime image gets only the virtualenv.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/tracker/bin:$PATH
RUN python -m venv /opt/tracker

# Dependencies first, from pyproject.toml alone, so that a code change does
# not reinstall them. Runtime dependencies only, no [test] extras, but those of the
# optional extras named: docker build --build-arg EXTRAS=aws (AWS MSK's IAM login).
ARG EXTRAS=""
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import os, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + [d for e in os.environ['EXTRAS'].split(',') if e for d in p['optional-dependencies'][e]]))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# .dockerignore lets in only what the package is built from.
COPY . ./
RUN pip install --no-deps . \
    && tracker --help > /dev/null \
    && python -I -c "import collector.app, tracker.export.server, tracker.stream.app"


FROM ${PYTHON_IMAGE}

RUN groupadd --gid 10001 tracker \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /var/lib/tracker \
        --shell /usr/sbin/nologin tracker

COPY --from=build /opt/tracker /opt/tracker

ENV PATH=/opt/tracker/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TRACKER_LOG_FORMAT=json

# Faust writes its data directory ("<app id>-data") into the working directory:
# it must be writable by the unprivileged user.
WORKDIR /var/lib/tracker
USER 10001:10001

# collector, exporter (/metrics, /v1/kpis), worker health endpoint. The worker
# binds its health endpoint to 127.0.0.1 (not a setting yet), so 6066 answers
# inside the container only: it serves the compose healthcheck.
EXPOSE 8080 9108 6066 9110

ENTRYPOINT ["tracker"]
CMD ["--help"]
