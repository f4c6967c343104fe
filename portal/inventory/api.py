"""The inventory's JSON API: what a filter would select, for the job form's live preview."""

from __future__ import annotations

from typing import Any

from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.filters import Filter, FilterSyntaxError
from agents.filters.terms import MISSING, lookup_fact
from portal.inventory.models import Node
from portal.inventory.pg_regex import UnsupportedFilter
from portal.inventory.preview import PREVIEW_LIMIT, filter_fact_names

# The facts every preview row shows, after the ones the filter names.
KEY_FACTS = ("datacenter", "customer", "role")
# Filter.parse refuses longer compounds too; checked first so megabytes are never tokenized.
MAX_FILTER_LENGTH = 4096


class BadFilter(Exception):
    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


def parse_filter(text: Any) -> Filter:
    """``text`` as a Filter, or ``BadFilter`` with a message and a 1-based column (or None)."""
    if not isinstance(text, str):
        raise BadFilter("filter must be a string")
    if len(text) > MAX_FILTER_LENGTH:
        raise BadFilter(f"filter is {len(text)} characters, over the {MAX_FILTER_LENGTH} limit")
    try:
        return Filter.parse(text)
    except FilterSyntaxError as exc:
        raise BadFilter(exc.message, exc.column) from None
    except (RecursionError, ValueError) as exc:  # defensive: never a 500 for typed text
        raise BadFilter(f"cannot parse this filter: {exc}") from None


def node_facts(facts: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The facts ``names`` that ``facts`` has, in that order."""
    return {name: value for name in names if (value := lookup_fact(facts, name)) is not MISSING}


def preview_payload(filter: Filter, limit: int = PREVIEW_LIMIT) -> dict[str, Any]:
    """``{"count", "nodes"}`` like ``preview.preview``, each node also showing KEY_FACTS.

    Two queries: one COUNT, one SELECT ... LIMIT (none when nothing matches).
    Raises ``UnsupportedFilter`` when the database cannot evaluate the filter.
    """
    matched = Node.objects.matching(filter)
    count = matched.count()
    names = list(dict.fromkeys([*filter_fact_names(filter), *KEY_FACTS]))
    rows = (
        matched.order_by("identity").only("identity", "facts", "last_seen")[:limit] if count else []
    )
    nodes = [
        {
            "identity": node.identity,
            "stale": node.is_stale,
            "last_seen": node.last_seen.isoformat(),
            "facts": node_facts(node.facts, names),
        }
        for node in rows
    ]
    return {"count": count, "nodes": nodes}


class InventoryPreviewAPI(APIView):
    """``GET ?filter=<text>``: 200 ``{"count", "nodes", "filter"}``; 400 ``{"error", "column"}``."""

    def get(self, request: Request) -> Response:
        text = request.query_params.get("filter", "")
        try:
            data = preview_payload(parse_filter(text))
        except BadFilter as exc:
            return Response(
                {"error": exc.message, "column": exc.column}, status=status.HTTP_400_BAD_REQUEST
            )
        except UnsupportedFilter as exc:
            return Response({"error": str(exc), "column": None}, status=status.HTTP_400_BAD_REQUEST)
        data["filter"] = text
        return Response(data)
