"""Execution options: validation, the seeded limit, batches; cancelling; reply signatures."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from agents.protocol import Reply, Request, encode
from agents.protocol.security import SigningKey, open_reply, seal_reply
from portal.accounts.services import issue_token
from portal.broker.gateway import (
    REPLY_SUBSCRIPTION,
    BrokerGateway,
    BrokerSettings,
    ReceivedReply,
    acknowledges_replies,
)
from portal.jobs.lifecycle import start
from portal.jobs.models import Job
from portal.jobs.options import ExecutionOptions, OptionsError
from portal.jobs.runner import _Collector
from portal.jobs.services import submit_job
from portal.jobs.validation import parse_filter_text


def test_defaults_run_everything_at_once() -> None:
    options = ExecutionOptions.parse({})
    assert options.as_dict() == {
        "discovery": "inventory",
        "batch_size": 0,
        "batch_sleep": 0.0,
        "limit": "",
        "limit_seed": None,
        "ttl": 60,
        "collective": "",
    }
    assert options.batches(["a", "b", "c"]) == [["a", "b", "c"]]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"discovery": "carrier-pigeon"}, "options.discovery"),
        ({"limit": "ten"}, "options.limit"),
        ({"limit": "0"}, "options.limit"),
        ({"limit": "150%"}, "options.limit"),
        ({"batch_size": -1}, "options.batch_size"),
        ({"batch_size": "x"}, "options.batch_size"),
        ({"batch_sleep": 99999}, "options.batch_sleep"),
        ({"ttl": 0}, "options.ttl"),
        ({"colour": "blue"}, "options.colour"),
    ],
)
def test_bad_options_name_the_field(raw, field) -> None:
    with pytest.raises(OptionsError) as caught:
        ExecutionOptions.parse(raw)
    assert list(caught.value.errors) == [field]


def test_the_limited_choice_is_seeded_and_reproducible() -> None:
    nodes = [f"n{i:02d}" for i in range(20)]
    first = ExecutionOptions.parse({"limit": "5", "limit_seed": 7}).choose(nodes)
    again = ExecutionOptions.parse({"limit": "5", "limit_seed": "7"}).choose(list(reversed(nodes)))
    other = ExecutionOptions.parse({"limit": "5", "limit_seed": 8}).choose(nodes)
    assert len(first) == 5 and first == again and first != other
    assert set(first) <= set(nodes)
    assert len(ExecutionOptions.parse({"limit": "10%"}).choose(nodes)) == 2
    assert ExecutionOptions.parse({"limit": "50"}).choose(nodes) == nodes


def test_batches_keep_the_order() -> None:
    options = ExecutionOptions.parse({"batch_size": 2})
    assert options.batches(["a", "b", "c", "d", "e"]) == [["a", "b"], ["c", "d"], ["e"]]


@pytest.mark.django_db(transaction=True)
def test_api_stores_options_and_refuses_bad_ones(fleet: list[str], operator, queued_tasks) -> None:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {issue_token(operator.username)}")
    payload = {"agent": "rpcutil", "action": "ping", "options": {"limit": "10%", "batch_size": 5}}
    response = api.post("/api/jobs/", payload, format="json")
    assert response.status_code == 201, response.content
    job = Job.objects.get()
    assert job.options["limit"] == "10%" and job.options["batch_size"] == 5
    bad = api.post("/api/jobs/", dict(payload, options={"limit": "all"}), format="json")
    assert bad.status_code == 400
    assert "options.limit" in bad.json()["errors"]
    assert Job.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_cancel_a_queued_job_from_the_api_and_not_twice_from_the_cli(
    fleet: list[str], operator, queued_tasks
):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {issue_token(operator.username)}")
    job_id = api.post("/api/jobs/", {"agent": "rpcutil", "action": "ping"}, format="json").json()[
        "id"
    ]
    response = api.post(f"/api/jobs/{job_id}/cancel/")
    assert response.status_code == 200  # ended at once: it had not started
    assert response.json()["status"] == "cancelled"
    assert response.json()["cancelled_by"] == operator.username
    assert start(job_id) is None  # the worker will not run it
    with pytest.raises(CommandError, match="already finished"):
        call_command("cancel_job", str(job_id), "--user", operator.username)


def _received(identity: str, key: SigningKey | None) -> ReceivedReply:
    request = Request.new(collective="mcollective", agent="rpcutil", action="ping", callerid="u")
    reply = Reply.for_request(request, senderid=identity, statuscode=0, statusmsg="OK")
    return ReceivedReply(*open_reply(seal_reply(reply, key))) if key else ReceivedReply(reply)


class _UnconnectedGateway(BrokerGateway):
    """The real gateway, fed frames through its own listener instead of a broker connection."""

    connected = True

    def receive(self, reply: Reply, key: SigningKey | None = None, message_id: str = "") -> None:
        body = seal_reply(reply, key) if key else encode(reply)
        self._listener.on_message(SimpleNamespace(body=body, headers={"message-id": message_id}))


def _gateway() -> _UnconnectedGateway:
    return _UnconnectedGateway(BrokerSettings.from_django())


@pytest.mark.django_db(transaction=True)
def test_replies_are_checked_against_registered_keys(
    fleet: list[str], operator, queued_tasks
) -> None:
    job = submit_job(
        user=operator, agent="rpcutil", action="ping", inputs={},
        filter=parse_filter_text(""), filter_text="", source="api",
    )  # fmt: skip
    job = start(job.pk)
    honest, impostor = SigningKey.generate(), SigningKey.generate()
    keys = {"signed": honest.public_key, "forged": honest.public_key}
    targets = {"signed", "forged", "unknown"}
    collector = _Collector(job, _gateway(), lambda rows: None, keys, targets)
    collector.accept(_received("signed", honest))
    collector.accept(_received("forged", impostor))  # signed, but not with the registered key
    collector.accept(_received("forged", None))  # unsigned, though the node registered a key
    collector.accept(_received("unknown", None))  # no trusted key (not accepted): refused
    collector.accept(_received("unknown", SigningKey.generate()))  # signed, still not accepted
    collector.accept(_received("signed", honest))  # a second reply
    collector.accept(_received("late", None))  # matched, but missed discovery: not targeted
    collector.flush()
    job.refresh_from_db()
    stored = dict(job.replies.values_list("identity", "verified"))
    assert stored == {"signed": True}
    assert job.dropped_count == 6


@pytest.mark.django_db(transaction=True)
def test_replies_to_other_requests_are_dropped_and_counted(
    fleet: list[str], operator, queued_tasks, caplog
) -> None:
    job = submit_job(
        user=operator, agent="rpcutil", action="ping", inputs={},
        filter=parse_filter_text(""), filter_text="", source="api",
    )  # fmt: skip
    job = start(job.pk)
    gateway = _gateway()
    request = gateway.new_request(
        agent="rpcutil", action="ping", data={}, filter={}, callerid="u", ttl=60
    )
    earlier = gateway.new_request(
        agent="rpcutil", action="ping", data={}, filter={}, callerid="u", ttl=60
    )
    key_a, key_b = SigningKey.generate(), SigningKey.generate()
    gateway.receive(Reply.for_request(earlier, senderid="b", statuscode=0, statusmsg="OK"), key_b)
    gateway._listener.on_message(SimpleNamespace(body="{not json", headers={}))
    gateway.receive(Reply.for_request(request, senderid="a", statuscode=0, statusmsg="OK"), key_a)
    keys = {"a": key_a.public_key, "b": key_b.public_key}
    collector = _Collector(job, gateway, lambda rows: None, keys, {"a", "b"})
    collector.collect(request.requestid, {"a"}, wait=5)
    collector.flush()
    job.refresh_from_db()
    assert list(job.replies.values_list("identity", flat=True)) == ["a"]
    assert job.dropped_count == 2  # the earlier request's reply and the malformed frame
    assert f"job {job.pk}: dropped 2 replies that were not to request {request.requestid}" in (
        caplog.text
    )


@pytest.mark.django_db(transaction=True)
def test_with_broker_identity_required_a_reply_counts_only_from_its_own_login(
    fleet: list[str], operator, queued_tasks, settings
) -> None:
    settings.SWITCHBOARD_REQUIRE_BROKER_IDENTITY = True
    job = submit_job(
        user=operator, agent="rpcutil", action="ping", inputs={},
        filter=parse_filter_text(""), filter_text="", source="api",
    )  # fmt: skip
    job = start(job.pk)
    key_a, key_b = SigningKey.generate(), SigningKey.generate()
    keys = {"a": key_a.public_key, "b": key_b.public_key}
    collector = _Collector(job, _gateway(), lambda rows: None, keys, {"a", "b"})
    stamped = dataclasses.replace(_received("a", key_a), sender="a")
    borrowed = dataclasses.replace(_received("b", key_b), sender="a")  # a's login, b's reply
    unstamped = _received("b", key_b)  # no stamp: a plain port, or a broker that does not
    for received in (stamped, borrowed, unstamped):
        collector.accept(received)
    collector.flush()
    job.refresh_from_db()
    assert list(job.replies.values_list("identity", flat=True)) == ["a"]
    assert job.dropped_count == 2


class _AckRecorder:
    """Stands in for the STOMP connection: records each ACK with the replies stored by then."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.acks: list[tuple[str, str, int]] = []

    def is_connected(self) -> bool:
        return True

    def ack(self, message_id: str, subscription: str) -> None:
        self.acks.append((message_id, subscription, self.job.replies.count()))


