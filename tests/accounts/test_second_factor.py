"""The second factor: a person with a TOTP device logs in in two steps, and until the second
nothing answers their session (pages, the API by session, WebSockets); a recovery code works
once; members of a required role are held at enrolment; an admin's reset; the Users page.

Logins go through the real login form (django-axes and Django's login signal included), as
``harness.portal.PortalStack.login`` does.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from asgiref.sync import async_to_sync
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.test import Client, override_settings
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from portal.accounts import second_factor
from portal.accounts.tokens import create_token
from portal.audit.models import AuditEvent
from portal.jobs.consumers import CLOSE_UNAUTHENTICATED
from portal.jobs.models import Job
from portal.jobs.routing import websocket_urlpatterns
from tests.accounts.conftest import logged_in

pytestmark = pytest.mark.django_db

HOME = "/"
VERIFY = "/login/verify/"
ENROL = "/account/second-factor/"
API = "/api/jobs/"
PASSWORD = "pw-noc-123"


def code_of(device: TOTPDevice) -> str:
    """The code the person's app shows now."""
    value = totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits)
    return f"{value:0{device.digits}d}"


def password_step(username: str, password: str = PASSWORD) -> Client:
    client = Client()
    response = client.post("/login/", {"username": username, "password": password})
    assert response.status_code == 302, response.content[:300]
    return client


def enrolled(user: User) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)


def kinds() -> list[str]:
    return list(
        AuditEvent.objects.filter(kind__startswith="otp.")
        .order_by("pk")
        .values_list("kind", flat=True)
    )


def test_without_a_device_or_a_required_role_the_login_is_one_step(operator: User) -> None:
    client = password_step("noc")
    assert client.get(HOME).status_code == 200
    assert client.get(API).status_code == 200
    assert second_factor.PENDING_KEY not in client.session


def test_with_a_device_the_password_alone_reaches_no_page_and_not_the_api(operator: User) -> None:
    enrolled(operator)
    client = password_step("noc")
    response = client.get("/jobs/new/")
    assert (response.status_code, response.url) == (302, f"{VERIFY}?next=%2Fjobs%2Fnew%2F")
    assert client.get(ENROL).url.startswith(VERIFY)  # not even one's own enrolment page
    api = client.get(API)
    assert api.status_code == 403 and "second factor" in api.json()["detail"]
    assert client.get(VERIFY).status_code == 200


def test_an_api_token_is_not_held(operator: User) -> None:
    enrolled(operator)
    issued = create_token(operator, "ci", 30, actor=operator)
    response = Client().get(API, HTTP_AUTHORIZATION=f"Token {issued.secret}")
    assert response.status_code == 200


def test_a_correct_code_verifies_the_session(operator: User) -> None:
    device = enrolled(operator)
    client = password_step("noc")
    response = client.post(VERIFY, {"code": code_of(device), "next": "/jobs/new/"})
    assert (response.status_code, response.url) == (302, "/jobs/new/")
    assert client.get(HOME).status_code == 200
    assert client.get(API).status_code == 200


def test_a_wrong_code_is_refused_throttled_and_audited_without_the_code(operator: User) -> None:
    device = enrolled(operator)
    client = password_step("noc")
    wrong = f"{(int(code_of(device)) + 1) % 1_000_000:06d}"
    response = client.post(VERIFY, {"code": wrong})
    assert response.status_code == 400 and "wrong code" in response.context["error"]
    device.refresh_from_db()
    assert device.throttling_failure_count == 1
    # Throttled now (django-otp's delay): even the right code waits.
    response = client.post(VERIFY, {"code": code_of(device)})
    assert response.status_code == 400 and "wait" in response.context["error"]
    assert client.get(HOME).status_code == 302
    event = AuditEvent.objects.filter(kind="otp.failed").first()
    assert event is not None and event.outcome == "failed" and event.actor == "noc"
    assert wrong not in str(event.data) and wrong not in event.summary


def test_a_recovery_code_works_once(operator: User) -> None:
    enrolled(operator)
    codes = second_factor.regenerate_recovery_codes(operator)
    assert len(codes) == 10
    client = password_step("noc")
    assert client.post(VERIFY, {"code": codes[0]}).status_code == 302
    assert client.get(HOME).status_code == 200
    again = password_step("noc")
    assert again.post(VERIFY, {"code": codes[0]}).status_code == 400
    assert StaticToken.objects.filter(device__user=operator).count() == 9
    assert TOTPDevice.objects.get(user=operator).throttling_failure_count == 0  # not tried


def test_a_device_reset_after_the_password_step_lets_the_session_go_on(
    admin: User, operator: User
) -> None:
    enrolled(operator)
    client = password_step("noc")
    second_factor.reset_second_factor(operator, actor=admin)
    assert client.get(VERIFY).status_code == 302
    assert client.get(HOME).status_code == 200  # no role requires one: nothing is owed now


