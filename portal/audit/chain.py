"""The hash chain: an event's canonical form, its sha256, and checking a run of events.

Pure functions over plain values, so the same code checks the database (``services``) and an
archive file written by pruning (``verify_audit --archive``).

The canonical form must hash the same before the INSERT and after reading the row back from
either database. Values are first made plain JSON by ``to_json_value`` (what is stored), and
numbers are written in one normal form, since PostgreSQL's jsonb may give ``1e300`` back as
an integer and ``-0.0`` as ``0``.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Context, Decimal
from typing import Any

# The prev_hash of the very first event.
GENESIS = "0" * 64
CHAIN_VERSION = 1
# Every stored field but id, hash and actor_user (a deleted account nulls the link), in the
# order the export's columns and the event page show them (the hash sorts keys: order is free).
HASHED_FIELDS = (
    "at",
    "kind",
    "actor",
    "roles",
    "source_ip",
    "agent",
    "action",
    "job_id",
    "outcome",
    "summary",
    "nodes",
    "data",
    "prev_hash",
)

_NUMBERS = Context(prec=1000)
_encode_string = json.encoder.encode_basestring_ascii


def clean_text(value: str, max_length: int | None = None) -> str:
    """Text both databases store as given: no NUL (PostgreSQL refuses it), no lone surrogate."""
    if not (value.isascii() and "\x00" not in value):
        value = value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    if max_length is not None and len(value) > max_length:
        value = value[: max_length - 1] + "…"
    return value


def to_json_value(value: Any) -> Any:
    """``value`` as plain JSON (dict, list, str, int, float, bool, None), as it is stored.

    Dates become ISO text, sets sorted lists, non-finite floats and unknown types their text:
    an audit write never fails on the shape of what it is given.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {clean_text(str(key)): to_json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted((to_json_value(item) for item in value), key=canonical_json)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    return clean_text(str(value))


def format_at(value: datetime | str) -> str:
    """An event time as hashed and archived: UTC, microseconds, ``Z``."""
    if isinstance(value, str):
        return value
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_at(text: str) -> datetime:
    """The inverse of ``format_at``."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _number(value: Decimal) -> str:
    if value.is_zero():
        return "0"
    return str(value.normalize(_NUMBERS))


def _write(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_encode_string(value))
    elif isinstance(value, int):
        out.append(_number(Decimal(value)))
    elif isinstance(value, float):
        out.append(_number(Decimal(repr(value))) if math.isfinite(value) else '"nan"')
    elif isinstance(value, Mapping):
        out.append("{")
        for index, key in enumerate(sorted(value, key=str)):
            if index:
                out.append(",")
            out.append(_encode_string(str(key)))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        out.append(_encode_string(str(value)))


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, ASCII only, numbers in one normal form."""
    out: list[str] = []
    _write(value, out)
    return "".join(out)


def event_hash(fields: Mapping[str, Any]) -> str:
    """sha256 (hex) of the canonical form of an event's hashed fields (``HASHED_FIELDS``)."""
    document = {name: fields[name] for name in HASHED_FIELDS}
    document["at"] = format_at(document["at"])
    document["v"] = CHAIN_VERSION
    return hashlib.sha256(canonical_json(document).encode("ascii")).hexdigest()


@dataclass(frozen=True)
class ChainBreak:
    """The first event at which the chain does not hold, and why."""

    event_id: int
    reason: str


@dataclass(frozen=True)
class ChainResult:
    """What checking a run of events found."""

    checked: int
    first_break: ChainBreak | None
    last_hash: str


def check_links(rows: Iterable[Mapping[str, Any]], expected_prev: str) -> ChainResult:
    """Walk events in id order; stop at the first whose link or content does not hold.

    An event whose content changed fails its own hash; an event removed or inserted shows at
    the next event, whose prev_hash then names a hash that is not the one before it.
    """
    checked = 0
    previous_id: int | None = None
    for row in rows:
        if row["prev_hash"] != expected_prev:
            after = f"event {previous_id}" if previous_id is not None else "the chain's anchor"
            return ChainResult(
                checked,
                ChainBreak(
                    row["id"],
                    f"its prev_hash {row['prev_hash'][:12]}… is not the hash of {after} "
                    f"({expected_prev[:12]}…): an event before it was changed, removed or "
                    "inserted",
                ),
                expected_prev,
            )
        if event_hash(row) != row["hash"]:
            return ChainResult(
                checked,
                ChainBreak(
                    row["id"],
                    "its content does not match its hash: it was changed after it was written",
                ),
                expected_prev,
            )
        checked += 1
        expected_prev = row["hash"]
        previous_id = row["id"]
    return ChainResult(checked, None, expected_prev)
