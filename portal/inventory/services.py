"""Every change to the inventory and to node enrolment goes through these functions.

A node's registration reaches the inventory only through ``admit_registrations``: it must be
sealed by the key it carries (checked by the consumer with ``open_registration``), and that key
must be the one the portal trusts for the identity (its accepted ``Enrolment``). A first-seen
identity waits as *pending* until an admin accepts it (``accept_node``) or an auto-accept rule
matches (``portal.inventory.enrolment``). Every decision is an audit event.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone

from agents.protocol import Registration
from portal.audit.kinds import Kind
from portal.audit.services import record_event
from portal.inventory.enrolment import auto_accept_rule
from portal.inventory.models import Enrolment, Node, RefusedRegistrations
from portal.inventory.search import SEARCH_FIELDS

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Every column a newer registration replaces; first_seen is kept from the first insert.
UPDATED_FIELDS = [
    "collectives",
    "facts",
    *SEARCH_FIELDS,  # computed from the facts by NodeQuerySet.bulk_create
    "classes",
    "agents",
    "last_seen",
    "registered_at",
]


class EnrolmentError(ValueError):
    """An enrolment decision that cannot be made (unknown identity, wrong state)."""


@dataclass(frozen=True)
class SealedRegistration:
    """A registration whose seal was checked: it was signed by the key with ``key_id``,
    whose PEM it carries in ``registration.public_key``."""

    registration: Registration
    key_id: str


@dataclass
class Admission:
    """What ``admit_registrations`` did with a batch, by outcome."""

    recorded: int = 0  # accepted nodes whose inventory row was written
    pending: int = 0  # registrations of identities waiting for a decision (new or known)
    auto_accepted: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # reason -> count
    last: dict[str, str] = field(default_factory=dict)  # reason -> the last identity refused


def record_registrations(registrations: Sequence[Registration]) -> int:
    """Upsert accepted nodes from their registrations in one ``INSERT ... ON CONFLICT``.

    For registrations already admitted (``admit_registrations`` calls it; tests use it to
    lay out an inventory). Within the batch the newest ``msgtime`` per identity wins;
    ``first_seen`` is set on the first insert only and ``last_seen`` is now; the search columns
    are computed from the facts (``search``). Returns the number of nodes written.
    """
    newest = _newest_per_identity(registrations)
    if not newest:
        return 0
    now = timezone.now()
    rows = [
        Node(
            identity=reg.identity,
            collectives=list(reg.collectives),
            facts=reg.facts,
            classes=list(reg.classes),
            agents=list(reg.agents),
            first_seen=now,
            last_seen=now,
            registered_at=datetime.fromtimestamp(reg.msgtime, tz=UTC),
        )
        for reg in newest.values()
    ]
    Node.objects.bulk_create(
        rows, update_conflicts=True, unique_fields=["identity"], update_fields=UPDATED_FIELDS
    )
    logger.debug("recorded %d registrations for %d nodes", len(registrations), len(rows))
    return len(rows)


def _newest_per_identity(registrations: Iterable[Registration]) -> dict[str, Registration]:
    return _newest(registrations, lambda reg: reg)


def _newest(items: Iterable[T], registration_of: Callable[[T], Registration]) -> dict[str, T]:
    """Each identity's item with the newest registration (the later one on a tie)."""
    newest: dict[str, T] = {}
    for item in items:
        reg = registration_of(item)
        seen = newest.get(reg.identity)
        if seen is None or reg.msgtime >= registration_of(seen).msgtime:
            newest[reg.identity] = item
    return newest


