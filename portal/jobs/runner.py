"""Runs one job over the broker: discover, publish, collect, store, stream.

Called by the Celery task and by the ``rpc`` command, always after ``submit_job``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.utils import timezone

from agents.filters import Filter
from agents.protocol import BrokerUnavailable, Reply
from portal.broker.gateway import (
    BrokerGateway,
    BrokerSettings,
    ReceivedReply,
    load_registered_keys,
    sent_as_claimed,
)
from portal.inventory.models import Node
from portal.inventory.services import trusted_keys
from portal.jobs import lifecycle
from portal.jobs.lifecycle import beat, cancel_requested, finish
from portal.jobs.models import Job, NodeReply
from portal.jobs.options import ExecutionOptions
from portal.jobs.plans import current_permit
from portal.jobs.streaming import push_job_frame
from portal.rbac.policy import apply_scopes, roles_of

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[Job, Sequence[NodeReply]], None]
# How often a running job looks for a cancel request, in seconds.
CANCEL_CHECK_INTERVAL = 0.5
# How often a running job records that its runner is alive, in seconds.
HEARTBEAT_INTERVAL = 5.0


def _progress_of(
    job: Job, on_progress: ProgressCallback | None
) -> Callable[[Sequence[NodeReply]], None]:
    """What a runner calls with each stored frame: push it to the job's watchers, then to the
    caller's callback (the ``rpc`` command prints it)."""

    def progress(replies: Sequence[NodeReply]) -> None:
        push_job_frame(job, replies)
        if on_progress is not None:
            on_progress(job, replies)

    return progress


def run_job(job_id: int, on_progress: ProgressCallback | None = None) -> Job | None:
    """Run a queued job to its end; ``None`` if another run already claimed it.

    A broker that cannot be reached, or goes away mid-job, fails the job with the reason
    (keeping the replies already stored) instead of hanging.
    """
    job = lifecycle.start(job_id)
    if job is None:
        logger.warning("job %s was already claimed; not sending it again", job_id)
        return None

    progress = _progress_of(job, on_progress)

    progress(())
    # Checked again before anything is sent: a grant revoked (or narrowed) since the job was
    # submitted applies to it.
    permit = current_permit(job)
    if not permit.allowed:
        finish(job, Job.Status.FAILED, f"refused when it was about to run: {permit.reason}")
        progress(())
        return job
    if permit.scopes and permit.scope_text != job.scope:
        # The grant's scope changed while the job waited: what it was sent to AND the new
        # scope, so a job only ever narrows after it was confirmed (or approved).
        narrower = apply_scopes(Filter.from_dict(job.filter), permit.scopes)
        lifecycle.narrow_to_scope(job, narrower.to_dict(), permit.scope_text)
    try:
        broker_settings = replace(BrokerSettings.from_django(), collective=job.collective)
        with BrokerGateway(broker_settings) as gateway:
            _discover_and_collect(job, gateway, progress)
    except BrokerUnavailable as exc:
        finish(job, Job.Status.FAILED, f"message broker unavailable: {exc}")
    except Exception as exc:
        logger.exception("job %s crashed", job.pk)
        finish(job, Job.Status.FAILED, f"internal error: {exc}")
        raise
    finally:
        progress(())
    return job


# After a dead runner's batch wait ends, how long to keep reading its queue: replies the
# nodes sent in time may still be on their way through the bridges.
SALVAGE_GRACE = 2.0


def salvage_job(
    job_id: int, stopped: str, taken_by: str, on_progress: ProgressCallback | None = None
) -> Job | None:
    """Store the replies waiting in the reply queue of a job whose runner died, then end it.

    The sweep took the job over as ``taken_by`` (``lifecycle.interrupt_orphaned_jobs``); this
    process becomes its runner unless someone else already did (a second delivery of the
    task). It reads the dead runner's reply queue, where the broker kept every reply the
    runner had not acknowledged after storing it (ActiveMQ;
    ``portal.broker.gateway.acknowledges_replies``), until the current batch's wait is over,
    storing each node's reply once, as the runner would have. Batches never sent stay unsent:
    RPC is at-most-once, and sending them would be deciding for the operator after a crash.
    The job then ends *interrupted*, saying so and how many replies were saved.
    """
    job = Job.objects.get(pk=job_id)
    if not lifecycle.take_over(job, taken_by, stopped):
        logger.info("job %s: already taken over by %s", job_id, job.runner)
        return None

    progress = _progress_of(job, on_progress)

    before = job.replied_count
    sent = job.targeted[: job.sent_count]
    replied = set(job.replies.values_list("identity", flat=True))
    waiting = set(sent) - replied - set(job.no_response)
    wait = SALVAGE_GRACE
    if job.waiting_until is not None:
        wait += max((job.waiting_until - timezone.now()).total_seconds(), 0.0)
    problem = ""
    try:
        broker_settings = replace(BrokerSettings.from_django(), collective=job.collective)
        with BrokerGateway(broker_settings, reply_to=job.reply_to) as gateway:
            keys = registered_keys(sorted(waiting))
            collector = _Collector(job, gateway, progress, keys, waiting)
            collector.collect(job.current_requestid, waiting, wait)
            collector.flush()
    except BrokerUnavailable as exc:
        problem = f"; its reply queue could not be read: {exc}"
    job.refresh_from_db()
    saved = job.replied_count - before
    if cancel_requested(job):
        lifecycle.cancelled_while_running(job)
    else:
        finish(
            job,
            Job.Status.INTERRUPTED,
            f"interrupted: {stopped}; {lifecycle.this_runner()} took the job over and stored "
            f"{saved} more replies from its reply queue{problem}",
        )
    progress(())
    return job


