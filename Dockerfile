# Production image: slim Python, non-root, gunicorn serving app:app.
# BASE_IMAGE: the official python:3.11-slim by default; a stand-in with the same
# layout where public registries are unreachable (tests/integration/test_docker_image.py).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PORT=8080

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

# The service and nothing else: no tests/, no test helpers (tests/signing.py
# forges tokens), no scripts or benchmarks; .dockerignore keeps them out of the
# build context too. The check fails the build if a test module slips in.
COPY app.py gunicorn.conf.py ./
COPY cds_services ./cds_services
COPY fhir_mappings ./fhir_mappings
RUN ! find /app -name 'test*.py' -o -name 'conftest.py' | grep .

# The default SQLite store (feedback and the JWT replay store, shared by the
# workers) lives in /app/instance; mount a volume there, or set
# CDS_DATABASE_URL to PostgreSQL for several replicas.
RUN useradd --create-home --uid 10001 cds \
    && mkdir -p /app/instance \
    && chown cds:cds /app/instance
USER cds

EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import os,urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT','8080'), timeout=2).status == 200 else 1)"

CMD ["gunicorn", "-c", "gunicorn.conf.py", "app:app"]
