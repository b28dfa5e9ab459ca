# One image for every role of the stack: the command is the role (web, worker, beat, flower,
# shell, db upgrade), given to the 'flasker' entrypoint. Built by 'make build' (compose).
#
# The base image is a build argument, so that a machine without Docker Hub can use its own:
# compose passes $PYTHON_IMAGE. Nothing else is pulled.
ARG PYTHON_IMAGE=python:3.12-slim

# -- build: wheels of flasker and of every dependency, installed into a virtualenv -------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change.
COPY shared/flasker/pyproject.toml shared/flasker/pyproject.toml
RUN python -c "import tomllib; p = tomllib.load(open('shared/flasker/pyproject.toml', 'rb'))['project']; \
extras = p['optional-dependencies']; \
print('\n'.join(p['dependencies'] + extras['flower'] + extras['auth']))" > requirements.txt \
 && pip wheel --wheel-dir /wheels --requirement requirements.txt
COPY shared/flasker/README.md shared/flasker/README.md
COPY shared/flasker/src shared/flasker/src
RUN pip wheel --no-deps --wheel-dir /wheels ./shared/flasker \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-index --find-links /wheels 'flasker[flower,auth]'

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
