"""The canonical form and the hash chain, as pure functions."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from portal.audit.chain import (
    GENESIS,
    canonical_json,
    check_links,
    clean_text,
    event_hash,
    format_at,
    parse_at,
    to_json_value,
)

AT = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def event(**changes: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "at": AT,
        "kind": "job.submitted",
        "actor": "noc",
        "roles": ["operator"],
        "source_ip": "10.0.0.1",
        "agent": "service",
        "action": "restart",
        "job_id": 7,
        "outcome": "",
        "summary": "service restart on role=web",
        "data": {"inputs": {"service": "nginx"}},
        "nodes": ["web01", "web02"],
        "prev_hash": GENESIS,
    }
    fields.update(changes)
    return fields


def chain(count: int) -> list[dict[str, object]]:
    rows, prev = [], GENESIS
    for index in range(count):
        row = event(prev_hash=prev, job_id=index)
        row["id"] = index + 1
        row["hash"] = event_hash(row)
        prev = row["hash"]
        rows.append(row)
    return rows


def test_keys_are_sorted_and_compact_and_ascii() -> None:
    assert canonical_json({"b": 1, "a": ["é", None, True]}) == '{"a":["\\u00e9",null,true],"b":1}'


@pytest.mark.parametrize(
    ("one", "other"),
    [
        # What PostgreSQL's jsonb may give back for what was stored.
        (100.0, 100),
        (1e300, 10**300),
        (-0.0, 0),
        (1e-07, 1e-07),
        (0.1, 0.1),
    ],
)
def test_numbers_have_one_normal_form(one: object, other: object) -> None:
    assert canonical_json([one]) == canonical_json([other])


def test_different_numbers_stay_different() -> None:
    assert canonical_json(0.1) != canonical_json(0.10000000000000002)
    assert canonical_json(2**64) != canonical_json(2**64 + 1)


def test_to_json_value_makes_anything_plain_json() -> None:
    value = to_json_value(
        {
            1: {"a", "b"},
            "when": datetime(2025, 1, 1, tzinfo=UTC),
            "day": date(2025, 1, 2),
            "money": Decimal("1.50"),
            "id": uuid.UUID(int=1),
            "bad": float("nan"),
            "tuple": (1, 2),
            "nul": "a\x00b",
            "surrogate": "x\ud800y",
            "object": object,
        }
    )
    text = json.dumps(value)  # plain JSON: json can write it
    assert value["1"] == ["a", "b"]
    assert value["when"] == "2025-01-01T00:00:00+00:00"
    assert value["money"] == "1.50" and value["bad"] == "nan" and value["tuple"] == [1, 2]
    assert value["nul"] == "a\ufffdb" and value["surrogate"] == "x?y"
    assert "\\u0000" not in text


def test_clean_text_truncates_with_an_ellipsis() -> None:
    assert clean_text("abcdef", 4) == "abc…"
    assert clean_text("abc", 4) == "abc"


def test_time_format_round_trips() -> None:
    assert format_at(AT) == "2025-03-01T12:00:00.123456Z"
    assert parse_at(format_at(AT)) == AT


def test_every_hashed_field_changes_the_hash() -> None:
    base = event_hash(event())
    for name, value in [
        ("at", datetime(2025, 3, 1, 12, 0, 0, 123457, tzinfo=UTC)),
        ("kind", "job.finished"),
        ("actor", "noc2"),
        ("roles", ["operator", "admin"]),
        ("source_ip", "10.0.0.2"),
        ("agent", "package"),
        ("action", "start"),
        ("job_id", 8),
        ("outcome", "ok"),
        ("summary", "x"),
        ("data", {"inputs": {"service": "apache"}}),
        ("nodes", ["web01"]),
        ("prev_hash", "1" * 64),
    ]:
        assert event_hash(event(**{name: value})) != base, name


def test_an_intact_chain_checks() -> None:
    result = check_links(chain(5), GENESIS)
    assert result.first_break is None
    assert result.checked == 5


def test_a_changed_event_is_named() -> None:
    rows = chain(5)
    rows[2]["summary"] = "innocent"
    result = check_links(rows, GENESIS)
    assert result.first_break is not None
    assert result.first_break.event_id == 3
    assert "content does not match its hash" in result.first_break.reason
    assert result.checked == 2


def test_a_rehashed_change_shows_at_the_next_event() -> None:
    rows = chain(5)
    rows[2]["summary"] = "innocent"
    rows[2]["hash"] = event_hash(rows[2])
    result = check_links(rows, GENESIS)
    assert result.first_break is not None and result.first_break.event_id == 4
    assert "is not the hash of event 3" in result.first_break.reason


def test_a_removed_event_shows_at_the_next_event() -> None:
    rows = chain(5)
    del rows[1]
    result = check_links(rows, GENESIS)
    assert result.first_break is not None and result.first_break.event_id == 3


def test_the_first_event_must_match_the_anchor() -> None:
    rows = chain(3)[1:]
    assert check_links(rows, GENESIS).first_break.event_id == 2  # type: ignore[union-attr]
    assert check_links(rows, str(chain(3)[0]["hash"])).first_break is None
