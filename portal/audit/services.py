"""Writing, checking and pruning the audit history.

Every event is written by ``record_event``: the job services, approvals, role and grant
changes, the login signals and the audit pages themselves all call it. Nothing here updates an
event; only ``prune_events`` deletes, and it archives first and records that it did.
"""

from __future__ import annotations

import gzip
import hashlib
import ipaddress
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db import connections, router, transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from portal.audit import kinds
from portal.audit.chain import (
    GENESIS,
    HASHED_FIELDS,
    ChainBreak,
    check_links,
    clean_text,
    event_hash,
    format_at,
    to_json_value,
)
from portal.audit.kinds import Kind
from portal.audit.models import AuditEvent
from portal.audit.permissions import actor_roles

logger = logging.getLogger(__name__)

# pg_advisory_xact_lock key serialising chain writes: "SWBAUDIT" in ASCII.
CHAIN_LOCK_KEY = 0x5357424155444954
# The session setting the PostgreSQL trigger checks before it lets a DELETE through.
PRUNE_SETTING = "switchboard.audit_prune"
# Kinds only this module writes: verification trusts the newest audit.pruned event's anchor.
RESERVED_KINDS = frozenset({Kind.AUDIT_PRUNED})
SYSTEM_ACTOR = ""
CHUNK = 2000

Actor = User | AnonymousUser | str | None


def client_ip(request: HttpRequest | None) -> str:
    """The address the request came from (``REMOTE_ADDR``), normalised; empty if none.

    Behind a reverse proxy run the ASGI server with its proxy-headers option, so that
    REMOTE_ADDR is the client's address and not the proxy's.
    """
    if request is None:
        return ""
    raw = str(request.META.get("REMOTE_ADDR") or "").strip()
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return clean_text(str(address), 45)


def _actor_of(actor: Actor, request: HttpRequest | None) -> tuple[str, User | None]:
    """The username to record and, when it is an account, the account."""
    if isinstance(actor, str):
        return clean_text(actor, 150), None
    if actor is None and request is not None:
        actor = getattr(request, "user", None)
    if actor is None or isinstance(actor, AnonymousUser) or not actor.is_authenticated:
        return SYSTEM_ACTOR, None
    return clean_text(actor.get_username(), 150), actor


def record_event(
    kind: str,
    *,
    actor: Actor = None,
    request: HttpRequest | None = None,
    roles: Iterable[str] | None = None,
    agent: str = "",
    action: str = "",
    job_id: int | None = None,
    outcome: str = "",
    summary: str = "",
    data: Mapping[str, Any] | None = None,
    nodes: Iterable[str] = (),
) -> AuditEvent:
    """Append one event to the audit history and return it.

    ``actor`` is the account (or a username, e.g. a failed login's) that acted; left out, it
    is the request's user, and with neither the system. ``roles`` default to the actor's
    roles now; ``request`` gives the source address. ``nodes`` are the identities the event
    concerns (a job's targeted nodes), which the node history finds. ``data`` is made plain
    JSON. Runs in the caller's transaction if there is one (the event is kept only if it
    commits) and holds the chain lock until that transaction ends: call it late in long
    transactions. Raises ``ValueError`` for a malformed or reserved ``kind``.
    """
    if len(kind) > 64 or not kinds.KIND_PATTERN.match(kind):
        raise ValueError(f"audit event kind {kind!r} is not lower-case words joined by dots")
    if kind in RESERVED_KINDS:
        raise ValueError(f"audit event kind {kind!r} is written only by prune_events")
    username, user = _actor_of(actor, request)
    if roles is None:
        roles = actor_roles(user)
    elif isinstance(roles, str):
        roles = [roles]
    fields = {
        "kind": kind,
        "actor": username,
        "roles": [clean_text(str(role), 150) for role in roles],
        "source_ip": client_ip(request),
        "agent": clean_text(agent or "", 64),
        "action": clean_text(action or "", 64),
        "job_id": int(job_id) if job_id is not None else None,
        "outcome": clean_text(outcome or "", 32),
        "summary": clean_text(summary or "", 2000),
        "data": to_json_value(dict(data or {})),
        "nodes": sorted({clean_text(str(node), 255) for node in nodes}),
    }
    event = _append(fields, user)
    logger.debug("audit event %s: %s by %s", event.pk, kind, username or "system")
    return event


