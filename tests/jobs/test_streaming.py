"""The job stream: a snapshot, then live frames; resuming after a reconnect misses nothing.

Runs ``JobConsumer`` under Channels' ``WebsocketCommunicator`` on the in-memory channel layer,
with replies stored by ``record_replies`` and frames pushed by ``push_job_frame``, as the
runner does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, User
from django.test import override_settings

from agents.protocol import Reply
from portal.jobs.consumers import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED, resume_after
from portal.jobs.lifecycle import finish, record_discovery, record_replies
from portal.jobs.models import Job, NodeReply
from portal.jobs.routing import websocket_urlpatterns
from portal.jobs.streaming import job_frame, push_job_frame

pytestmark = pytest.mark.django_db(transaction=True)

APPLICATION = URLRouter(websocket_urlpatterns)
TIMEOUT = 5


@pytest.fixture(autouse=True)
def in_memory_layer() -> Iterator[None]:
    layers = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with override_settings(CHANNEL_LAYERS=layers):  # Channels resets its layers on the signal
        yield


def _names(first: int, count: int) -> list[str]:
    return [f"node{number:04}" for number in range(first, first + count)]


def _job(user: User, nodes: list[str]) -> Job:
    job = Job.objects.create(
        created_by=user,
        source=Job.Source.WEB,
        agent="service",
        action="status",
        collective="mcollective",
        timeout=10,
        status=Job.Status.RUNNING,
    )
    record_discovery(job, nodes, nodes)
    return job


def _store(job: Job, names: list[str], statuscode: int = 0) -> list[NodeReply]:
    replies = [
        Reply(
            requestid="r1",
            senderid=name,
            senderagent="service",
            statuscode=statuscode,
            statusmsg="OK" if statuscode == 0 else "failed",
            data={"status": "running"},
        )
        for name in names
    ]
    return record_replies(job, replies)


def _store_and_push(job: Job, names: list[str]) -> list[NodeReply]:
    rows = _store(job, names)
    push_job_frame(job, rows)
    return rows


async def _connect(user: Any, job: Job, after: int | None = None) -> WebsocketCommunicator:
    path = f"/ws/jobs/{job.pk}/" + (f"?after={after}" if after is not None else "")
    communicator = WebsocketCommunicator(APPLICATION, path)
    communicator.scope["user"] = user
    connected, code = await communicator.connect(timeout=TIMEOUT)
    assert connected, code
    return communicator


def _identities(message: dict[str, Any]) -> list[str]:
    replies = message["job"]["replies"] if message["type"] == "job.snapshot" else message["replies"]
    return [reply["identity"] for reply in replies]


def test_resuming_after_a_reconnect_sends_exactly_the_missed_replies(operator: User) -> None:
    everyone = _names(0, 12)
    job = _job(operator, everyone)
    stored_before = _store(job, everyone[:5])
    received: list[str] = []

    async def scenario() -> None:
        first = await _connect(operator, job)
        snapshot = await first.receive_json_from(TIMEOUT)
        assert snapshot["type"] == "job.snapshot"
        assert _identities(snapshot) == everyone[:5]
        ids = [reply["id"] for reply in snapshot["job"]["replies"]]
        assert ids == sorted(ids) == [row.pk for row in stored_before]
        assert snapshot["seq"] == ids[-1]
        received.extend(_identities(snapshot))

        frame_rows = await sync_to_async(_store_and_push)(job, everyone[5:8])
        frame = await first.receive_json_from(TIMEOUT)
        assert frame["type"] == "job.frame"
        assert _identities(frame) == everyone[5:8]
        assert frame["seq"] == max(row.pk for row in frame_rows)
        received.extend(_identities(frame))
        seq = frame["seq"]
        await first.disconnect()

        # While the browser is away (or the ASGI server restarts): more replies, the end.
        await sync_to_async(_store_and_push)(job, everyone[8:11])
        await sync_to_async(_store_and_push)(job, everyone[11:])
        await sync_to_async(finish)(job, Job.Status.COMPLETED)

        second = await _connect(operator, job, after=seq)
        resumed = await second.receive_json_from(TIMEOUT)
        assert resumed["type"] == "job.snapshot"
        assert _identities(resumed) == everyone[8:]
        assert all(reply["id"] > seq for reply in resumed["job"]["replies"])
        assert resumed["job"]["counts"]["replied"] == 12
        assert resumed["job"]["finished"] is True
        assert resumed["seq"] == max(reply["id"] for reply in resumed["job"]["replies"])
        received.extend(_identities(resumed))
        assert await second.receive_nothing(0.2)
        await second.disconnect()

    async_to_sync(scenario)()
    assert received == everyone  # each reply exactly once, none missing


def test_a_frame_with_replies_the_snapshot_had_sends_only_the_new_ones(operator: User) -> None:
    """A frame already queued when the snapshot was read: its replies are not sent twice."""
    everyone = _names(0, 6)
    job = _job(operator, everyone)
    late = _store(job, everyone[:3])  # stored, its frame not pushed yet

    async def scenario() -> None:
        socket = await _connect(operator, job)
        snapshot = await socket.receive_json_from(TIMEOUT)
        assert _identities(snapshot) == everyone[:3]
        await sync_to_async(push_job_frame)(job, late)
        await sync_to_async(_store_and_push)(job, everyone[3:])
        stale = await socket.receive_json_from(TIMEOUT)
        assert stale["replies"] == []
        assert stale["seq"] == snapshot["seq"]
        fresh = await socket.receive_json_from(TIMEOUT)
        assert _identities(fresh) == everyone[3:]
        await socket.disconnect()

    async_to_sync(scenario)()


def test_resuming_with_nothing_new_sends_the_job_and_no_replies(operator: User) -> None:
    job = _job(operator, _names(0, 2))
    rows = _store(job, _names(0, 2))

    async def scenario() -> None:
        socket = await _connect(operator, job, after=rows[-1].pk)
        snapshot = await socket.receive_json_from(TIMEOUT)
        assert snapshot["job"]["replies"] == []
        assert snapshot["seq"] == rows[-1].pk
        assert snapshot["job"]["counts"]["replied"] == 2
        # An empty frame (a state change) carries the last seq sent.
        await sync_to_async(push_job_frame)(job)
        frame = await socket.receive_json_from(TIMEOUT)
        assert frame["replies"] == [] and frame["seq"] == rows[-1].pk
        await socket.disconnect()

    async_to_sync(scenario)()


def test_a_frame_of_a_thousand_replies_is_relayed_as_one_message(operator: User) -> None:
    everyone = _names(0, 1000)
    job = _job(operator, everyone)

    async def scenario() -> None:
        socket = await _connect(operator, job)
        await socket.receive_json_from(TIMEOUT)
        rows = await sync_to_async(_store_and_push)(job, everyone)
        frame = await socket.receive_json_from(TIMEOUT)
        assert _identities(frame) == everyone
        assert frame["seq"] == max(row.pk for row in rows)
        assert frame["job"]["counts"]["replied"] == 1000
        assert await socket.receive_nothing(0.2)
        await socket.disconnect()

    async_to_sync(scenario)()


def test_a_finished_job_carries_its_summaries(operator: User) -> None:
    job = _job(operator, _names(0, 3))
    _store(job, _names(0, 2))
    _store(job, _names(2, 1), statuscode=1)
    finish(job, Job.Status.COMPLETED)

    async def scenario() -> None:
        socket = await _connect(operator, job)
        snapshot = await socket.receive_json_from(TIMEOUT)
        assert snapshot["job"]["summaries"] == [
            {
                "function": "summary",
                "output": "status",
                "display_as": "Service Status",
                "values": [{"value": "running", "count": 2}],
                "count": 2,
            }
        ]
        await socket.disconnect()

    async_to_sync(scenario)()


@pytest.mark.parametrize(
    ("who", "code"),
    [("anonymous", CLOSE_UNAUTHENTICATED), ("other operator", CLOSE_FORBIDDEN)],
)
def test_who_may_not_watch_is_turned_away(
    operator: User, other_operator: User, who: str, code: int
) -> None:
    job = _job(operator, _names(0, 1))
    user = AnonymousUser() if who == "anonymous" else other_operator

    async def scenario() -> None:
        communicator = WebsocketCommunicator(APPLICATION, f"/ws/jobs/{job.pk}/?after=0")
        communicator.scope["user"] = user
        assert await communicator.connect(timeout=TIMEOUT) == (False, code)

    async_to_sync(scenario)()


def test_bulk_created_rows_have_their_ids_and_the_frame_its_seq(operator: User) -> None:
    job = _job(operator, _names(0, 4))
    rows = _store(job, _names(0, 4))
    assert all(row.pk is not None for row in rows)
    frame = job_frame(job, rows)
    assert [reply["id"] for reply in frame["replies"]] == [row.pk for row in rows]
    assert frame["seq"] == max(row.pk for row in rows)
    assert job_frame(job, [])["seq"] is None


def test_a_frame_reads_ids_the_backend_did_not_return(operator: User) -> None:
    job = _job(operator, _names(0, 2))
    rows = _store(job, _names(0, 2))
    ids = [row.pk for row in rows]
    for row in rows:
        row.pk = None
    assert [reply["id"] for reply in job_frame(job, rows)["replies"]] == ids


@pytest.mark.parametrize(
    ("query", "after"),
    [(b"", 0), (b"after=42", 42), (b"after=-3", 0), (b"after=abc", 0), (b"x=1&after=7", 7)],
)
def test_resume_after_reads_the_query_string(query: bytes, after: int) -> None:
    assert resume_after(query) == after
