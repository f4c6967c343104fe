"""record_event, the stored chain, verify_chain and the verify_audit command."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.test import RequestFactory

from portal.audit.chain import GENESIS, event_hash
from portal.audit.models import AuditEvent
from portal.audit.services import check_chain, client_ip, record_event, verify_chain
from tests.audit.conftest import clock, tamper

pytestmark = pytest.mark.django_db


def test_an_event_records_who_from_where_and_what(operator) -> None:
    request = RequestFactory().post("/jobs/new/", REMOTE_ADDR="192.0.2.7")
    request.user = operator
    event = record_event(
        "job.submitted",
        request=request,
        agent="service",
        action="restart",
        job_id=41,
        summary="service restart on role=web",
        data={"inputs": {"service": "nginx"}, "reason": "CHG-1"},
        nodes=["web02", "web01", "web01"],
    )
    event.refresh_from_db()
    assert (event.kind, event.actor, event.actor_user, event.roles) == (
        "job.submitted",
        "noc",
        operator,
        ["operator"],
    )
    assert event.source_ip == "192.0.2.7"
    assert (event.agent, event.action, event.job_id) == ("service", "restart", 41)
    assert event.data == {"inputs": {"service": "nginx"}, "reason": "CHG-1"}
    assert event.nodes == ["web01", "web02"]
    assert event.prev_hash == GENESIS
    assert event.hash == event_hash({f: getattr(event, f) for f in _hashed()})


def _hashed() -> list[str]:
    from portal.audit.chain import HASHED_FIELDS

    return list(HASHED_FIELDS)


def test_explicit_actor_and_roles_win_over_the_request(operator, other_operator) -> None:
    request = RequestFactory().get("/")
    request.user = other_operator
    event = record_event("grant.changed", actor=operator, request=request, roles=["admin"])
    assert (event.actor, event.roles) == ("noc", ["admin"])


def test_a_superuser_counts_as_admin() -> None:
    root = User.objects.create_superuser("root")
    root.groups.add(Group.objects.get_or_create(name="manager")[0])
    assert record_event("login", actor=root).roles == ["admin", "manager"]


def test_no_actor_is_the_system() -> None:
    event = record_event("approval.expired", job_id=3)
    assert (event.actor, event.actor_user, event.roles, event.source_ip) == ("", None, [], "")


@pytest.mark.parametrize(
    ("remote", "recorded"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("2001:db8:0:0::1", "2001:db8::1"),
        ("", ""),
        ("not an address", ""),
        ("1.2.3.4, 5.6.7.8", ""),
    ],
)
def test_source_addresses_are_normalised(remote: str, recorded: str) -> None:
    assert client_ip(RequestFactory().get("/", REMOTE_ADDR=remote)) == recorded


@pytest.mark.parametrize("kind", ["", "Job.Submitted", "job submitted", "job.", "x" * 65])
def test_malformed_kinds_are_refused(kind: str) -> None:
    with pytest.raises(ValueError, match="lower-case words"):
        record_event(kind)


def test_only_pruning_writes_audit_pruned() -> None:
    with pytest.raises(ValueError, match="only by prune_events"):
        record_event("audit.pruned", data={"anchor_hash": "f" * 64})


def test_events_chain_each_to_the_one_before(make_event) -> None:
    events = [make_event(job_id=i) for i in range(4)]
    assert events[0].prev_hash == GENESIS
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
    report = check_chain()
    assert report.intact and report.checked == 4 and report.head_hash == events[-1].hash
    assert verify_chain() is None


def test_odd_data_is_stored_and_still_verifies(make_event) -> None:
    make_event(
        data={
            "floats": [0.1, 1e300, -0.0, 1e-7, 100.0],
            "big": 2**70,
            "text": 'naïve ☃ \x00 \ud800 "quoted" \\ back',
            "set": {"b", "a"},
            "when": datetime(2025, 1, 1, tzinfo=UTC),
            7: "int key",
        },
        summary="x" * 5000,
        nodes=["ü.example"],
    )
    event = AuditEvent.objects.get()
    assert event.data["set"] == ["a", "b"] and event.data["7"] == "int key"
    assert len(event.summary) == 2000
    assert verify_chain() is None


def test_time_never_goes_backwards(make_event) -> None:
    now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    with clock(now):
        first = make_event()
    with clock(now - timedelta(hours=1)):  # the clock stepped back
        second = make_event()
    assert second.at == first.at
    assert verify_chain() is None


def test_an_event_is_kept_only_if_the_callers_transaction_commits(make_event) -> None:
    make_event()
    with pytest.raises(RuntimeError), transaction.atomic():
        make_event(summary="the job that was never stored")
        raise RuntimeError("submit failed")
    assert AuditEvent.objects.count() == 1
    after = make_event()
    assert after.prev_hash == AuditEvent.objects.order_by("id").first().hash  # type: ignore[union-attr]
    assert verify_chain() is None


def test_two_events_cannot_share_a_predecessor(make_event) -> None:
    first = make_event()
    duplicate = AuditEvent(
        at=first.at, kind="login", prev_hash=first.prev_hash, hash="f" * 64, data={}
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        duplicate.save()


def test_deleting_jobs_or_accounts_keeps_the_events(make_event, operator) -> None:
    event = make_event(actor=operator, job_id=12345)
    operator.delete()  # SET_NULL: on PostgreSQL the trigger allows exactly this update
    event.refresh_from_db()
    assert (event.actor, event.actor_user, event.job_id) == ("noc", None, 12345)
    assert verify_chain() is None


def test_a_row_changed_in_the_database_fails_verification_at_that_row(make_event) -> None:
    events = [make_event(job_id=i) for i in range(5)]
    tamper("UPDATE audit_auditevent SET summary = %s WHERE id = %s", ["nothing", events[2].pk])
    broken = verify_chain()
    assert broken is not None and broken.pk == events[2].pk
    with pytest.raises(CommandError) as failure:
        call_command("verify_audit")
    assert failure.value.returncode == 1
    assert f"broken at event {events[2].pk} (job.submitted" in str(failure.value)
    assert "changed after it was written" in str(failure.value)
    assert "2 events before it are intact" in str(failure.value)


def test_a_changed_json_value_is_found(make_event) -> None:
    events = [make_event(data={"inputs": {"service": "nginx"}}) for _ in range(3)]
    if connection.vendor == "postgresql":
        change = "jsonb_set(data, '{inputs,service}', '\"sshd\"')"
    else:
        change = "json_set(data, '$.inputs.service', 'sshd')"
    tamper(f"UPDATE audit_auditevent SET data = {change} WHERE id = %s", [events[1].pk])  # noqa: S608
    assert verify_chain().pk == events[1].pk  # type: ignore[union-attr]


def test_a_deleted_row_fails_verification_at_the_next(make_event) -> None:
    events = [make_event(job_id=i) for i in range(4)]
    tamper("DELETE FROM audit_auditevent WHERE id = %s", [events[1].pk])
    assert verify_chain().pk == events[2].pk  # type: ignore[union-attr]


def test_a_rehashed_row_fails_verification_at_the_next(make_event) -> None:
    events = [make_event(job_id=i) for i in range(4)]
    fields = {name: getattr(events[1], name) for name in _hashed()}
    fields["summary"] = "forged"
    tamper(
        "UPDATE audit_auditevent SET summary = %s, hash = %s WHERE id = %s",
        ["forged", event_hash(fields), events[1].pk],
    )
    assert verify_chain().pk == events[2].pk  # type: ignore[union-attr]


def test_verify_audit_reports_an_intact_chain(make_event, capsys) -> None:
    for _ in range(3):
        make_event()
    call_command("verify_audit")
    assert "audit chain intact: 3 events, from the start" in capsys.readouterr().out


def test_settings_are_checked(settings) -> None:
    from portal.audit.checks import check_audit_settings

    assert check_audit_settings(None) == []
    settings.SWITCHBOARD_AUDIT_RETENTION_DAYS = 0
    settings.SWITCHBOARD_AUDIT_QUERY_TIMEOUT = 0
    assert [error.id for error in check_audit_settings(None)] == ["audit.E001", "audit.E002"]


def test_a_single_role_given_as_text_is_one_role() -> None:
    assert record_event("role.changed", actor="admin", roles="admin").roles == ["admin"]