def _discover_and_collect(
    job: Job, gateway: BrokerGateway, progress: Callable[[Sequence[NodeReply]], None]
) -> None:
    options = ExecutionOptions.parse(job.options)
    caller = Caller(
        callerid=f"user={job.created_by.get_username()}",
        # The caller's roles travel in the signed request, for the nodes' own policy files.
        roles=roles_of(job.created_by),
    )
    if job.discovery_method == "inventory":
        discovered = discover_from_inventory(Filter.from_dict(job.filter), job.collective)
    else:
        discovered = enrolled_responders(
            gateway.discover(
                job.filter,
                caller.callerid,
                timeout=settings.SWITCHBOARD_DISCOVERY_TIMEOUT,
                ttl=options.ttl,
                roles=caller.roles,
            )
        )
    targets = options.choose(discovered)
    batches = options.batches(targets)
    lifecycle.record_discovery(job, discovered, targets, len(batches))
    if not targets:
        finish(job, Job.Status.COMPLETED, "no node matched the filter")
        return
    progress(())

    collector = _Collector(job, gateway, progress, registered_keys(targets), set(targets))
    # Every discovered node is targeted and in one batch: the job's own filter reaches them.
    # Otherwise each request names its nodes, since the filter alone would reach them all.
    name_nodes = len(batches) > 1 or len(targets) < len(discovered)
    for number, batch in enumerate(batches):
        # Before each batch (after the pause between batches): stop if a cancel came.
        if not _pause(job, options.batch_sleep if number else 0):
            break
        if number and not current_permit(job).allowed:
            finish(job, Job.Status.FAILED, "stopped: the grant was revoked while it ran")
            return
        request = gateway.new_request(
            agent=job.agent,
            action=job.action,
            data=job.inputs,
            filter=dict(job.filter, identity=batch) if name_nodes else job.filter,
            callerid=caller.callerid,
            ttl=options.ttl,
            roles=caller.roles,
        )
        gateway.publish(request)
        lifecycle.record_batch_sent(
            job, request.requestid, len(batch), job.timeout, reply_to=gateway.reply_to
        )
        progress(())
        finished_wait = collector.collect(request.requestid, set(batch), job.timeout)
        collector.flush()
        if not finished_wait:
            break  # cancelled while waiting: its silent nodes are settled by finish
        lifecycle.settle_batch(job, set(batch) - collector.answered)
        progress(())
    if cancel_requested(job):
        lifecycle.cancelled_while_running(job)
    else:
        finish(job, Job.Status.COMPLETED)


@dataclass(frozen=True)
class Caller:
    """Who a job's requests are sent as."""

    callerid: str
    roles: list[str]


def discover_from_inventory(job_filter: Filter, collective: str | None = None) -> list[str]:
    """Identities of the fresh inventory nodes the filter matches, read from the database;
    only the members of ``collective`` when it is a sub-collective."""
    return sorted(
        Node.objects.targeted_by(job_filter, collective).fresh().values_list("identity", flat=True)
    )


def registered_keys(identities: Sequence[str]) -> dict[str, Ed25519PublicKey]:
    """The keys the portal trusts for these nodes (accepted enrolments), to check replies."""
    return load_registered_keys(trusted_keys(identities))


def enrolled_responders(answers: dict[str, ReceivedReply]) -> list[str]:
    """The identities among a broadcast discovery's answers that are accepted nodes and
    signed their answer with their trusted key; the others are logged and left out."""
    keys = registered_keys(list(answers))
    found = sorted(
        identity
        for identity, answer in answers.items()
        if identity in keys
        and answer.signed_by(keys[identity])
        and sent_as_claimed(answer.sender, identity)
    )
    if len(found) < len(answers):
        strangers = sorted(set(answers) - set(found))
        logger.warning(
            "discovery: left out %d answers from nodes that are not accepted or did not sign "
            "with their trusted key: %s",
            len(strangers),
            ", ".join(strangers[:10]) + (" ..." if len(strangers) > 10 else ""),
        )
    return found