def _lock_chain(using: str) -> None:
    """Serialise chain writers until the transaction ends (PostgreSQL).

    SQLite needs nothing: the portal opens its transactions IMMEDIATE, one writer at a time.
    """
    connection = connections[using]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_KEY])


def _append(fields: dict[str, Any], user: User | None, empty_prev: str = GENESIS) -> AuditEvent:
    """Link ``fields`` to the chain's head and insert them, under the chain lock.

    ``empty_prev`` is the prev_hash when no event is left (pruning deleted them all).
    """
    using = router.db_for_write(AuditEvent)
    with transaction.atomic(using=using):
        _lock_chain(using)
        head = AuditEvent.objects.using(using).order_by("-id").values("hash", "at").first()
        now = timezone.now()
        if head is None:
            prev_hash, at = empty_prev, now
        else:
            # Never earlier than the event before, so a time range is an id range.
            prev_hash, at = head["hash"], max(now, head["at"])
        fields = {**fields, "at": at, "prev_hash": prev_hash}
        fields["hash"] = event_hash(fields)
        # Annotated: AuditEventQuerySet is an unparametrised QuerySet, so create() gives Any.
        event: AuditEvent = AuditEvent.objects.using(using).create(actor_user=user, **fields)
        return event


# -- verification ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainReport:
    """The outcome of checking the whole stored chain."""

    checked: int
    first_break: ChainBreak | None
    anchor_hash: str
    anchor_event_id: int | None  # the audit.pruned event the anchor comes from, if any
    head_hash: str

    @property
    def intact(self) -> bool:
        return self.first_break is None


def chain_anchor(using: str | None = None) -> tuple[str, int | None]:
    """The prev_hash the oldest stored event must have, and the prune event that says so.

    GENESIS until the first pruning; then the hash of the last event pruned, recorded in the
    newest ``audit.pruned`` event.
    """
    queryset = AuditEvent.objects.using(using or router.db_for_read(AuditEvent))
    pruned = queryset.filter(kind=Kind.AUDIT_PRUNED).order_by("-id").values("id", "data").first()
    if pruned is None:
        return GENESIS, None
    anchor = pruned["data"].get("anchor_hash") if isinstance(pruned["data"], dict) else None
    return (anchor if isinstance(anchor, str) else GENESIS), pruned["id"]


def _chain_rows(queryset: QuerySet[AuditEvent]) -> Iterator[dict[str, Any]]:
    # Annotated: django-stubs types ``values()`` given a starred field list as Any.
    rows: Iterator[dict[str, Any]] = (
        queryset.order_by("id").values("id", "hash", *HASHED_FIELDS).iterator(chunk_size=CHUNK)
    )
    return rows


def check_chain() -> ChainReport:
    """Re-hash every stored event, oldest first, and check each links to the one before.

    Reads in chunks through a server-side cursor in one transaction (constant memory).
    """
    using = router.db_for_read(AuditEvent)
    anchor, anchor_event = chain_anchor(using)
    with transaction.atomic(using=using):
        result = check_links(_chain_rows(AuditEvent.objects.using(using)), anchor)
    return ChainReport(result.checked, result.first_break, anchor, anchor_event, result.last_hash)


def verify_chain() -> AuditEvent | None:
    """The first event at which the chain breaks, or ``None`` when it is intact."""
    report = check_chain()
    if report.first_break is None:
        return None
    return AuditEvent.objects.get(pk=report.first_break.event_id)


