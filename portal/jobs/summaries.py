"""Summaries of a job's OK replies from its action's DDL aggregates, like ``mco``'s summary.

Each aggregate names one output of the action. The database groups the OK replies by that
output's value and counts each group (one ``GROUP BY`` per output, only the values travel, not
the whole reply data); the four functions are then exact arithmetic over those few groups:

* ``summary``: how many nodes returned each value, most common first;
* ``boolean_summary``: how many returned true and how many false;
* ``sum`` and ``average``: over the numeric values (booleans and text are not numbers).

Replies without the output (or with null) count for none of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django.db.models import Count
from django.db.models.fields.json import KeyTransform, compile_json_path

from agents.ddl import ActionDDL, AggregateDDL, UnknownAction
from portal.jobs.catalog import available_agents
from portal.jobs.models import Job, NodeReply

ValueCounts = list[tuple[Any, int]]


def summarize(job: Job) -> list[dict[str, Any]]:
    """One summary per aggregate and output the action's DDL declares, in DDL order.

    Reads the database (one grouped query per distinct output); ``[]`` for an action with no
    aggregates or one the portal no longer ships a DDL for.
    """
    action = _action_ddl(job)
    if action is None or not action.aggregate:
        return []
    counts: dict[str, ValueCounts] = {}
    summaries = []
    for aggregate in action.aggregate:
        for output in aggregate.args:
            if output not in counts:
                counts[output] = value_counts(job, output)
            summaries.append(_summary(aggregate, output, action, counts[output]))
    return summaries


def value_counts(job: Job, output: str) -> ValueCounts:
    """(value, number of OK replies with it) for one output, grouped in the database.

    Values are grouped with their JSON type (``0`` and ``"0"`` apart, ``true`` and ``1`` apart)
    and come back decoded; groups are merged again on their JSON text in case a backend
    decodes two groups to the same value.
    """
    rows = (
        NodeReply.objects.filter(job=job, statuscode=0)
        .annotate(value=JSONValue(output, "data"))
        .values("value")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("value", "n")
    )
    merged: dict[str, list[Any]] = {}
    for value, n in rows.iterator():
        if value is None:
            continue
        key = json.dumps(value, sort_keys=True)
        if key in merged:
            merged[key][1] += n
        else:
            merged[key] = [value, n]
    return [(value, n) for value, n in merged.values()]


class JSONValue(KeyTransform):
    """A key of a JSON column, keeping its JSON type on SQLite too.

    Django's SQLite ``KeyTransform`` uses ``JSON_EXTRACT``, which returns ``true`` as ``1`` and
    ``"0"`` as ``0``, so grouping by it mixes types; the ``->`` operator (SQLite 3.38+) returns
    the value's JSON text instead. PostgreSQL's ``->`` already returns typed ``jsonb``.
    """

    def as_sqlite(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        lhs, params, key_transforms = self.preprocess_lhs(compiler, connection)
        return f"({lhs} -> %s)", (*params, compile_json_path(key_transforms))


def _action_ddl(job: Job) -> ActionDDL | None:
    agent = available_agents().get(job.agent)
    if agent is None:
        return None
    try:
        return agent.action(job.action)
    except UnknownAction:
        return None


def _summary(
    aggregate: AggregateDDL, output: str, action: ActionDDL, counts: ValueCounts
) -> dict[str, Any]:
    spec = action.output.get(output)
    result: dict[str, Any] = {
        "function": aggregate.function,
        "output": output,
        "display_as": spec.display_as if spec else output,
    }
    if aggregate.function == "summary":
        values = sorted(counts, key=lambda item: (-item[1], json.dumps(item[0], sort_keys=True)))
        result["values"] = [{"value": value, "count": n} for value, n in values]
        result["count"] = sum(n for _, n in values)
    elif aggregate.function == "boolean_summary":
        true = sum(n for value, n in counts if value is True)
        false = sum(n for value, n in counts if value is False)
        result["values"] = [{"value": True, "count": true}, {"value": False, "count": false}]
        result["count"] = true + false
    else:  # sum, average
        numbers = list(_numbers(counts))
        total = sum(value * n for value, n in numbers)
        count = sum(n for _, n in numbers)
        if aggregate.function == "sum":
            result["value"] = total
        else:
            result["value"] = total / count if count else None
        result["count"] = count
    return result


def _numbers(counts: ValueCounts) -> Iterable[tuple[int | float, int]]:
    for value, n in counts:
        if isinstance(value, int | float) and not isinstance(value, bool):
            yield value, n