def admit_registrations(batch: Sequence[SealedRegistration]) -> Admission:
    """Record the registrations the portal trusts and hold the others, in one transaction.

    Per identity (newest msgtime in the batch): an accepted identity under its pinned key is
    written to the inventory, unless the registration is older than the one recorded
    (``replayed``); under another key it is refused and kept as a key conflict (``node.
    key_conflict``, once per new key), the inventory unchanged. A new identity becomes pending,
    or accepted at once when an auto-accept rule matches. A pending identity's offered
    registration is refreshed. Rejected and revoked identities are refused (``rejected``,
    ``revoked``). A registration stamped too far ahead is refused (``future``).
    """
    newest = _newest(batch, lambda item: item.registration)
    admission = Admission()
    if not newest:
        return admission
    horizon = timezone.now().timestamp() + settings.SWITCHBOARD_REGISTRATION_CLOCK_SKEW
    for identity in [i for i, item in newest.items() if item.registration.msgtime > horizon]:
        admission.refused["future"] += 1
        admission.last["future"] = identity
        logger.warning("refused the registration of %s: stamped in the future", identity)
        del newest[identity]
    with transaction.atomic():
        enrolments = {
            e.identity: e
            for e in Enrolment.objects.select_for_update().filter(identity__in=list(newest))
        }
        recorded_at = dict(
            Node.objects.filter(identity__in=list(newest)).values_list("identity", "registered_at")
        )
        to_record: list[Registration] = []
        heard_from: list[int] = []  # enrolments whose last_seen moves, in one UPDATE
        first_seen: list[SealedRegistration] = []
        for identity, item in newest.items():
            enrolment = enrolments.get(identity)
            if enrolment is None:
                first_seen.append(item)
                continue
            outcome = _known_identity(enrolment, item, recorded_at.get(identity))
            if outcome in ("record", "rejected", "revoked"):
                heard_from.append(enrolment.pk)
            if outcome == "record":
                to_record.append(item.registration)
            elif outcome == "pending":
                admission.pending += 1
            else:
                admission.refused[outcome] += 1
                admission.last[outcome] = identity
        to_record += _enrol_first_seen(first_seen, admission)
        Enrolment.objects.filter(pk__in=heard_from).update(last_seen=timezone.now())
        admission.recorded = record_registrations(to_record)
    return admission


def _enrol_first_seen(
    items: Sequence[SealedRegistration], admission: Admission
) -> list[Registration]:
    """Enrolments for identities seen for the first time: accepted at once where an
    auto-accept rule matches, else pending (up to SWITCHBOARD_MAX_PENDING). One INSERT and one
    audit event per rule (and one for the pending) for the whole batch: a fleet's first
    registrations must not cost an event each. Returns the registrations to record."""
    if not items:
        return []
    now = timezone.now()
    room = (
        settings.SWITCHBOARD_MAX_PENDING
        - Enrolment.objects.filter(state=Enrolment.State.PENDING).count()
    )
    enrolments: list[Enrolment] = []
    accepted: dict[str, dict[str, str]] = {}  # rule -> identity -> key id
    pending: dict[str, str] = {}
    to_record = []
    for item in items:
        reg = item.registration
        rule = auto_accept_rule(reg, item.key_id)
        if rule is None and len(pending) >= room:
            # Past the cap a new identity is refused, so a flood of made-up names cannot
            # fill the table or the audit history.
            logger.warning("refused the registration of %s: too many pending nodes", reg.identity)
            admission.refused["too_many_pending"] += 1
            admission.last["too_many_pending"] = reg.identity
            continue
        enrolments.append(
            Enrolment(
                identity=reg.identity,
                state=Enrolment.State.ACCEPTED if rule else Enrolment.State.PENDING,
                public_key=reg.public_key,
                key_id=item.key_id,
                offered={} if rule else _offered(reg),
                first_seen=now,
                last_seen=now,
                decided_at=now if rule else None,
                decision=f"auto-accepted: {rule}" if rule else "",
            )
        )
        if rule:
            accepted.setdefault(rule, {})[reg.identity] = item.key_id
            to_record.append(reg)
        else:
            pending[reg.identity] = item.key_id
            logger.info("node %s is pending enrolment (key %s)", reg.identity, item.key_id)
    Enrolment.objects.bulk_create(enrolments)
    for rule, keys in accepted.items():
        _audit_batch(Kind.NODE_ACCEPTED, "accepted", keys, f"auto-accepted ({rule})", rule=rule)
    if pending:
        _audit_batch(Kind.NODE_PENDING, "pending", pending, "first registration; pending")
    admission.auto_accepted += len(to_record)
    admission.pending += len(pending)
    return to_record


def _audit_batch(kind: str, state: str, keys: dict[str, str], what: str, **data: object) -> None:
    names = sorted(keys)
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    record_event(
        kind,
        actor=None,
        outcome=state,
        summary=f"{shown}: {what}",
        data={"keys": keys, **data},
        nodes=names,
    )


def _known_identity(
    enrolment: Enrolment, item: SealedRegistration, recorded: datetime | None
) -> str:
    reg = item.registration
    now = timezone.now()
    if item.key_id != enrolment.key_id:
        _note_conflict(enrolment, item, now)
        return "key_conflict"
    if enrolment.state in (Enrolment.State.REJECTED, Enrolment.State.REVOKED):
        return str(enrolment.state)
    if enrolment.state == Enrolment.State.PENDING:
        if reg.msgtime < enrolment.offered.get("msgtime", 0):
            return "replayed"
        Enrolment.objects.filter(pk=enrolment.pk).update(last_seen=now, offered=_offered(reg))
        return "pending"
    # The stored time is rounded to the microsecond: a millisecond's grace keeps the same
    # registration, delivered twice, from counting as a replay.
    if recorded is not None and reg.msgtime < recorded.timestamp() - 0.001:
        # An older registration than the one recorded: a replay of a sealed message the node
        # sent before. Sealed by the right key, but it would put back facts the node changed.
        return "replayed"
    return "record"


