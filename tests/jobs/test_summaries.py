"""Summaries of a job's OK replies from the DDL aggregates (``mco``'s summary block)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from portal.jobs.models import Job, NodeReply
from portal.jobs.summaries import summarize

# A reply's data, or (statuscode, data) for a reply that is not OK.
Reply = dict[str, Any] | tuple[int, dict[str, Any]]


def _job(user: User, agent: str, action: str, replies: list[Reply]) -> Job:
    job = Job.objects.create(
        created_by=user,
        source=Job.Source.API,
        agent=agent,
        action=action,
        collective="mcollective",
        timeout=10,
        status=Job.Status.COMPLETED,
    )
    rows = []
    for number, reply in enumerate(replies):
        statuscode, data = reply if isinstance(reply, tuple) else (0, reply)
        rows.append(
            NodeReply(
                job=job,
                identity=f"node{number:03}",
                statuscode=statuscode,
                data=data,
                received_at=timezone.now(),
            )
        )
    NodeReply.objects.bulk_create(rows)
    return job


CASES = [
    pytest.param(
        "service",
        "status",
        [
            {"status": "running"},
            {"status": "stopped"},
            {"status": "running"},
            {"status": "running"},
            (1, {"status": "running"}),  # failed: not counted
            {},  # no such output: not counted
            {"status": None},
        ],
        [
            {
                "function": "summary",
                "output": "status",
                "display_as": "Service Status",
                "values": [{"value": "running", "count": 3}, {"value": "stopped", "count": 1}],
                "count": 4,
            }
        ],
        id="summary-counts-ok-replies-most-common-first",
    ),
    pytest.param(
        "nrpe",
        "runcommand",
        [{"exitcode": 0}, {"exitcode": "0"}, {"exitcode": 2}, {"exitcode": 0}, {"exitcode": 2}],
        [
            {
                "function": "summary",
                "output": "exitcode",
                "display_as": "Exit Code",
                # Ties by JSON text; a number and a string are different values.
                "values": [
                    {"value": 0, "count": 2},
                    {"value": 2, "count": 2},
                    {"value": "0", "count": 1},
                ],
                "count": 5,
            }
        ],
        id="summary-keeps-json-types-apart",
    ),
    pytest.param(
        "filemgr",
        "remove",
        [
            {"removed": True},
            {"removed": False},
            {"removed": True},
            {"removed": "true"},
            {"removed": 1},
        ],
        [
            {
                "function": "boolean_summary",
                "output": "removed",
                "display_as": "Removed",
                "values": [{"value": True, "count": 2}, {"value": False, "count": 1}],
                "count": 3,
            }
        ],
        id="boolean-summary-counts-only-booleans",
    ),
    pytest.param(
        "echo",
        "sleep",
        [{"slept": 1}, {"slept": 2}, {"slept": 4.5}, {"slept": "n/a"}, {"slept": True}],
        [
            {
                "function": "average",
                "output": "slept",
                "display_as": "Slept",
                "value": 2.5,
                "count": 3,
            }
        ],
        id="average-of-numbers-only",
    ),
    pytest.param(
        "process",
        "list",
        [{"count": 3}, {"count": 3}, {"count": 0}, {"count": 10}, (5, {"count": 100})],
        [
            {
                "function": "sum",
                "output": "count",
                "display_as": "Matches",
                "value": 16,
                "count": 4,
            },
            {
                "function": "average",
                "output": "count",
                "display_as": "Matches",
                "value": 4.0,
                "count": 4,
            },
        ],
        id="sum-and-average-of-one-output",
    ),
    pytest.param(
        "echo",
        "sleep",
        [(1, {"slept": 3})],
        [
            {
                "function": "average",
                "output": "slept",
                "display_as": "Slept",
                "value": None,
                "count": 0,
            }
        ],
        id="average-of-nothing-is-none",
    ),
    pytest.param(
        "filemgr",
        "status",
        [
            {"present": True, "md5": "aa"},
            {"present": True, "md5": "bb"},
            {"present": False, "md5": None},
        ],
        [
            {
                "function": "summary",
                "output": "present",
                "display_as": "Present",
                "values": [{"value": True, "count": 2}, {"value": False, "count": 1}],
                "count": 3,
            },
            {
                "function": "summary",
                "output": "md5",
                "display_as": "MD5",
                "values": [{"value": "aa", "count": 1}, {"value": "bb", "count": 1}],
                "count": 2,
            },
        ],
        id="two-aggregates-in-ddl-order",
    ),
    pytest.param(
        "rpcutil",
        "inventory",
        [{"version": [1, 2], "facts": {"big": "x"}}, {"version": [1, 2]}, {"version": {"a": 1}}],
        [
            {
                "function": "summary",
                "output": "version",
                "display_as": "Version",
                "values": [{"value": [1, 2], "count": 2}, {"value": {"a": 1}, "count": 1}],
                "count": 3,
            }
        ],
        id="summary-of-structured-values",
    ),
    pytest.param("rpcutil", "ping", [{"pong": 1}], [], id="no-aggregates"),
    pytest.param(
        "service",
        "status",
        [],
        [
            {
                "function": "summary",
                "output": "status",
                "display_as": "Service Status",
                "values": [],
                "count": 0,
            }
        ],
        id="no-replies",
    ),
]


@pytest.mark.parametrize(("agent", "action", "replies", "expected"), CASES)
def test_summarize(
    operator: User, agent: str, action: str, replies: list[Reply], expected: list[dict[str, Any]]
) -> None:
    assert summarize(_job(operator, agent, action, replies)) == expected


def test_one_grouped_query_per_distinct_output(operator: User) -> None:
    job = _job(operator, "process", "list", [{"count": n} for n in range(50)])
    with CaptureQueriesContext(connection) as queries:
        summaries = summarize(job)
    assert [s["function"] for s in summaries] == ["sum", "average"]
    assert len(queries) == 1
    assert "GROUP BY" in queries[0]["sql"].upper()


def test_an_agent_the_portal_no_longer_ships_has_no_summary(operator: User) -> None:
    assert summarize(_job(operator, "retired", "thing", [{"x": 1}])) == []
