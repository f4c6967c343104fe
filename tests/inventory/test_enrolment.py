"""Enrolment: which node keys the portal trusts, decided by admins or auto-accept rules."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from agents.filters import Filter
from agents.protocol import Registration
from agents.protocol.security import SigningKey, enrolment_proof
from portal.audit.models import AuditEvent
from portal.inventory import services
from portal.inventory.models import Enrolment, Node
from portal.inventory.preview import preview
from portal.inventory.services import SealedRegistration, admit_registrations
from portal.jobs.runner import registered_keys

pytestmark = pytest.mark.django_db

TOKEN = "enrolment-unit-token"

Sealed = Callable[..., SealedRegistration]


@pytest.fixture
def sealed() -> Sealed:
    """A registration as the consumer hands it over once its seal was checked."""

    def make(
        identity: str = "web01.dc1.example",
        key: SigningKey | None = None,
        token: str = "",
        **fields: Any,
    ) -> SealedRegistration:
        key = key or SigningKey.derive(identity.encode())
        values: dict[str, Any] = {
            "collectives": ["mcollective"],
            "facts": {"customer": "acme"},
            "classes": ["base"],
            "agents": ["rpcutil"],
            "msgtime": time.time(),
            "public_key": key.public_pem(),
            "enrolment_proof": enrolment_proof(token, identity, key.key_id) if token else "",
        }
        values.update(fields)
        return SealedRegistration(Registration(identity=identity, **values), key.key_id)

    return make


def kinds_for(identity: str) -> list[str]:
    events = AuditEvent.objects.filter(kind__startswith="node.").order_by("pk")
    return [e.kind for e in events if identity in e.nodes]


def test_a_first_seen_node_is_pending_and_nowhere_else(sealed: Sealed, admin_user) -> None:
    admission = admit_registrations([sealed("web01", facts={"customer": "acme"})])

    assert (admission.pending, admission.recorded) == (1, 0)
    enrolment = Enrolment.objects.get(identity="web01")
    assert enrolment.state == Enrolment.State.PENDING
    assert enrolment.offered["facts"] == {"customer": "acme"}
    # Not counted, previewed or discovered; no key to check a reply with.
    assert not Node.objects.exists()
    assert preview(Filter.parse("customer=acme"))["count"] == 0
    assert registered_keys(["web01"]) == {}
    assert kinds_for("web01") == ["node.pending"]


def test_accepting_pins_the_key_and_brings_the_offered_registration(
    sealed: Sealed, admin_user
) -> None:
    key = SigningKey.generate()
    admit_registrations([sealed("web01", key=key, facts={"customer": "acme"})])

    services.accept_node("web01", admin_user)

    node = Node.objects.get(identity="web01")
    assert node.facts == {"customer": "acme"}
    enrolment = Enrolment.objects.get(identity="web01")
    assert (enrolment.state, enrolment.key_id, enrolment.decided_by) == (
        "accepted",
        key.key_id,
        "admin",
    )
    assert enrolment.offered == {}
    assert list(registered_keys(["web01"])) == ["web01"]
    event = AuditEvent.objects.get(kind="node.accepted")
    assert (event.actor, event.data["identity"], event.data["key_id"]) == (
        "admin",
        "web01",
        key.key_id,
    )
    # The next registration under the pinned key is recorded.
    later = sealed("web01", key=key, facts={"customer": "globex"})
    assert admit_registrations([later]).recorded == 1
    assert Node.objects.get(identity="web01").facts == {"customer": "globex"}


def test_another_key_for_an_accepted_node_is_a_conflict_that_changes_nothing(
    sealed: Sealed, admin_user, caplog
) -> None:
    key, impostor = SigningKey.generate(), SigningKey.generate()
    admit_registrations([sealed("web01", key=key, facts={"customer": "acme"})])
    services.accept_node("web01", admin_user)

    with caplog.at_level(logging.WARNING, logger="portal.inventory.services"):
        for _ in range(3):  # a forger keeps trying: one audit event, every attempt counted
            forged = sealed("web01", key=impostor, facts={"customer": "evil"})
            assert admit_registrations([forged]).refused == {"key_conflict": 1}

    assert Node.objects.get(identity="web01").facts == {"customer": "acme"}
    enrolment = Enrolment.objects.get(identity="web01")
    assert (enrolment.key_id, enrolment.conflict_key_id, enrolment.conflict_count) == (
        key.key_id,
        impostor.key_id,
        3,
    )
    assert kinds_for("web01").count("node.key_conflict") == 1
    conflict_lines = [r for r in caplog.records if "signed by key" in r.getMessage()]
    assert [r.levelno for r in conflict_lines] == [logging.WARNING]
    # Replies are still checked against the pinned key, not the impostor's.
    assert registered_keys(["web01"])["web01"] != impostor.public_key


def test_an_admin_may_rekey_on_purpose(sealed: Sealed, admin_user) -> None:
    old, new = SigningKey.generate(), SigningKey.generate()
    admit_registrations([sealed("web01", key=old)])
    services.accept_node("web01", admin_user)
    admit_registrations([sealed("web01", key=new, facts={"customer": "new-key"})])

    services.rekey_node("web01", admin_user)

    enrolment = Enrolment.objects.get(identity="web01")
    assert (enrolment.key_id, enrolment.has_conflict) == (new.key_id, False)
    event = AuditEvent.objects.get(kind="node.rekeyed")
    assert (event.actor, event.data["old_key_id"], event.data["key_id"]) == (
        "admin",
        old.key_id,
        new.key_id,
    )
    with pytest.raises(services.EnrolmentError, match="no other key"):
        services.rekey_node("web01", admin_user)
    assert admit_registrations([sealed("web01", key=new)]).recorded == 1
    assert admit_registrations([sealed("web01", key=old)]).refused == {"key_conflict": 1}


def test_revoked_and_rejected_nodes_are_refused_until_forgotten(sealed: Sealed, admin_user) -> None:
    admit_registrations([sealed("web01"), sealed("web02")])
    services.accept_node("web01", admin_user)
    services.revoke_node("web01", admin_user)
    services.reject_node("web02", admin_user)

    assert not Node.objects.filter(identity="web01").exists()
    assert registered_keys(["web01", "web02"]) == {}
    assert admit_registrations([sealed("web01"), sealed("web02")]).refused == {
        "revoked": 1,
        "rejected": 1,
    }
    assert not Node.objects.exists()

    services.forget_node("web01", admin_user)
    assert admit_registrations([sealed("web01")]).pending == 1
    assert kinds_for("web01") == [
        "node.pending",
        "node.accepted",
        "node.revoked",
        "node.forgotten",
        "node.pending",
    ]


def test_decisions_that_do_not_fit_the_state_say_why(sealed: Sealed, admin_user) -> None:
    with pytest.raises(services.EnrolmentError, match="no node 'ghost' has registered"):
        services.accept_node("ghost", admin_user)
    admit_registrations([sealed("web01")])
    with pytest.raises(services.EnrolmentError, match="cannot revoke web01: it is pending"):
        services.revoke_node("web01", admin_user)
    services.accept_node("web01", admin_user)
    with pytest.raises(services.EnrolmentError, match="cannot accept web01: it is accepted"):
        services.accept_node("web01", admin_user)


def test_auto_accept_by_token(sealed: Sealed, settings) -> None:
    settings.SWITCHBOARD_AUTO_ACCEPT = ["token"]
    settings.SWITCHBOARD_ENROLMENT_TOKEN = TOKEN

    admission = admit_registrations(
        [
            sealed("good", token=TOKEN),
            sealed("wrong-token", token="guessed"),
            sealed("no-proof"),
        ]
    )

    assert (admission.auto_accepted, admission.pending) == (1, 2)
    assert list(Node.objects.values_list("identity", flat=True)) == ["good"]
    good = Enrolment.objects.get(identity="good")
    assert (good.state, good.decision, good.decided_by) == (
        "accepted",
        "auto-accepted: enrolment token",
        "",
    )
    assert kinds_for("good") == ["node.accepted"]
    # A proof made for one key does not enrol another key under the same name.
    stolen = sealed("other", token=TOKEN)
    replayed = SealedRegistration(
        Registration(**{**stolen.registration.__dict__, "identity": "victim"}), stolen.key_id
    )
    assert admit_registrations([replayed]).pending == 1


def test_auto_accept_by_key_directory_and_identity_pattern(
    sealed: Sealed, settings, tmp_path
) -> None:
    listed, other = SigningKey.generate(), SigningKey.generate()
    (tmp_path / "web01.pub").write_text(listed.public_pem())
    (tmp_path / "junk.pub").write_text("not a key")  # skipped with a warning, not fatal
    settings.SWITCHBOARD_AUTO_ACCEPT = ["key-dir"]
    settings.SWITCHBOARD_ENROLMENT_KEY_DIR = str(tmp_path)
    settings.SWITCHBOARD_AUTO_ACCEPT_IDENTITIES = r"web\d+\.dc1\.example"

    admission = admit_registrations(
        [
            sealed("web01.dc1.example", key=listed),
            sealed("web02.dc1.example", key=other),  # key not listed
            sealed("db01.dc1.example", key=listed),  # listed key, identity outside the pattern
        ]
    )

    assert (admission.auto_accepted, admission.pending) == (1, 2)
    assert list(Node.objects.values_list("identity", flat=True)) == ["web01.dc1.example"]


def test_auto_accept_is_off_unless_configured(sealed: Sealed, settings) -> None:
    settings.SWITCHBOARD_ENROLMENT_TOKEN = TOKEN  # a token alone turns nothing on
    assert admit_registrations([sealed("web01", token=TOKEN)]).pending == 1


def test_older_and_future_registrations_are_refused(sealed: Sealed, admin_user) -> None:
    key = SigningKey.generate()
    now = time.time()
    admit_registrations([sealed("web01", key=key, msgtime=now)])
    services.accept_node("web01", admin_user)

    # A sealed registration the node sent before, played back: it would undo newer facts.
    old = sealed("web01", key=key, msgtime=now - 600, facts={"customer": "old"})
    future = sealed("web01", key=key, msgtime=now + 3600, facts={"customer": "future"})
    assert admit_registrations([old]).refused == {"replayed": 1}
    assert admit_registrations([future]).refused == {"future": 1}
    assert Node.objects.get(identity="web01").facts == {"customer": "acme"}


def test_pending_identities_are_capped(sealed: Sealed, settings) -> None:
    settings.SWITCHBOARD_MAX_PENDING = 2
    admission = admit_registrations([sealed(f"n{i}") for i in range(4)])
    assert (admission.pending, admission.refused) == (2, {"too_many_pending": 2})
    assert Enrolment.objects.count() == 2


def test_refusals_are_counted_and_audited_once_per_flush() -> None:
    from collections import Counter

    from portal.inventory.models import RefusedRegistrations

    services.count_refusals(
        Counter({"unsigned": 3, "bad_identity": 1}),
        {"unsigned": ("", "unsigned registration refused"), "bad_identity": ("", "x/y")},
    )
    services.count_refusals(Counter({"unsigned": 2}), {"unsigned": ("", "again")})

    counts = dict(RefusedRegistrations.objects.values_list("reason", "count"))
    assert counts == {"unsigned": 5, "bad_identity": 1}
    events = AuditEvent.objects.filter(kind="node.registrations_refused").order_by("pk")
    assert [e.summary for e in events] == ["1 bad_identity, 3 unsigned", "2 unsigned"]
    assert events[0].data["counts"] == {"unsigned": 3, "bad_identity": 1}
