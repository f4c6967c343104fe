"""submit_job and the reply bookkeeping, without a broker."""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from agents.protocol import Reply
from portal.jobs.catalog import JobRequestError
from portal.jobs.lifecycle import (
    RUN_JOB_TASK,
    SALVAGE_JOB_TASK,
    Orphans,
    finish,
    interrupt_orphaned_jobs,
    interrupt_unfinished_jobs,
    record_batch_sent,
    record_discovery,
    record_replies,
    start,
    take_over,
    this_runner,
)
from portal.jobs.models import Job
from portal.jobs.presenters import job_counts
from portal.jobs.services import submit_job
from portal.jobs.validation import build_filter, parse_filter_text

pytestmark = pytest.mark.django_db(transaction=True)


def submit(user: User, **overrides: object) -> Job:
    fields: dict[str, object] = {
        "user": user,
        "agent": "rpcutil",
        "action": "ping",
        "inputs": {},
        "filter": parse_filter_text(""),
        "filter_text": "",
        "source": Job.Source.API,
    }
    fields.update(overrides)
    return submit_job(**fields)  # type: ignore[arg-type]


def reply(identity: str, statuscode: int = 0) -> Reply:
    return Reply(
        requestid="r1",
        senderid=identity,
        senderagent="rpcutil",
        msgtime=time.time(),
        statuscode=statuscode,
        statusmsg="OK" if statuscode == 0 else "failed",
        data={"pong": 1},
    )


def test_submit_stores_the_job_and_queues_it_after_commit(
    fleet: list[str], operator, queued_tasks
) -> None:
    job = submit(operator, filter=parse_filter_text("customer=acme"), filter_text="customer=acme")
    assert job.status == Job.Status.QUEUED
    assert job.filter["compound"] == "customer=acme"
    assert job.collective == "mcollective"
    assert job.timeout > 0
    queued_tasks.assert_called_once_with(RUN_JOB_TASK, args=[job.pk])


@pytest.mark.parametrize(
    ("overrides", "field", "text"),
    [
        ({"agent": "nosuchagent"}, "agent", "unknown agent 'nosuchagent'"),
        ({"action": "nosuchaction"}, "action", "agent 'rpcutil' has no action 'nosuchaction'"),
        ({"action": "get_fact", "inputs": {}}, "inputs.fact", ""),
        ({"inputs": {"bogus": "1"}}, "inputs.bogus", ""),
    ],
)
def test_bad_requests_are_refused_and_nothing_is_queued(
    operator, queued_tasks, overrides, field, text
) -> None:
    with pytest.raises(JobRequestError) as caught:
        submit(operator, **overrides)
    assert field in caught.value.errors
    assert text in caught.value.errors[field]
    assert Job.objects.count() == 0
    queued_tasks.assert_not_called()


@pytest.mark.parametrize(
    "text", ["customer=", "(customer=acme", "customer => acme", "and", "/(a+)+/", "x=1 or or y=2"]
)
def test_malformed_filters_name_the_problem(text: str) -> None:
    with pytest.raises(JobRequestError) as caught:
        parse_filter_text(text)
    assert list(caught.value.errors) == ["filter"]
    assert caught.value.errors["filter"]


def test_mco_style_filter_parts_are_anded() -> None:
    job_filter = build_filter(
        "environment=prod", facts=["customer=acme"], classes=["apache"], identities=["web1"]
    )
    assert job_filter.to_dict() == {
        "fact": [{"fact": "customer", "operator": "==", "value": "acme"}],
        "cf_class": ["apache"],
        "agent": [],
        "identity": ["web1"],
        "compound": "environment=prod",
    }


def test_bad_fact_term_is_refused() -> None:
    with pytest.raises(JobRequestError) as caught:
        build_filter(facts=["customer"])
    assert caught.value.errors["filter"].startswith("fact filter:")


def test_a_job_is_claimed_once(fleet: list[str], operator, queued_tasks) -> None:
    job = submit(operator)
    assert start(job.pk) is not None
    assert start(job.pk) is None  # a re-delivered task must not publish again


