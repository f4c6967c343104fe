"""Sub-collectives: a job sent in a datacenter's sub-collective reaches only that datacenter.

The option is validated like the others; discovery and the target count keep to the
collective's members; the runner publishes on the sub-collective's topics and reads replies
from its reply queue, so a node outside it never hears the request (checked here through the
embedded broker; tests/integration/test_subcollective.py checks the ActiveMQ network).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import Client
from django.utils import timezone

from agents.filters import Filter
from agents.protocol.security import SigningKey, public_path
from agents.simulator import Simulator
from portal.core.embedded_broker import EmbeddedBroker
from portal.inventory.models import Node
from portal.jobs import runner
from portal.jobs.models import Job
from portal.jobs.options import ExecutionOptions, OptionsError
from portal.jobs.plans import estimate_targets
from portal.jobs.services import submit_job
from portal.jobs.validation import parse_filter_text
from portal.rbac.policy import Permit
from tests.conftest import enrol_accepted


def _node(identity: str, datacenter: str, collectives: list[str]) -> Node:
    now = timezone.now()
    return Node(
        identity=identity,
        facts={"datacenter": datacenter},
        collectives=collectives,
        first_seen=now,
        last_seen=now,
        registered_at=now,
    )


@pytest.fixture
def two_datacenters(db: None) -> None:
    Node.objects.bulk_create(
        [
            _node("a1", "a", ["mcollective", "dc_a"]),
            _node("a2", "a", ["mcollective", "dc_a"]),
            _node("b1", "b", ["mcollective", "dc_b"]),
            _node("old", "a", ["mcollective"]),  # registered before it joined dc_a
        ]
    )


def test_the_collective_option_accepts_the_configured_sub_collectives() -> None:
    assert ExecutionOptions.parse({"collective": "dc_a"}).target_collective == "dc_a"
    # The main collective, named or not, is the default.
    assert ExecutionOptions.parse({"collective": "mcollective"}).collective == ""
    assert ExecutionOptions.parse({}).target_collective == "mcollective"


def test_an_unknown_collective_is_refused_with_the_choices() -> None:
    with pytest.raises(OptionsError) as caught:
        ExecutionOptions.parse({"collective": "dc_z"})
    assert caught.value.errors == {"options.collective": "must be one of mcollective, dc_a, dc_b"}


def test_discovery_and_the_count_keep_to_the_sub_collective(two_datacenters: None) -> None:
    everything = Filter()
    assert runner.discover_from_inventory(everything) == ["a1", "a2", "b1", "old"]
    assert runner.discover_from_inventory(everything, "mcollective") == ["a1", "a2", "b1", "old"]
    assert runner.discover_from_inventory(everything, "dc_a") == ["a1", "a2"]
    # The filter still applies inside the collective.
    assert runner.discover_from_inventory(parse_filter_text("datacenter=b"), "dc_a") == []
    estimate = estimate_targets(
        Permit(True, "admin", everything), ExecutionOptions.parse({"collective": "dc_b"})
    )
    assert (estimate.count, estimate.datacenters) == (1, {"b": 1})


def test_the_job_records_its_collective_and_the_page_shows_it(
    operator, two_datacenters: None, queued_tasks
) -> None:
    job = submit_job(
        user=operator, agent="rpcutil", action="ping", inputs={},
        filter=parse_filter_text(""), filter_text="", source="api",
        options={"collective": "dc_a"},
    )  # fmt: skip
    assert job.collective == "dc_a"
    client = Client()
    client.force_login(operator)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert '<dd id="job-collective"><code>dc_a</code></dd>' in page
    form = client.get("/jobs/new/").content.decode()
    assert 'id="option-collective"' in form and '<option value="dc_b"' in form


@pytest.fixture
def embedded_fleet(settings, tmp_path) -> Iterator[Simulator]:
    """Six nodes (datacenters a and b) in their sub-collectives, on one embedded broker."""
    with EmbeddedBroker(port=0) as broker:
        settings.STOMP_BROKERS = broker.address
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
        settings.SWITCHBOARD_SIGNING_KEY = tmp_path / "portal.pem"
        SigningKey.load_or_create(settings.SWITCHBOARD_SIGNING_KEY)
        pool = [("127.0.0.1", broker.port)]
        with Simulator(
            6,
            datacenters={"a": pool, "b": pool},
            register_interval=0,
            sub_collectives=True,
            trusted_keys=[str(public_path(settings.SWITCHBOARD_SIGNING_KEY))],
        ) as sim:
            yield sim


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("discovery", ["broadcast", "inventory"])
def test_a_sub_collective_job_is_answered_by_its_members_only(
    operator, embedded_fleet: Simulator, queued_tasks, discovery: str
) -> None:
    Node.objects.bulk_create(
        _node(d.identity, d.node.facts["datacenter"], list(d.config.collectives))
        for d in embedded_fleet.daemons
    )
    enrol_accepted({d.identity: d.signing_key for d in embedded_fleet.daemons})
    members = sorted(d.identity for d in embedded_fleet.daemons if "dc_a" in d.config.collectives)
    others = [d for d in embedded_fleet.daemons if d.identity not in members]
    assert len(members) == 3 and len(others) == 3
    job = submit_job(
        user=operator, agent="rpcutil", action="ping", inputs={},
        filter=parse_filter_text(""), filter_text="", source="api",
        options={"collective": "dc_a", "discovery": discovery},
    )  # fmt: skip
    job = runner.run_job(job.pk)
    assert job.status == Job.Status.COMPLETED, job.status_message
    assert sorted(job.replies.values_list("identity", flat=True)) == members
    # Nothing reached the other datacenter's nodes: they never counted a request.
    assert [d.stats()["total"] for d in others] == [0, 0, 0]
