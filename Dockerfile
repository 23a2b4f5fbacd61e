# The gateway image used by compose.yaml. Build: docker build -t autonomy-gateway .
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . && useradd --system --home-dir /app gateway

# The deployment example's config, its demo backends and the access policies.
COPY examples ./examples
COPY policies ./policies

USER gateway
ENV GATEWAY_CONFIG=/app/examples/deployment/gateway.toml
EXPOSE 8787
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8787/readyz', timeout=2)"]
CMD ["gateway", "serve"]
