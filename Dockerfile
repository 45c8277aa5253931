# Switchboard's processes: `switchboard worker`, `switchboard web SERVICE` (or `web all`).
# Built by docker-compose.yml; every service there runs this one image with its own command.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/switchboard
WORKDIR /src
# The locked, hash-checked dependencies first (their own layer, rebuilt only when the lock
# changes), then Switchboard alone, built by the locked setuptools.
COPY requirements/runtime.lock requirements/
RUN /opt/switchboard/bin/pip install --require-hashes -r requirements/runtime.lock
COPY . .
RUN /opt/switchboard/bin/pip install --no-deps --no-build-isolation .

FROM python:3.11-slim
ENV PATH=/opt/switchboard/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# An unprivileged user; the installed code stays owned by root, so the processes cannot change it.
# /var/lib/switchboard is where they may write (the worker's data directory, local state).
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/switchboard --create-home \
        --shell /usr/sbin/nologin switchboard
COPY --from=build /opt/switchboard /opt/switchboard
USER switchboard
WORKDIR /var/lib/switchboard
# No secret is baked in: SWITCHBOARD_JWT_SECRET, _ENCRYPTION_KEY and _S3_SECRET_KEY come from the
# environment at run time, and a process whose service addresses are not loopback refuses to
# start with their published defaults (core/security/default_secrets.py).
ENV SWITCHBOARD_STATE_DIR=/var/lib/switchboard/state \
    SWITCHBOARD_WORKER_DATADIR=/var/lib/switchboard/worker
# The web services' ports: Settings.web_base_port (8100) + the service's index.
EXPOSE 8100-8107
CMD ["switchboard", "web", "all"]
