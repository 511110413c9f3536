# The Draftwire image: one image, three commands (`draftwire api|worker|migrate`, see
# compose/compose.yaml). Build from the repository root:  docker build -t draftwire:local .
FROM python:3.11-slim-bookworm

# pg_dump/pg_restore for `draftwire backup` and the nightly 02:00 UTC dump; client 15 matches
# the postgres:15 server (pg_dump refuses a newer server than itself).
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client-15 \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Metadata first, then the two packages pyproject.toml ships (app, observability).
COPY pyproject.toml README.md ./
COPY app ./app
COPY observability ./observability
RUN pip install .

# Not root: the processes need no privilege. The backups folder is created here so a fresh
# named volume mounted on it inherits this owner.
RUN useradd --system --uid 10001 --create-home draftwire \
    && mkdir -p /var/lib/draftwire/backups \
    && chown draftwire /var/lib/draftwire/backups
USER draftwire
WORKDIR /home/draftwire

# 8080: API (PORT); 9091: worker /healthz and /metrics (WORKER_METRICS_PORT).
EXPOSE 8080 9091
ENTRYPOINT ["draftwire"]
CMD ["api"]
