# One image for every Lodestar service; the command picks the service.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY devstack ./devstack
RUN pip install . && useradd --system --uid 10001 lodestar

USER 10001
EXPOSE 8000 8001 8002 8003
# Overridden per service, e.g. services.ingest.app:create_app on port 8001.
CMD ["python", "-m", "uvicorn", "services.gateway.app:create_app", "--factory", "--http", "shared.http_server:HttpProtocol", "--host", "0.0.0.0", "--port", "8000"]