@override_settings(SWITCHBOARD_OTP_REQUIRED_ROLES=["operator"])
def test_a_required_role_is_held_at_enrolment_until_done(operator: User) -> None:
    client = password_step("noc")
    for path in (HOME, "/jobs/new/", "/account/tokens/", VERIFY):
        response = client.get(path)
        assert response.status_code == 302 and response.url.startswith(ENROL), path
    assert client.get(API).status_code == 403
    page = client.get(ENROL)
    assert page.status_code == 200 and page["Cache-Control"] == "no-store"
    body = page.content.decode()
    assert "<svg" in body and 'id="otp-forced"' in body
    enrolment = page.context["enrolment"]
    assert client.get(ENROL).context["enrolment"].secret == enrolment.secret  # same on reload
    assert client.post(ENROL, {"form": "confirm", "code": "12"}).status_code == 400
    TOTPDevice.objects.get(pk=enrolment.device.pk).throttle_reset()  # as after django-otp's delay
    response = client.post(ENROL, {"form": "confirm", "code": code_of(enrolment.device)})
    assert response.status_code == 200
    codes = response.context["codes"]
    assert len(codes) == 10 and all(code in response.content.decode() for code in codes)
    assert client.get(HOME).status_code == 200
    assert kinds() == ["otp.enrolled"]
    event = AuditEvent.objects.get(kind="otp.enrolled")
    assert event.actor == "noc" and event.data["user"] == "noc"
    assert enrolment.secret not in str(event.data) and codes[0] not in str(event.data)
    # The next login asks for the code.
    assert password_step("noc").get(HOME).url.startswith(VERIFY)


@override_settings(SWITCHBOARD_OTP_REQUIRED_ROLES=["admin"])
def test_a_superuser_counts_as_admin_for_the_rule(operator: User) -> None:
    superuser = User.objects.create_superuser("su", password="pw-su-123")
    assert second_factor.is_required(superuser)
    assert not second_factor.is_required(operator)
    assert password_step("su", "pw-su-123").get(HOME).url.startswith(ENROL)


def test_anyone_may_enrol_voluntarily_and_remake_codes(operator: User) -> None:
    client = password_step("noc")
    assert 'href="/account/second-factor/"' in client.get(HOME).content.decode()
    device = client.get(ENROL).context["enrolment"].device
    first = client.post(ENROL, {"form": "confirm", "code": code_of(device)}).context["codes"]
    assert client.get(HOME).status_code == 200  # this session was verified by enrolling
    again = client.post(ENROL, {"form": "codes"})
    assert again.status_code == 200 and set(again.context["codes"]).isdisjoint(first)
    assert kinds() == ["otp.enrolled", "otp.recovery_codes"]


def test_an_admin_resets_the_second_factor_audited(admin: User, operator: User) -> None:
    enrolled(operator)
    second_factor.regenerate_recovery_codes(operator)
    client = logged_in(admin)
    page = client.get(f"/access/users/{operator.pk}/").content.decode()
    assert "Enrolled" in page and "Reset second factor" in page
    response = client.post(f"/access/users/{operator.pk}/", {"form": "otp-reset"})
    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(user=operator).exists()
    assert not StaticDevice.objects.filter(user=operator).exists()
    event = AuditEvent.objects.get(kind="otp.reset")
    assert (event.actor, event.data["user"], event.data["devices_removed"]) == ("root", "noc", 1)
    assert password_step("noc").get(HOME).status_code == 200  # not required: one step again


@override_settings(SWITCHBOARD_OTP_REQUIRED_ROLES=["admin"])
def test_the_users_page_shows_the_second_factor(admin_client: Client, operator: User) -> None:
    enrolled(operator)
    page = admin_client.get("/access/users/").content.decode()
    rows = {row.split('"', 1)[0]: row for row in page.split('data-user="')[1:]}
    assert "enrolled" in rows["noc"] and "required" not in rows["noc"]
    assert "none" in rows["root"] and "required" in rows["root"]


# -- WebSockets ------------------------------------------------------------------------------------


@pytest.fixture
def in_memory_layer() -> Iterator[None]:
    layers = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with override_settings(CHANNEL_LAYERS=layers):
        yield


@pytest.mark.django_db(transaction=True)
def test_an_unverified_session_gets_no_websocket(operator: User, in_memory_layer: None) -> None:
    device = enrolled(operator)
    job = Job.objects.create(
        created_by=operator, source=Job.Source.WEB, agent="rpcutil", action="ping",
        collective="mcollective", timeout=10, status=Job.Status.RUNNING,
    )  # fmt: skip
    client = password_step("noc")
    application = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))

    def cookie() -> list[tuple[bytes, bytes]]:
        name = settings.SESSION_COOKIE_NAME
        return [(b"cookie", f"{name}={client.cookies[name].value}".encode())]

    async def connect() -> tuple[bool, int | str | None]:
        socket = WebsocketCommunicator(application, f"/ws/jobs/{job.pk}/", headers=cookie())
        connected, code = await socket.connect(timeout=5)
        if connected:
            await socket.disconnect()
        return connected, code

    assert async_to_sync(connect)() == (False, CLOSE_UNAUTHENTICATED)
    assert client.post(VERIFY, {"code": code_of(device)}).status_code == 302
    assert async_to_sync(connect)()[0] is True


def test_the_roles_rule_reads_no_setting_as_nobody(operator: User) -> None:
    operator.groups.add(Group.objects.get_or_create(name="admin")[0])
    assert not second_factor.is_required(operator)
