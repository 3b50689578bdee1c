# Production image: slim Python, non-root, gunicorn serving app:app.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PORT=8080

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY app.py gunicorn.conf.py ./
COPY cds_services ./cds_services
COPY fhir_mappings ./fhir_mappings

# The default SQLite feedback store lives in /app/instance; mount a volume
# there, or set CDS_DATABASE_URL to PostgreSQL for several replicas.
RUN useradd --create-home --uid 10001 cds \
    && mkdir -p /app/instance \
    && chown cds:cds /app/instance
USER cds

EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import os,urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT','8080'), timeout=2).status == 200 else 1)"

CMD ["gunicorn", "-c", "gunicorn.conf.py", "app:app"]
