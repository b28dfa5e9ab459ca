# One image for every role of the stack: the command is the role (web, worker, beat, flower,
# shell, db upgrade), given to the 'flasker' entrypoint. Built by 'make build' (compose).
#
# The base image is a build argument, so that a machine without Docker Hub can use its own:
# compose passes $PYTHON_IMAGE. Nothing else is pulled.
ARG PYTHON_IMAGE=python:3.12-slim

# -- build: the locked dependencies, then flasker from this source, in a virtualenv ----------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Dependencies first, from the lock alone: this layer is rebuilt only when the lock changes.
# requirements.lock ('make lock') pins every package with its hashes, so a build next month
# installs the very files of today's; --no-deps, as the lock already names every dependency.
COPY requirements.lock requirements.lock
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes --no-deps --requirement requirements.lock
COPY shared/flasker/pyproject.toml shared/flasker/README.md shared/flasker/
COPY shared/flasker/src shared/flasker/src
# flasker itself, built by the lock's setuptools (build isolation would fetch the newest one);
# 'pip check' fails the build if the lock lacks a dependency of anything installed.
RUN /opt/venv/bin/pip wheel --no-build-isolation --no-deps --wheel-dir /wheels ./shared/flasker \
 && /opt/venv/bin/pip install --no-deps --no-index /wheels/flasker-*.whl \
 && /opt/venv/bin/pip check

# -- runtime: the virtualenv, the reference application and the roles' settings -------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 flasker \
 && useradd --system --uid 10001 --gid flasker --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin flasker \
 && mkdir -p /var/lib/flasker /var/lib/flower \
 && chown flasker:flasker /var/lib/flasker /var/lib/flower
COPY --from=build /opt/venv /opt/venv
# The application belongs to root: the app's user can read it, not change it.
COPY services /app/services
COPY reference /app/reference
RUN /opt/venv/bin/python -m compileall -q /app/reference /app/services
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FLASKER_CONFIG=/app/reference/default.cfg \
    FLASKER_GUNICORN_CONFIG=/app/services/web/gunicorn.conf.py \
    FLASKER__PROJECT__STATE_FOLDER=/var/lib/flasker
WORKDIR /app
USER 10001:10001
EXPOSE 8000 5555
# Exec form: 'flasker' is PID 1 (web replaces itself with gunicorn), so SIGTERM reaches it.
ENTRYPOINT ["flasker"]
CMD ["web"]

# Last, so that a new revision rebuilds nothing but these labels.
ARG VERSION=0.0.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/flasker/flasker
LABEL org.opencontainers.image.title="flasker" \
      org.opencontainers.image.description="Flask, SQLAlchemy and Celery behind one configuration file: web, worker, beat and flower roles." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="MIT"
