# MLflow tracking server for sweeplab: PostgreSQL backend store, artifacts proxied by
# the server into /mlartifacts. compose.yaml passes the full `mlflow server` command.
#   docker build -f docker/mlflow.Dockerfile -t sweeplab-mlflow:3.17.2 docker
FROM python:3.11.15-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN pip install --no-cache-dir mlflow==3.17.2 psycopg2-binary==2.9.13

RUN groupadd --system --gid 10001 mlflow \
 && useradd --system --uid 10001 --gid mlflow --create-home --home-dir /home/mlflow mlflow \
 && mkdir -p /mlartifacts \
 && chown mlflow:mlflow /mlartifacts

USER mlflow
WORKDIR /home/mlflow
EXPOSE 5000

# /health answers 200 once the server is up; it is exempt from the Host-header check.
# python, not curl: the slim image has no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=90s --retries=5 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]

# Default without compose: a local SQLite store. compose.yaml replaces this command.
CMD ["mlflow", "server", "--backend-store-uri", "sqlite:////home/mlflow/mlflow.db", \
     "--serve-artifacts", "--artifacts-destination", "/mlartifacts", \
     "--host", "0.0.0.0", "--port", "5000", "--workers", "2"]
