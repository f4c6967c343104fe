# Switchboard application image: the portal (daphne), the Celery worker and the node
# simulator all run from it (see docker-compose.yml). Brokers use the ActiveMQ image.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=portal.settings \
    SWITCHBOARD_PROFILE=production

WORKDIR /app

# Only what the application needs (no .venv, var/, tests or deploy/ in the image).
COPY requirements.txt pyproject.toml ./
RUN pip install -r requirements.txt

COPY agents ./agents
COPY portal ./portal
COPY templates ./templates
COPY static ./static
COPY manage.py ./

# Editable install: the code stays in /app (templates/ and static/ sit beside portal/) and
# the console scripts (switchboard-simulator, switchboard-node) are created; the pinned
# dependencies came from requirements.txt above.
RUN pip install --no-deps -e . \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin switchboard \
 && install -d -o switchboard -g switchboard /var/lib/switchboard

ENV SWITCHBOARD_VAR_DIR=/var/lib/switchboard

# Hashed, compressed static files for WhiteNoise (the production profile serves STATIC_ROOT).
RUN SWITCHBOARD_PROFILE=production SECRET_KEY=collectstatic-only \
    python manage.py collectstatic --noinput \
 && chown -R switchboard:switchboard /var/lib/switchboard

USER switchboard
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "portal.asgi:application"]
