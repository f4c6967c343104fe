"""WebSocket consumers for jobs."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from portal.jobs.models import Job
from portal.jobs.services import job_snapshot

# Application close codes (4000-4999): the browser shows why it was turned away.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


@database_sync_to_async
def _visible_job(user: Any, job_id: int) -> Job | None:
    return Job.objects.visible_to(user).filter(pk=job_id).first()


@database_sync_to_async
def _snapshot(job_id: int) -> dict[str, Any]:
    return job_snapshot(Job.objects.get(pk=job_id))


class JobConsumer(AsyncJsonWebsocketConsumer):
    """Streams one job's frames to a logged-in person allowed to see the job.

    Joins the job's group before reading the snapshot, so no frame falls between the two; the
    browser drops replies it already has (by node identity).
    """

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        job_id = int(self.scope["url_route"]["kwargs"]["job_id"])
        job = await _visible_job(user, job_id)
        if job is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.group_name = job.group_name
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        await self.accept()
        snapshot = await _snapshot(job_id)
        await self.send_json({"type": "job.snapshot", "job": snapshot})

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group_name"):
            await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The stream is one-way; anything the browser sends is ignored."""

    async def job_frame(self, event: dict[str, Any]) -> None:
        await self.send_json(
            {"type": "job.frame", "job": event["job"], "replies": event["replies"]}
        )