def _note_conflict(enrolment: Enrolment, item: SealedRegistration, now: datetime) -> None:
    new_key = item.key_id != enrolment.conflict_key_id
    Enrolment.objects.filter(pk=enrolment.pk).update(
        conflict_key=item.registration.public_key,
        conflict_key_id=item.key_id,
        conflict_seen=now,
        conflict_count=F("conflict_count") + 1,
    )
    if new_key:
        # Once per new key, not per registration: a node re-registering every 5 minutes with
        # a regenerated key would otherwise write an event each time.
        logger.warning(
            "refused the registration of %s: signed by key %s, but the portal trusts key %s "
            "for it (%s); kept its facts and key",
            enrolment.identity,
            item.key_id,
            enrolment.key_id,
            enrolment.state,
        )
        _audit(
            Kind.NODE_KEY_CONFLICT,
            enrolment,
            None,
            None,
            f"registration signed by key {item.key_id}, not the trusted {enrolment.key_id}",
            offered_key_id=item.key_id,
        )


def _offered(reg: Registration) -> dict[str, object]:
    return {
        "collectives": list(reg.collectives),
        "facts": reg.facts,
        "classes": list(reg.classes),
        "agents": list(reg.agents),
        "msgtime": reg.msgtime,
    }


def count_refusals(refused: Counter[str], samples: dict[str, tuple[str, str]]) -> None:
    """Add a flush's refused registrations to the counters and the audit history.

    ``samples`` maps a reason to its last (identity, detail). One audit event per call, so a
    flood of bad registrations writes at most one event per flush.
    """
    if not refused:
        return
    now = timezone.now()
    with transaction.atomic():
        for reason, count in refused.items():
            identity, detail = samples.get(reason, ("", ""))
            updated = RefusedRegistrations.objects.filter(reason=reason).update(
                count=F("count") + count,
                last_at=now,
                last_identity=identity[:300],
                last_detail=detail[:300],
            )
            if not updated:
                RefusedRegistrations.objects.create(
                    reason=reason,
                    count=count,
                    last_at=now,
                    last_identity=identity[:300],
                    last_detail=detail[:300],
                )
        record_event(
            Kind.NODE_REGISTRATIONS_REFUSED,
            actor=None,
            outcome="refused",
            summary=", ".join(f"{n} {reason}" for reason, n in sorted(refused.items())),
            data={
                "counts": dict(refused),
                "last": {reason: list(sample) for reason, sample in samples.items()},
            },
        )


# -- decisions by an admin (page, API, ``manage.py nodes``) -------------------------------


def _decide(identity: str, allowed: Iterable[str], verb: str) -> Enrolment:
    enrolment = Enrolment.objects.select_for_update().filter(identity=identity).first()
    if enrolment is None:
        raise EnrolmentError(f"no node {identity!r} has registered")
    if enrolment.state not in allowed:
        raise EnrolmentError(f"cannot {verb} {identity}: it is {enrolment.state}")
    return enrolment


@transaction.atomic
def accept_node(identity: str, actor: User | None, request: HttpRequest | None = None) -> Enrolment:
    """Trust a pending or rejected node's key: pin it and put the node in the inventory with
    the registration it offered. Audited as ``node.accepted``."""
    enrolment = _decide(identity, (Enrolment.State.PENDING, Enrolment.State.REJECTED), "accept")
    before = enrolment.state
    offered = enrolment.offered or {}
    _set_decision(enrolment, Enrolment.State.ACCEPTED, actor, "accepted by an admin")
    enrolment.offered = {}
    enrolment.save()
    if offered:
        record_registrations([_registration_from(enrolment, offered)])
    _audit(Kind.NODE_ACCEPTED, enrolment, actor, request, "accepted", before=before)
    return enrolment


@transaction.atomic
def reject_node(identity: str, actor: User | None, request: HttpRequest | None = None) -> Enrolment:
    """Refuse a pending node: its registrations under that key are refused from now on.
    Audited as ``node.rejected``."""
    enrolment = _decide(identity, (Enrolment.State.PENDING,), "reject")
    _set_decision(enrolment, Enrolment.State.REJECTED, actor, "rejected by an admin")
    enrolment.save()
    _audit(Kind.NODE_REJECTED, enrolment, actor, request, "rejected", before="pending")
    return enrolment


