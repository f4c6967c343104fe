"""WebSocket consumers for jobs."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from portal.accounts.second_factor import pending
from portal.accounts.sessions import session_group, session_tag
from portal.jobs.models import Job
from portal.jobs.presenters import job_state
from portal.jobs.streaming import FRAME_TYPE, SNAPSHOT_TYPE

# Application close codes (4000-4999): the browser shows why it was turned away.
CLOSE_UNAUTHENTICATED = 4401  # also: this socket's session logged out (the page stops)
CLOSE_FORBIDDEN = 4403
# The person's password changed or they were deactivated: the page reconnects, and the
# handshake then decides (a session Django kept is let back in, an invalidated one gets 4401).
CLOSE_REAUTHENTICATE = 4001


@database_sync_to_async
def _second_factor_owed(session: Any) -> bool:
    """A session past its password but not its second factor (read off the event loop: the
    session may load from the database)."""
    return bool(pending(session))


@database_sync_to_async
def _visible_job(user: Any, job_id: int) -> Job | None:
    return Job.objects.visible_to(user).filter(pk=job_id).first()


@database_sync_to_async
def _snapshot(job_id: int, after: int) -> dict[str, Any]:
    """The job now and its replies with an id above ``after``, in id order.

    The job is read before the replies: a job seen finished has all its replies stored
    already, so a finished snapshot is complete (a running one is completed by the frames).
    """
    job = Job.objects.get(pk=job_id)
    state = job_state(job)
    replies = [reply.as_dict() for reply in job.replies.filter(pk__gt=after).order_by("pk")]
    return {
        "type": SNAPSHOT_TYPE,
        "job": {**state, "replies": replies},
        "seq": replies[-1]["id"] if replies else after,  # in id order: the last is the highest
    }


def resume_after(query_string: bytes) -> int:
    """The ``after`` a reconnecting browser sends: the highest reply id it has (0: none)."""
    values = parse_qs(query_string.decode("latin-1")).get("after", [])
    try:
        return max(int(values[-1]), 0) if values else 0
    except ValueError:
        return 0


class JobConsumer(AsyncJsonWebsocketConsumer):
    """Streams one job's frames to a logged-in person allowed to see the job.

    Joins the job's group before reading the snapshot, so no frame falls between the two.
    ``?after=<seq>`` resumes: the snapshot then holds only the replies with a greater id.
    Every reply is sent at most once per connection: a frame's replies that the snapshot
    already carried (id <= the seq sent) are left out.
    """

    seq = 0
    groups_joined: tuple[str, ...] = ()

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if await _second_factor_owed(self.scope.get("session")):
            # As if not logged in: the page's login holds it at the second step.
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        job_id = int(self.scope["url_route"]["kwargs"]["job_id"])
        job = await _visible_job(user, job_id)
        if job is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.group_name = job.group_name
        session = self.scope.get("session")
        self.session_tag = session_tag(session.session_key if session is not None else None)
        self.groups_joined = (self.group_name, session_group(user.pk))
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        snapshot = await _snapshot(job_id, resume_after(self.scope.get("query_string", b"")))
        self.seq = snapshot["seq"]
        await self.send_json(snapshot)

    async def disconnect(self, code: int) -> None:
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The stream is one-way; anything the browser sends is ignored."""

    async def session_ended(self, event: dict[str, Any]) -> None:
        """The person logged out of this socket's session, or all of theirs ended: close."""
        if not event["session"]:
            await self.close(code=CLOSE_REAUTHENTICATE)
        elif event["session"] == self.session_tag:
            await self.close(code=CLOSE_UNAUTHENTICATED)

    async def job_frame(self, event: dict[str, Any]) -> None:
        """Relay one frame as one message, whatever its size, without what was already sent."""
        replies = [reply for reply in event["replies"] if reply["id"] > self.seq]
        self.seq = max((reply["id"] for reply in replies), default=self.seq)
        await self.send_json(
            {"type": FRAME_TYPE, "job": event["job"], "replies": replies, "seq": self.seq}
        )