def archive_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The events of an archive written by ``prune_events`` (gzipped JSON lines)."""
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


# -- retention ---------------------------------------------------------------------------------


class PruneError(Exception):
    """Pruning stopped before deleting anything; the message says why."""


@dataclass(frozen=True)
class PruneResult:
    """What one pruning did."""

    deleted: int
    archive: Path | None
    anchor_hash: str
    event: AuditEvent


def event_as_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """An event as exported and archived: every hashed field, with id and hash."""
    document = {"id": row["id"], **{name: row[name] for name in HASHED_FIELDS}}
    document["at"] = format_at(row["at"])
    document["hash"] = row["hash"]
    return document


def _write_archive(path: Path, last_id: int, using: str) -> tuple[int, str]:
    """Write events up to ``last_id`` to ``path`` (gzipped JSON lines); count and sha256."""
    partial = path.with_name(path.name + ".partial")
    count = 0
    with transaction.atomic(using=using), gzip.open(partial, "wt", encoding="utf-8") as out:
        rows = _chain_rows(AuditEvent.objects.using(using).filter(id__lte=last_id))
        for row in rows:
            out.write(json.dumps(event_as_json(row), ensure_ascii=False, separators=(",", ":")))
            out.write("\n")
            count += 1
    digest = hashlib.sha256()
    with partial.open("rb") as written:
        for block in iter(lambda: written.read(1 << 20), b""):
            digest.update(block)
        os.fsync(written.fileno())
    partial.rename(path)
    return count, digest.hexdigest()


def prune_events(
    *,
    retention_days: int,
    archive_dir: Path,
    actor: Actor = None,
    now: datetime | None = None,
) -> PruneResult:
    """Delete events older than ``retention_days``, after archiving them; record it.

    The archive (``archive_dir/audit-<first>-<last>-<time>.jsonl.gz``) is written and synced
    first; then, in one transaction under the chain lock, the events are deleted (on
    PostgreSQL with ``switchboard.audit_prune`` set for that transaction only, which the
    append-only trigger checks) and an ``audit.pruned`` event records the count, the archive,
    its sha256 and the anchor: the hash of the last event deleted, which the oldest event
    left names as its prev_hash. Raises ``PruneError`` (nothing deleted) if the events to
    delete are not exactly those archived.
    """
    if retention_days < 1:
        raise PruneError(f"retention of {retention_days} days: keep at least one day")
    using = router.db_for_write(AuditEvent)
    now = now or timezone.now()
    cutoff = now - timedelta(days=retention_days)
    events = AuditEvent.objects.using(using)
    # Newest first by (at, id): one probe of the (at, id) index.
    last = events.filter(at__lt=cutoff).order_by("-at", "-id").values("id", "hash").first()
    username, user = _actor_of(actor, None)
    common = {
        "actor": username,
        "roles": actor_roles(user),
        "source_ip": "",
        "agent": "",
        "action": "",
        "job_id": None,
        "nodes": [],
        "kind": Kind.AUDIT_PRUNED,
    }
    if last is None:
        anchor, _ = chain_anchor(using)
        fields = {
            **common,
            "outcome": "ok",
            "summary": f"nothing older than {cutoff:%Y-%m-%d %H:%M} UTC to prune",
            "data": {
                "deleted": 0,
                "retention_days": retention_days,
                "cutoff": cutoff.isoformat(),
                "anchor_hash": anchor,
            },
        }
        return PruneResult(0, None, anchor, _append(fields, user))

    first_id = events.order_by("id").values_list("id", flat=True).first()
    archive_dir.mkdir(parents=True, exist_ok=True)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    path = archive_dir / f"audit-{first_id:012d}-{last['id']:012d}-{stamp}.jsonl.gz"
    archived, digest = _write_archive(path, last["id"], using)
    logger.info("audit: archived %s events to %s", archived, path)

    connection = connections[using]
    with transaction.atomic(using=using):
        _lock_chain(using)
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SELECT set_config(%s, 'on', true)", [PRUNE_SETTING])
            cursor.execute("DELETE FROM audit_auditevent WHERE id <= %s", [last["id"]])
            deleted = cursor.rowcount
            if connection.vendor == "postgresql":
                # Only these deletes: the rest of the transaction is append-only again.
                cursor.execute("SELECT set_config(%s, 'off', true)", [PRUNE_SETTING])
        if deleted != archived:
            raise PruneError(
                f"{deleted} events matched but {archived} were archived to {path}; nothing "
                "was deleted, run it again"
            )
        fields = {
            **common,
            "outcome": "ok",
            "summary": (
                f"pruned {deleted} events older than {cutoff:%Y-%m-%d %H:%M} UTC "
                f"(ids {first_id}-{last['id']}) to {path.name}"
            ),
            "data": {
                "deleted": deleted,
                "first_id": first_id,
                "last_pruned_id": last["id"],
                "anchor_hash": last["hash"],
                "retention_days": retention_days,
                "cutoff": cutoff.isoformat(),
                "archive": str(path),
                "archive_sha256": digest,
            },
        }
        event = _append(fields, user, empty_prev=last["hash"])
    logger.info("audit: pruned %s events up to id %s", deleted, last["id"])
    return PruneResult(deleted, path, last["hash"], event)
