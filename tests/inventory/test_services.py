"""record_registrations, Node.is_stale and the preview."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agents.filters import Filter
from portal.inventory.models import Node
from portal.inventory.preview import filter_fact_names, preview
from portal.inventory.services import record_registrations

pytestmark = pytest.mark.django_db


def test_record_inserts_every_field(make_registration):
    reg = make_registration(msgtime=1_800_000_000.5)

    assert record_registrations([reg]) == 1

    node = Node.objects.get()
    assert node.identity == "web01.dc1.example"
    assert node.collectives == ["mcollective"]
    assert node.facts == {"customer": "acme", "environment": "prod"}
    assert node.classes == ["base", "apache"]
    assert node.agents == ["rpcutil"]
    assert node.registered_at.timestamp() == 1_800_000_000.5
    assert node.first_seen == node.last_seen
    assert not node.is_stale


def test_newest_registration_in_a_batch_wins(make_registration):
    newer = make_registration(facts={"v": 2}, msgtime=200.0)
    older = make_registration(facts={"v": 1}, msgtime=100.0)

    assert record_registrations([newer, older, make_registration("db01", msgtime=50.0)]) == 2

    assert Node.objects.get(identity="web01.dc1.example").facts == {"v": 2}
    assert Node.objects.count() == 2


def test_update_keeps_first_seen_and_moves_last_seen(make_registration):
    record_registrations([make_registration(facts={"v": 1})])
    earlier = timezone.now() - timedelta(days=3)
    Node.objects.update(first_seen=earlier, last_seen=earlier)

    record_registrations([make_registration(facts={"v": 2}, classes=["base"])])

    node = Node.objects.get()
    assert node.first_seen == earlier
    assert node.last_seen > earlier
    assert node.facts == {"v": 2}
    assert node.classes == ["base"]


def test_one_insert_for_a_batch(make_registration, django_assert_num_queries):
    # 70 rows x 13 columns (search columns included) stays under SQLite's 999 parameters,
    # where Django splits the INSERT.
    batch = [make_registration(f"node{i:03d}") for i in range(70)]
    with django_assert_num_queries(1):
        assert record_registrations(batch) == 70


def test_empty_batch_writes_nothing(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert record_registrations([]) == 0


def test_staleness_follows_the_setting(make_registration, settings):
    record_registrations([make_registration()])
    Node.objects.update(last_seen=timezone.now() - timedelta(seconds=120))
    node = Node.objects.get()

    settings.SWITCHBOARD_NODE_STALE_AFTER = 60
    assert node.is_stale
    assert list(Node.objects.stale()) == [node]
    assert not Node.objects.fresh().exists()

    settings.SWITCHBOARD_NODE_STALE_AFTER = 600
    assert not node.is_stale
    assert not Node.objects.stale().exists()


def test_preview_counts_and_shows_the_first_nodes(make_registration, django_assert_num_queries):
    record_registrations(
        [make_registration(f"web{i:02d}", facts={"customer": "acme", "cpus": i}) for i in range(30)]
        + [make_registration("other", facts={"customer": "globex", "cpus": 64})]
    )
    wanted = Filter.parse("customer=acme and cpus>=5")

    with django_assert_num_queries(2):
        result = preview(wanted, limit=3)

    assert result["count"] == 25
    assert [n["identity"] for n in result["nodes"]] == ["web05", "web06", "web07"]
    assert result["nodes"][0]["facts"] == {"customer": "acme", "cpus": 5}
    assert result["nodes"][0]["stale"] is False


def test_preview_of_nothing_is_one_query(django_assert_num_queries):
    with django_assert_num_queries(1):
        assert preview(Filter.parse("customer=nobody")) == {"count": 0, "nodes": []}


def test_filter_fact_names_in_order_of_mention():
    wanted = Filter.from_dict(
        {
            "fact": [{"fact": "os", "operator": "==", "value": "debian"}],
            "compound": "(cpus>4 or not os=rhel) and /web/ and dc.name=~/^a/",
        }
    )
    assert filter_fact_names(wanted) == ["os", "cpus", "dc.name"]
