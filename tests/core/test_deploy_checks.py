"""A portal behind a proxy with a wrong ALLOWED_HOSTS or CSRF_TRUSTED_ORIGINS: `manage.py check
--deploy` names the setting, and the person at the browser gets a page that says why."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import Client

PUBLIC = "https://switchboard.example.net"


def deploy_check_errors() -> str:
    """What `check --deploy` reports for the portal's own checks ('' when it passes)."""
    try:
        call_command("check", "--deploy", "--fail-level", "WARNING", "--tag", "security")
    except SystemCheckError as exc:
        return "\n".join(
            line for line in str(exc).splitlines() if "switchboard." in line or "HINT" in line
        )
    return ""


@pytest.fixture
def behind_proxy(settings):
    """A production-like portal at PUBLIC whose settings agree with it."""
    settings.PRODUCTION = True
    settings.SWITCHBOARD_PUBLIC_URL = PUBLIC
    settings.ALLOWED_HOSTS = ["switchboard.example.net"]
    settings.CSRF_TRUSTED_ORIGINS = [PUBLIC]
    settings.SESSION_COOKIE_SECURE = True
    return settings


def test_settings_that_agree_with_the_public_address_pass(behind_proxy) -> None:
    assert "switchboard.E01" not in deploy_check_errors()
    assert "switchboard.W010" not in deploy_check_errors()


def test_a_host_outside_allowed_hosts_is_named(behind_proxy) -> None:
    behind_proxy.ALLOWED_HOSTS = ["switchboard.example.com"]
    report = deploy_check_errors()
    assert "switchboard.E011" in report
    assert "does not allow 'switchboard.example.net'" in report
    assert "400 Bad Request" in report
    assert "Add switchboard.example.net to ALLOWED_HOSTS" in report


@pytest.mark.parametrize("allowed", [[".example.net"], ["*"], ["switchboard.example.net"]])
def test_allowed_hosts_patterns_django_accepts_pass(behind_proxy, allowed) -> None:
    behind_proxy.ALLOWED_HOSTS = allowed
    assert "switchboard.E011" not in deploy_check_errors()


def test_a_trusted_origin_with_the_wrong_scheme_is_named(behind_proxy) -> None:
    behind_proxy.CSRF_TRUSTED_ORIGINS = ["http://switchboard.example.net"]
    report = deploy_check_errors()
    assert "switchboard.E012" in report
    assert "does not list https://switchboard.example.net" in report
    assert "http://switchboard.example.net has another scheme" in report
    assert "CSRF verification failed" in report


def test_a_missing_trusted_origin_is_named(behind_proxy) -> None:
    behind_proxy.CSRF_TRUSTED_ORIGINS = []
    report = deploy_check_errors()
    assert "switchboard.E012" in report
    assert "Add https://switchboard.example.net to CSRF_TRUSTED_ORIGINS" in report


def test_a_plain_http_address_with_secure_cookies_is_named(behind_proxy) -> None:
    behind_proxy.SWITCHBOARD_PUBLIC_URL = "http://switchboard.example.net"
    behind_proxy.CSRF_TRUSTED_ORIGINS = ["http://switchboard.example.net"]
    report = deploy_check_errors()
    assert "switchboard.E013" in report
    assert "nobody could stay signed in" in report


@pytest.mark.parametrize(
    "url", ["switchboard.example.net", "https://", "https://switchboard.example.net/portal"]
)
def test_a_malformed_public_address_is_named(behind_proxy, url) -> None:
    behind_proxy.SWITCHBOARD_PUBLIC_URL = url
    report = deploy_check_errors()
    assert "switchboard.E010" in report
    assert repr(url) in report


def test_production_without_a_public_address_warns(behind_proxy) -> None:
    behind_proxy.SWITCHBOARD_PUBLIC_URL = ""
    assert "switchboard.W010" in deploy_check_errors()


def test_the_embedded_profile_needs_no_public_address(settings) -> None:
    settings.PRODUCTION = False
    settings.SWITCHBOARD_PUBLIC_URL = ""
    assert "switchboard.W010" not in deploy_check_errors()


@pytest.mark.django_db
def test_a_disallowed_host_gets_a_page_that_says_so(settings) -> None:
    settings.ALLOWED_HOSTS = ["switchboard.example.net"]
    response = Client().get("/login/", HTTP_HOST="portal.internal:8001")
    assert response.status_code == 400
    body = response.content.decode()
    assert "not set up to answer at the address <code>portal.internal:8001</code>" in body
    assert "ALLOWED_HOSTS" in body


@pytest.mark.django_db
def test_an_untrusted_origin_gets_the_reason_not_a_bare_403(settings, django_user_model) -> None:
    django_user_model.objects.create_user("ops", password="pw-for-tests")
    client = Client(enforce_csrf_checks=True)
    page = client.get("/login/")
    response = client.post(
        "/login/",
        {
            "username": "ops",
            "password": "pw-for-tests",
            "csrfmiddlewaretoken": page.cookies["csrftoken"].value,
        },
        HTTP_ORIGIN="https://elsewhere.example.org",
    )
    assert response.status_code == 403
    body = response.content.decode()
    assert "Origin checking failed - https://elsewhere.example.org does not match" in body
    assert "CSRF_TRUSTED_ORIGINS" in body
    assert "_auth_user_id" not in client.session
