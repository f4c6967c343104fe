# Switchboard application image. It holds the portal exactly as a host installs it for the
# systemd units in deploy/systemd/ (docs/install.md), so docker-compose.yml runs each unit's
# ExecStart unchanged: the code in /opt/switchboard-portal, its virtualenv in
# /opt/switchboard-portal/venv, user switchboard, state in /var/lib/switchboard.
# tests/deploy/test_compose.py holds this file, the units and docker-compose.yml together.
# The simulated nodes run from it too; brokers use the ActiveMQ image, the proxy nginx's.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The units' StateDirectory= and portal.env's SWITCHBOARD_VAR_DIR; the virtualenv first on PATH
# so that `docker compose exec asgi-1 python manage.py ...` is the venv's Python.
ENV SWITCHBOARD_VAR_DIR=/var/lib/switchboard \
    PATH=/opt/switchboard-portal/venv/bin:$PATH

# The units' WorkingDirectory=.
WORKDIR /opt/switchboard-portal

# Only what the application needs (no .venv, var/, tests or deploy/ in the image).
COPY requirements.txt pyproject.toml ./
RUN python -m venv /opt/switchboard-portal/venv \
 && /opt/switchboard-portal/venv/bin/pip install -r requirements.txt

COPY agents ./agents
COPY portal ./portal
COPY templates ./templates
COPY static ./static
COPY manage.py ./

# Editable install, as on a host: the code stays in /opt/switchboard-portal (templates/ and
# static/ sit beside portal/) and the console scripts (switchboard-simulator,
# switchboard-node) are made in the venv; the pinned dependencies came from requirements.txt.
RUN /opt/switchboard-portal/venv/bin/pip install --no-deps -e . \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/switchboard \
      --shell /usr/sbin/nologin switchboard \
 && install -d -o switchboard -g switchboard -m 0750 /var/lib/switchboard

# Hashed, compressed static files into STATIC_ROOT (/var/lib/switchboard/static), so the image
# works on its own. docker-compose.yml mounts a volume there that its `setup` service refills
# with the same command on every start (and nginx serves from): see its header for why.
RUN SWITCHBOARD_PROFILE=production SECRET_KEY=collectstatic-only \
    /opt/switchboard-portal/venv/bin/python manage.py collectstatic --noinput \
 && chown -R switchboard:switchboard /var/lib/switchboard

USER switchboard
# Without a command: an ASGI server on 0.0.0.0:8000 (docker-compose.yml gives every service
# its unit's command instead).
EXPOSE 8000
CMD ["/opt/switchboard-portal/venv/bin/daphne", "--bind", "0.0.0.0", "--port", "8000", "portal.asgi:application"]
