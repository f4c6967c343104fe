"""Every page and URL that shows a node identity works for every identity a node may have.

Identities are host-name-safe (agents.protocol.identity); the property test generates them
at the edges (253 characters, dots, dashes, underscores, digits only) and renders the
inventory list, the node page, and the audit history's node, job and event pages.
"""

from __future__ import annotations

import html
import string

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agents.protocol.identity import MAX_IDENTITY_LENGTH, identity_problem, is_valid_identity
from agents.protocol.security import SigningKey
from portal.audit.services import record_event
from portal.inventory.models import Node
from portal.jobs.models import NodeReply
from portal.jobs.services import submit_job
from portal.jobs.validation import parse_filter_text
from tests.conftest import enrol_accepted

FIRST = string.ascii_letters + string.digits + "_"
REST = FIRST + ".-"
identities = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(FIRST),
    st.text(REST, max_size=MAX_IDENTITY_LENGTH - 1),
)


@given(identities)
def test_generated_identities_are_valid(identity: str) -> None:
    assert is_valid_identity(identity), identity_problem(identity)


@pytest.mark.parametrize(
    "bad",
    ["", "x/<b>y</b>", "a" * 254, "has space", "a\u202eb", ".lead", "-lead", "é.example", "a:b"],
)
def test_anything_else_is_refused_with_the_rule_it_breaks(bad: str) -> None:
    assert not is_valid_identity(bad)
    assert identity_problem(bad)


@pytest.mark.django_db
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(identity=identities)
@example(identity="w" * MAX_IDENTITY_LENGTH)
@example(identity="0")
@example(identity="_a.-_b--..c")
@example(identity="web01.dc1.example.")
def test_every_page_showing_an_identity_renders_it(
    identity: str, admin_user: User, queued_tasks
) -> None:
    now = timezone.now()
    _, created = Node.objects.update_or_create(
        identity=identity,
        defaults={"facts": {"customer": "acme"}, "first_seen": now, "last_seen": now,
                  "registered_at": now},
    )  # fmt: skip
    if created:
        enrol_accepted({identity: SigningKey.derive(identity.encode())})
    job = submit_job(
        user=admin_user, agent="rpcutil", action="ping", inputs={},
        filter=parse_filter_text(""), filter_text="", source="api",
    )  # fmt: skip
    NodeReply.objects.create(
        job=job, identity=identity, statuscode=0, statusmsg="OK", received_at=now, verified=True
    )
    event = record_event("job.finished", actor=admin_user, job_id=job.pk, nodes=[identity])
    client = Client()
    client.force_login(admin_user)
    shown = html.escape(identity)
    pages = [
        "/inventory/",
        f"/inventory/?q=identity:{identity}",
        f"/inventory/{identity}/",
        f"/audit/nodes/{identity}/",
        f"/audit/jobs/{job.pk}/",
        f"/audit/events/{event.pk}/",
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        if url != "/inventory/":  # the first page may not reach this identity
            assert shown in response.content.decode(), url
    # The job page streams its replies; its snapshot API names the node.
    assert client.get(f"/jobs/{job.pk}/").status_code == 200
    assert client.get(f"/api/jobs/{job.pk}/").json()["replies"][0]["identity"] == identity