@pytest.mark.django_db(transaction=True)
def test_replies_are_acknowledged_cumulatively_only_once_stored(
    fleet: list[str], operator, queued_tasks
) -> None:
    """On ActiveMQ the broker keeps a reply until it is acknowledged: one cumulative ACK per
    flush, after the INSERT, so a worker killed before it stored a reply leaves it queued."""
    job = submit_job(
        user=operator, agent="rpcutil", action="ping", inputs={},
        filter=parse_filter_text(""), filter_text="", source="api",
    )  # fmt: skip
    job = start(job.pk)
    gateway = _gateway()
    connection = _AckRecorder(job)
    gateway._connection = connection
    gateway.acknowledging = True
    request = gateway.new_request(
        agent="rpcutil", action="ping", data={}, filter={}, callerid="u", ttl=60
    )
    earlier = gateway.new_request(
        agent="rpcutil", action="ping", data={}, filter={}, callerid="u", ttl=60
    )
    key_a, key_b = SigningKey.generate(), SigningKey.generate()
    gateway.receive(
        Reply.for_request(request, senderid="a", statuscode=0, statusmsg="OK"), key_a, "m1"
    )
    gateway.receive(
        Reply.for_request(earlier, senderid="b", statuscode=0, statusmsg="OK"), key_b, "m2"
    )
    gateway.receive(
        Reply.for_request(request, senderid="b", statuscode=0, statusmsg="OK"), key_b, "m3"
    )
    keys = {"a": key_a.public_key, "b": key_b.public_key}
    collector = _Collector(job, gateway, lambda rows: None, keys, {"a", "b"})
    assert collector.collect(request.requestid, {"a", "b"}, wait=5)
    assert connection.acks == [("m3", REPLY_SUBSCRIPTION, 2)]
    collector.flush()  # nothing new handed out: no second ACK
    assert connection.acks == [("m3", REPLY_SUBSCRIPTION, 2)]


def test_only_activemq_gets_client_acknowledgements() -> None:
    assert acknowledges_replies("ActiveMQ/5.17.6")
    assert not acknowledges_replies("coilmq/1.0.1")
    assert not acknowledges_replies("")