def test_replies_are_counted_once_and_no_response_listed(
    fleet: list[str], operator, queued_tasks
) -> None:
    job = submit(operator)
    job = start(job.pk)
    record_discovery(job, ["n1", "n2", "n3"], ["n1", "n2", "n3"])
    record_batch_sent(job, "request-1", 3, wait=60)
    record_replies(job, [reply("n1"), reply("n2", statuscode=5)])
    record_replies(job, [reply("n1")])  # a repeat that reached the database is ignored
    assert job.replies.count() == 2
    finish(job, Job.Status.COMPLETED)
    job.refresh_from_db()
    assert job.no_response == ["n3"]
    assert job.first_reply_at is not None and job.last_reply_at >= job.first_reply_at
    counts = job_counts(job)
    assert counts["expected"] == 3
    assert counts["ok"] == 1
    assert counts["failed"] == 1
    assert counts["no_response"] == 1


def test_unfinished_jobs_are_interrupted_keeping_their_replies(
    fleet: list[str], operator, queued_tasks
) -> None:
    job = start(submit(operator).pk)
    record_discovery(job, ["n1", "n2"], ["n1", "n2"])
    record_batch_sent(job, "request-1", 2, wait=60)
    record_replies(job, [reply("n1")])
    assert interrupt_unfinished_jobs("worker restarted") == 1
    job.refresh_from_db()
    assert job.status == Job.Status.INTERRUPTED
    assert job.error == "worker restarted"
    assert job.no_response == ["n2"]
    assert list(job.replies.values_list("identity", flat=True)) == ["n1"]


def test_jobs_whose_runner_died_are_interrupted(fleet: list[str], operator, queued_tasks) -> None:
    here = socket.gethostname()
    dead_here = start(submit(operator).pk)
    alive_here = start(submit(operator).pk)
    silent_elsewhere = start(submit(operator).pk)
    fresh_elsewhere = start(submit(operator).pk)
    record_discovery(dead_here, ["n1", "n2"], ["n1", "n2"])
    record_batch_sent(dead_here, "request-1", 2, wait=60)
    record_replies(dead_here, [reply("n1")])
    Job.objects.filter(pk=dead_here.pk).update(runner=f"{here}:{2**22 + 12345}")
    Job.objects.filter(pk=alive_here.pk).update(runner=f"{here}:{os.getpid()}")
    Job.objects.filter(pk=silent_elsewhere.pk).update(
        runner="other-host:1", heartbeat_at=timezone.now() - timedelta(seconds=120)
    )
    Job.objects.filter(pk=fresh_elsewhere.pk).update(runner="other-host:1")

    orphans = interrupt_orphaned_jobs(stale_after=30)
    assert sorted(orphans.interrupted) == sorted([dead_here.pk, silent_elsewhere.pk])
    assert orphans.taken_over == []
    dead_here.refresh_from_db()
    assert dead_here.status == Job.Status.INTERRUPTED
    assert "process ended" in dead_here.error
    assert list(dead_here.replies.values_list("identity", flat=True)) == ["n1"]
    assert dead_here.no_response == ["n2"]
    alive_here.refresh_from_db()
    assert alive_here.status == Job.Status.RUNNING


def test_a_dead_runner_with_replies_outstanding_is_taken_over_once(
    fleet: list[str], operator, queued_tasks
) -> None:
    """Sent nodes without an answer and a known reply queue: the sweep takes the job over and
    queues its salvage instead of ending it; a second sweeper or delivery gets nothing."""
    job = start(submit(operator).pk)
    record_discovery(job, ["n1", "n2", "n3"], ["n1", "n2", "n3"], batch_count=2)
    record_batch_sent(job, "request-1", 2, wait=60, reply_to="/queue/mcollective.reply.w1")
    record_replies(job, [reply("n1")])
    dead = f"{socket.gethostname()}:{2**22 + 12345}"
    Job.objects.filter(pk=job.pk).update(runner=dead)

    orphans = interrupt_orphaned_jobs(stale_after=30)
    assert orphans.taken_over == [job.pk]
    assert orphans.interrupted == []
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING
    assert job.runner == this_runner()
    assert (job.reply_to, job.current_requestid) == ("/queue/mcollective.reply.w1", "request-1")
    stopped = f"the runner {dead} stopped (its process ended)"
    assert queued_tasks.call_args_list[-1] == mock.call(
        SALVAGE_JOB_TASK, args=[job.pk, stopped, this_runner()]
    )
    # Taken from the dead runner once: a second taker naming it gets nothing.
    assert take_over(job, dead, stopped) is False
    # The sweeper itself is alive and beating: the next sweep leaves the job to it.
    assert interrupt_orphaned_jobs(stale_after=30) == Orphans()


def test_a_nul_character_in_a_filter_is_refused() -> None:
    with pytest.raises(JobRequestError, match="NUL"):
        parse_filter_text("customer=ac\x00me")