@transaction.atomic
def revoke_node(identity: str, actor: User | None, request: HttpRequest | None = None) -> Enrolment:
    """Stop trusting an accepted node: it leaves the inventory, is no longer discovered or
    sent requests, and its replies and registrations are refused. Audited as
    ``node.revoked``; ``forget_node`` lets the identity enrol again."""
    enrolment = _decide(identity, (Enrolment.State.ACCEPTED,), "revoke")
    _set_decision(enrolment, Enrolment.State.REVOKED, actor, "revoked by an admin")
    enrolment.save()
    Node.objects.filter(identity=identity).delete()
    _audit(Kind.NODE_REVOKED, enrolment, actor, request, "revoked", before="accepted")
    return enrolment


@transaction.atomic
def rekey_node(identity: str, actor: User | None, request: HttpRequest | None = None) -> Enrolment:
    """Trust the conflicting key instead of the pinned one (the node's key was replaced on
    purpose). The node's next registration under it is recorded. Audited as
    ``node.rekeyed`` with both key ids."""
    enrolment = _decide(identity, tuple(Enrolment.State), "re-key")
    if not enrolment.has_conflict:
        raise EnrolmentError(f"cannot re-key {identity}: no other key has been seen for it")
    old_key_id = enrolment.key_id
    enrolment.public_key, enrolment.key_id = enrolment.conflict_key, enrolment.conflict_key_id
    enrolment.conflict_key, enrolment.conflict_key_id = "", ""
    enrolment.conflict_seen, enrolment.conflict_count = None, 0
    enrolment.decided_by = getattr(actor, "username", "") or ""
    enrolment.decided_at = timezone.now()
    enrolment.decision = f"re-keyed by an admin (was key {old_key_id})"
    enrolment.save()
    _audit(
        Kind.NODE_REKEYED,
        enrolment,
        actor,
        request,
        f"key {old_key_id} replaced by {enrolment.key_id}",
        old_key_id=old_key_id,
    )
    return enrolment


@transaction.atomic
def forget_node(identity: str, actor: User | None, request: HttpRequest | None = None) -> None:
    """Drop a rejected or revoked identity's enrolment, so its next registration starts over
    as pending. Audited as ``node.forgotten``."""
    enrolment = _decide(identity, (Enrolment.State.REJECTED, Enrolment.State.REVOKED), "forget")
    _audit(Kind.NODE_FORGOTTEN, enrolment, actor, request, "forgotten", before=enrolment.state)
    enrolment.delete()


def _set_decision(enrolment: Enrolment, state: str, actor: User | None, how: str) -> None:
    enrolment.state = state
    enrolment.decided_by = getattr(actor, "username", "") or ""
    enrolment.decided_at = timezone.now()
    enrolment.decision = how


def _registration_from(enrolment: Enrolment, offered: dict[str, Any]) -> Registration:
    # ``offered`` is the JSON that _offered() stored in Enrolment.offered: its values come back
    # untyped from the JSONField.
    return Registration(
        identity=enrolment.identity,
        collectives=list(offered.get("collectives") or []),
        facts=dict(offered.get("facts") or {}),
        classes=list(offered.get("classes") or []),
        agents=list(offered.get("agents") or []),
        msgtime=float(offered.get("msgtime") or 0.0),
        public_key=enrolment.public_key,
    )


def _audit(
    kind: str,
    enrolment: Enrolment,
    actor: User | None,
    request: HttpRequest | None,
    summary: str,
    **data: object,
) -> None:
    record_event(
        kind,
        actor=actor,
        request=request,
        outcome=str(enrolment.state),
        summary=f"{enrolment.identity}: {summary}",
        data={"identity": enrolment.identity, "key_id": enrolment.key_id, **data},
        nodes=[enrolment.identity],
    )


def trusted_keys(identities: Iterable[str]) -> dict[str, str]:
    """Identity -> PEM of the key the portal trusts, for the accepted ones among them."""
    return dict(
        Enrolment.objects.filter(
            identity__in=list(identities), state=Enrolment.State.ACCEPTED
        ).values_list("identity", "public_key")
    )


# What an admin may decide about one identity, by the name the page, the API and
# ``manage.py nodes`` use for it.
ENROLMENT_DECISIONS = {
    "accept": accept_node,
    "reject": reject_node,
    "revoke": revoke_node,
    "rekey": rekey_node,
    "forget": forget_node,
}
