"""Portal hardening: login throttling, CSRF on forms, WebSocket origin, production settings."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client

from portal.audit.models import AuditEvent

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db(transaction=True)
def test_repeated_failed_logins_lock_the_account_out(operator: User) -> None:
    client = Client()
    for _ in range(4):
        response = client.post("/login/", {"username": "noc", "password": "wrong"})
        assert response.status_code == 200  # the form again, with its error
    # The fifth failure locks the account out from this address; now even the right password
    # is refused for a while, with a page that says why.
    assert client.post("/login/", {"username": "noc", "password": "wrong"}).status_code == 429
    response = client.post("/login/", {"username": "noc", "password": "pw-noc-123"})
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert AuditEvent.objects.filter(kind="login.failed").count() >= 5


@pytest.mark.django_db
def test_forms_refuse_a_post_without_the_csrf_token(operator: User) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    for path in ("/jobs/new/", "/access/", "/logout/"):
        assert client.post(path, {}).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_the_websocket_refuses_a_foreign_origin(operator: User) -> None:
    from portal.asgi import application

    async def connect(origin: bytes) -> bool:
        communicator = WebsocketCommunicator(
            application, "/ws/jobs/1/", headers=[(b"origin", origin), (b"host", b"127.0.0.1")]
        )
        connected, _ = await communicator.connect(timeout=5)
        await communicator.disconnect()
        return connected

    assert async_to_sync(connect)(b"http://evil.example") is False


def check_deploy(**settings: str) -> subprocess.CompletedProcess[str]:
    """`manage.py check --deploy` run as an operator would, on the production profile."""
    env = dict(
        os.environ,
        SWITCHBOARD_PROFILE="production",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="noc.example.com",
        CSRF_TRUSTED_ORIGINS="https://noc.example.com",
        SWITCHBOARD_PUBLIC_URL="https://noc.example.com",
        DATABASE_URL="postgresql://switchboard@db.example:5432/switchboard",
        REDIS_URL="redis://redis.example:6379/0",
        STOMP_BROKERS="noc-broker.example:61613",
    )
    env.update(settings)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_check_deploy_is_clean_in_the_production_profile() -> None:
    result = check_deploy()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_names_a_wrong_proxy_setting() -> None:
    result = check_deploy(CSRF_TRUSTED_ORIGINS="http://noc.example.com", ALLOWED_HOSTS="noc")
    assert result.returncode != 0
    assert "switchboard.E011" in result.stderr
    assert "switchboard.E012" in result.stderr
    assert "does not list https://noc.example.com" in result.stderr
