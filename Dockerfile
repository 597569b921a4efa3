# vapi-router: the webhook server, non-root, policies mounted at /etc/vapi-router/policies.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
# Exactly the tested versions (hash-checked), then the package itself without resolving again.
RUN pip install --require-hashes --no-deps -r requirements.lock
COPY router ./router
RUN pip install --no-deps . && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin router
COPY policies /etc/vapi-router/policies

USER 10001
EXPOSE 8000
# Webhook auth comes from the environment (VAPI_SERVER_SECRET, VAPI_HMAC_*, ROUTER_OAUTH_* or
# VAPI_OAUTH_*; README "HTTP", the auth variables); serve refuses to start without webhook auth.
ENTRYPOINT ["vapi-router", "serve", "/etc/vapi-router/policies", "--host", "0.0.0.0", "--port", "8000"]
CMD ["--workers", "2"]
