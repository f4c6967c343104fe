"""An open job WebSocket closes when its session ends: logout, password change, deactivation,
a change of the person's roles.

The sockets are opened through Channels' session and auth middleware with the session cookie
a browser would send, as ``portal.asgi`` does; the logout goes through the real logout view.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.test import Client, override_settings

from portal.jobs.consumers import CLOSE_FORBIDDEN, CLOSE_REAUTHENTICATE, CLOSE_UNAUTHENTICATED
from portal.jobs.models import Job
from portal.jobs.routing import websocket_urlpatterns
from portal.jobs.streaming import push_job_frame

pytestmark = pytest.mark.django_db(transaction=True)

APPLICATION = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
TIMEOUT = 5


@pytest.fixture(autouse=True)
def in_memory_layer() -> Iterator[None]:
    layers = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with override_settings(CHANNEL_LAYERS=layers):
        yield


@pytest.fixture
def job(operator: User) -> Job:
    return Job.objects.create(
        created_by=operator,
        source=Job.Source.WEB,
        agent="rpcutil",
        action="ping",
        collective="mcollective",
        timeout=10,
        status=Job.Status.RUNNING,
    )


def _logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _cookie(client: Client) -> bytes:
    """The Cookie header a browser with this client's session would send."""
    name = settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}".encode()


async def _watch(client: Client, job: Job) -> WebsocketCommunicator:
    """A job socket opened with the client's session cookie; its snapshot already read."""
    socket = WebsocketCommunicator(
        APPLICATION, f"/ws/jobs/{job.pk}/", headers=[(b"cookie", _cookie(client))]
    )
    connected, code = await socket.connect(timeout=TIMEOUT)
    assert connected, code
    assert (await socket.receive_json_from(TIMEOUT))["type"] == "job.snapshot"
    return socket


async def _closed_with(socket: WebsocketCommunicator) -> int:
    message: dict[str, Any] = await socket.receive_output(TIMEOUT)
    assert message["type"] == "websocket.close", message
    return int(message["code"])


async def _still_streams(socket: WebsocketCommunicator, job: Job) -> None:
    await sync_to_async(push_job_frame)(job)
    assert (await socket.receive_json_from(TIMEOUT))["type"] == "job.frame"


def test_a_logout_closes_that_sessions_sockets_only(operator: User, job: Job) -> None:
    here, elsewhere = _logged_in(operator), _logged_in(operator)

    async def scenario() -> None:
        socket = await _watch(here, job)
        other_session = await _watch(elsewhere, job)
        old_cookie = _cookie(here)
        response = await sync_to_async(here.post)("/logout/")
        assert response.status_code == 302
        assert await _closed_with(socket) == CLOSE_UNAUTHENTICATED
        await _still_streams(other_session, job)  # the same person, still logged in there
        await other_session.disconnect()

        # The page does not reconnect on 4401; had it, the handshake would refuse it too.
        again = WebsocketCommunicator(
            APPLICATION, f"/ws/jobs/{job.pk}/", headers=[(b"cookie", old_cookie)]
        )
        assert await again.connect(timeout=TIMEOUT) == (False, CLOSE_UNAUTHENTICATED)

    async_to_sync(scenario)()


def test_another_persons_logout_closes_nothing(
    operator: User, other_operator: User, job: Job
) -> None:
    mine, theirs = _logged_in(operator), _logged_in(other_operator)

    async def scenario() -> None:
        socket = await _watch(mine, job)
        await sync_to_async(theirs.post)("/logout/")
        await _still_streams(socket, job)
        await socket.disconnect()

    async_to_sync(scenario)()


@pytest.mark.parametrize("change", ["password", "deactivation"])
def test_a_credential_change_closes_every_socket_and_only_valid_sessions_return(
    operator: User, job: Job, change: str
) -> None:
    client = _logged_in(operator)

    def change_credentials() -> None:
        user = User.objects.get(pk=operator.pk)
        if change == "password":
            user.set_password("a-new-password-456")
        else:
            user.is_active = False
        user.save()

    async def scenario() -> None:
        socket = await _watch(client, job)
        await sync_to_async(change_credentials)()
        assert await _closed_with(socket) == CLOSE_REAUTHENTICATE
        # The page reconnects: the old session no longer authenticates (a new password
        # invalidates its hash; an inactive user is no user), so the handshake refuses it.
        again = WebsocketCommunicator(
            APPLICATION, f"/ws/jobs/{job.pk}/", headers=[(b"cookie", _cookie(client))]
        )
        assert await again.connect(timeout=TIMEOUT) == (False, CLOSE_UNAUTHENTICATED)

    async_to_sync(scenario)()


def test_saving_other_fields_closes_nothing(operator: User, job: Job) -> None:
    """A login's ``last_login`` update, a name change: the sockets stay."""
    client = _logged_in(operator)

    def touch() -> None:
        user = User.objects.get(pk=operator.pk)
        user.first_name = "Noc"
        user.save()
        user.save(update_fields=["last_login"])

    async def scenario() -> None:
        socket = await _watch(client, job)
        await sync_to_async(touch)()
        await _still_streams(socket, job)
        await socket.disconnect()

    async_to_sync(scenario)()


def test_a_role_change_closes_the_sockets_and_a_job_no_longer_visible_is_refused(
    operator: User, other_operator: User
) -> None:
    """A colleague watches a job through a shared role; removed from it, their socket closes
    and the page's reconnection is refused (4403), as a fresh visit would be."""
    shared = Group.objects.create(name="night-shift")
    operator.groups.add(shared)
    other_operator.groups.add(shared)
    job = Job.objects.create(
        created_by=operator, source=Job.Source.WEB, agent="rpcutil", action="ping",
        collective="mcollective", timeout=10, status=Job.Status.RUNNING,
    )  # fmt: skip
    job.roles.set([shared])
    client = _logged_in(other_operator)

    async def scenario() -> None:
        socket = await _watch(client, job)
        await sync_to_async(shared.user_set.remove)(other_operator)
        assert await _closed_with(socket) == CLOSE_REAUTHENTICATE
        again = WebsocketCommunicator(
            APPLICATION, f"/ws/jobs/{job.pk}/", headers=[(b"cookie", _cookie(client))]
        )
        assert await again.connect(timeout=TIMEOUT) == (False, CLOSE_FORBIDDEN)

    async_to_sync(scenario)()