def _pause(job: Job, seconds: float) -> bool:
    """Sleep between batches; False if the job was cancelled meanwhile."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        beat(job)
        if cancel_requested(job):
            return False
        time.sleep(min(CANCEL_CHECK_INTERVAL, max(deadline - time.monotonic(), 0)))
    return not cancel_requested(job)


class _Collector:
    """Collects one job's replies: checks who sent them and their signatures, and flushes them
    in frames to ``lifecycle.record_replies`` (which keeps one reply per node)."""

    def __init__(
        self,
        job: Job,
        gateway: BrokerGateway,
        progress: Callable[[Sequence[NodeReply]], None],
        keys: dict[str, Ed25519PublicKey],
        targets: set[str],
    ) -> None:
        self.job = job
        self.gateway = gateway
        self.targets = targets
        self.progress = progress
        self.keys = keys
        self.answered: set[str] = set()  # targets that replied: the wait ends when all have
        self.pending: list[Reply] = []
        self.verified: set[str] = set()
        self.dropped = 0
        self.gateway_dropped = 0
        self.next_flush = time.monotonic() + settings.SWITCHBOARD_FLUSH_INTERVAL
        self.next_cancel_check = time.monotonic() + CANCEL_CHECK_INTERVAL
        self.next_beat = time.monotonic() + HEARTBEAT_INTERVAL

    def collect(self, requestid: str, expected: set[str], wait: float) -> bool:
        """Take replies to ``requestid`` until ``expected`` all answered or ``wait`` seconds.

        Returns False if the job was cancelled meanwhile.
        """
        try:
            return self._collect(requestid, expected, wait)
        finally:
            # Replies the gateway dropped (malformed, or for another request) count as this
            # job's dropped replies: the job page says how many answers were not kept.
            dropped = self.gateway.stats.dropped - self.gateway_dropped
            if dropped:
                logger.warning(
                    "job %s: dropped %d replies that were not to request %s "
                    "(late answers to an earlier request, or malformed)",
                    self.job.pk,
                    dropped,
                    requestid,
                )
            self.dropped += dropped
            self.gateway_dropped = self.gateway.stats.dropped

    def _collect(self, requestid: str, expected: set[str], wait: float) -> bool:
        for received in self.gateway.replies(requestid, time.monotonic() + wait):
            if received is not None:
                self.accept(received)
            now = time.monotonic()
            done = expected <= self.answered
            # Also with nothing pending: replies dropped meanwhile are acknowledged then.
            if done or now >= self.next_flush:
                self.flush()
            if done:
                return True
            if now >= self.next_beat:
                beat(self.job)
                self.next_beat = now + HEARTBEAT_INTERVAL
            if now >= self.next_cancel_check:
                self.next_cancel_check = now + CANCEL_CHECK_INTERVAL
                if cancel_requested(self.job):
                    return False
        return True

    def accept(self, received: ReceivedReply) -> None:
        identity = received.reply.senderid
        if identity not in self.targets:
            # A node that matched the filter but missed discovery (or a limit left out):
            # the job's counts are about the nodes it targeted, so its reply is not kept.
            logger.info(
                "job %s: dropped a reply from %s, which was not targeted", self.job.pk, identity
            )
            self.dropped += 1
            return
        if not sent_as_claimed(received.sender, identity):
            logger.warning(
                "job %s: dropped a reply claiming to be from %s: the broker says %r sent it",
                self.job.pk,
                identity,
                received.sender,
            )
            self.dropped += 1
            return
        key = self.keys.get(identity)
        if key is None or not received.signed_by(key):
            # Only an accepted node signing with its pinned key speaks for it: anything else
            # is an impostor, a tampered reply or a revoked node, never stored as its answer.
            logger.warning(
                "job %s: dropped a reply from %s: %s",
                self.job.pk,
                identity,
                "it is not an accepted node"
                if key is None
                else "its signature does not match the key the portal trusts for it",
            )
            self.dropped += 1
            return
        self.answered.add(identity)
        self.verified.add(identity)
        self.pending.append(received.reply)

    def flush(self) -> None:
        """Store what is pending in one batch and push it to the job's watchers."""
        now = time.monotonic()
        if now >= self.next_beat:
            beat(self.job)
            self.next_beat = now + HEARTBEAT_INTERVAL
        rows: list[NodeReply] = []
        if self.pending:
            rows = lifecycle.record_replies(self.job, self.pending, self.verified)
            # record_replies keeps one reply per node: the repeats it left out were dropped.
            self.dropped += len(self.pending) - len(rows)
            self.pending = []
        lifecycle.record_dropped(self.job, self.dropped)
        self.dropped = 0
        # Stored (or deliberately dropped) now: the broker may forget them.
        self.gateway.settle()
        if rows:
            self.progress(rows)
        self.next_flush = time.monotonic() + settings.SWITCHBOARD_FLUSH_INTERVAL
