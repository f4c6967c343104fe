"""The inventory's JSON API: for the job form, what a filter would select (the live preview)
and the fact names and values the filter builder offers while an operator types; for admins
and their scripts, node enrolment (list, accept, reject, revoke, re-key, forget).

The preview, fact names, values and fact choices read only the nodes the caller may see
(``portal.inventory.visibility``): nothing about a node outside their scopes is counted or offered.
"""

from __future__ import annotations

import re
from typing import Any

from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.filters import Filter, FilterSyntaxError
from agents.filters.terms import MISSING, lookup_fact
from portal.inventory import services
from portal.inventory.autocomplete import (
    BadValuesQuery,
    ValueMatches,
    check_values_query,
    known_fact_names,
    seen_values,
)
from portal.inventory.fact_values import fact_choices
from portal.inventory.models import Enrolment, Node
from portal.inventory.pg_regex import UnsupportedFilter
from portal.inventory.preview import PREVIEW_LIMIT, filter_fact_names
from portal.inventory.querysets import NodeQuerySet
from portal.inventory.visibility import inventory_scope, visible_nodes
from portal.rbac.policy import may_administer

# The facts every preview row shows, after the ones the filter names.
KEY_FACTS = ("datacenter", "customer", "role")
# Filter.parse refuses longer compounds too; checked first so megabytes are never tokenized.
MAX_FILTER_LENGTH = 4096
FACT_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")


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
    if "\x00" in text:  # PostgreSQL cannot take it as a parameter; no fact can hold it either
        column = text.index("\x00") + 1
        raise BadFilter(f"NUL character at column {column}; remove it", column)
    try:
        return Filter.parse(text)
    except FilterSyntaxError as exc:
        raise BadFilter(exc.message, exc.column) from None
    except (RecursionError, ValueError) as exc:  # defensive: never a 500 for typed text
        raise BadFilter(f"cannot parse this filter: {exc}") from None


def node_facts(facts: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The facts ``names`` that ``facts`` has, in that order."""
    return {name: value for name in names if (value := lookup_fact(facts, name)) is not MISSING}


def preview_payload(
    filter: Filter, nodes: NodeQuerySet, limit: int = PREVIEW_LIMIT
) -> dict[str, Any]:
    """``{"count", "nodes"}`` like ``preview.preview`` over ``nodes`` (the ones the caller may
    see: ``visible_nodes``), each node also showing KEY_FACTS.

    Two queries: one COUNT, one SELECT ... LIMIT (none when nothing matches).
    Raises ``UnsupportedFilter`` when the database cannot evaluate the filter.
    """
    matched = nodes.matching(filter)
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
    """``GET ?filter=<text>``: 200 ``{"count", "nodes", "filter"}``; 400 ``{"error", "column"}``.

    Counts and lists only the nodes the caller may see.
    """

    def get(self, request: Request) -> Response:
        text = request.query_params.get("filter", "")
        try:
            data = preview_payload(
                parse_filter(text), visible_nodes(request.user, Node.objects.all())
            )
        except BadFilter as exc:
            return Response(
                {"error": exc.message, "column": exc.column}, status=status.HTTP_400_BAD_REQUEST
            )
        except UnsupportedFilter as exc:
            return Response({"error": str(exc), "column": None}, status=status.HTTP_400_BAD_REQUEST)
        data["filter"] = text
        return Response(data)


def _limit(request: Request, default: int = 20) -> int:
    raw = request.query_params.get("limit", "")
    return int(raw) if raw.isdigit() else default


class FactNamesAPI(APIView):
    """``GET [?q=prefix]``: 200 ``{"facts": [{"name", "nodes"}]}``, every fact name of the
    nodes the caller may see."""

    def get(self, request: Request) -> Response:
        scope = inventory_scope(request.user)
        if scope.sees_nothing:
            return Response({"facts": []})
        try:
            names = known_fact_names(request.query_params.get("q", ""), within=scope.filter)
        except UnsupportedFilter as exc:  # a scope the database cannot evaluate as the nodes do
            return Response({"error": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response({"facts": [{"name": n.name, "nodes": n.nodes} for n in names]})


class SeenValuesAPI(APIView):
    """``GET ?kind=fact&fact=<name>[&q=prefix][&limit=20]`` (or kind class, agent, identity).

    200 ``{"kind", "fact", "q", "values": [{"value", "nodes"}], "complete"}``, most common
    first; ``complete`` says no other value starts with ``q``. 400 ``{"error"}``. Only the
    nodes the caller may see are counted.
    """

    def get(self, request: Request) -> Response:
        kind = request.query_params.get("kind", "fact")
        fact = request.query_params.get("fact", "")
        prefix = request.query_params.get("q", "")
        scope = inventory_scope(request.user)
        try:
            if scope.sees_nothing:
                check_values_query(kind, fact)
                found = ValueMatches([], complete=True)
            else:
                found = seen_values(kind, fact, prefix, _limit(request), within=scope.filter)
        except (BadValuesQuery, UnsupportedFilter) as exc:
            return Response({"error": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(
            {
                "kind": kind,
                "fact": fact if kind == "fact" else None,
                "q": prefix,
                "values": [{"value": v.value, "nodes": v.nodes} for v in found.values],
                "complete": found.complete,
            }
        )


class FactChoicesAPI(APIView):
    """``GET ?fact=<name>&filter=<text>``: the fact's values on the nodes the filter targets.

    200 ``{"fact", "values": [{"value", "nodes"}], "nodes", "truncated"}``; 400 ``{"error"}``.
    Choices for a DDL input that names a fact (``choices_from_fact``), from the nodes the
    caller may see.
    """

    def get(self, request: Request) -> Response:
        fact = request.query_params.get("fact", "")
        if not FACT_NAME_RE.fullmatch(fact):
            return Response({"error": "fact: a fact name"}, status=status.HTTP_400_BAD_REQUEST)
        try:
            target = parse_filter(request.query_params.get("filter", ""))
            choices = fact_choices(
                target, fact, nodes=visible_nodes(request.user, Node.objects.all())
            )
        except BadFilter as exc:
            return Response({"error": exc.message}, status=status.HTTP_400_BAD_REQUEST)
        except UnsupportedFilter as exc:
            return Response({"error": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(
            {
                "fact": fact,
                "values": [{"value": v, "nodes": n} for v, n in choices.values],
                "nodes": choices.nodes,
                "truncated": choices.truncated,
            }
        )


def enrolment_payload(enrolment: Enrolment) -> dict[str, Any]:
    """One enrolment as the API shows it (the key's PEM only by id, the offer's facts)."""
    return {
        "identity": enrolment.identity,
        "state": enrolment.state,
        "key_id": enrolment.key_id,
        "first_seen": enrolment.first_seen,
        "last_seen": enrolment.last_seen,
        "decided_by": enrolment.decided_by,
        "decided_at": enrolment.decided_at,
        "decision": enrolment.decision,
        "offered": enrolment.offered,
        "conflict": {
            "key_id": enrolment.conflict_key_id,
            "seen": enrolment.conflict_seen,
            "count": enrolment.conflict_count,
        }
        if enrolment.has_conflict
        else None,
    }


ENROLMENT_PAGE = 500


class EnrolmentListAPI(APIView):
    """Admins: ``GET /api/enrolment/?state=pending|accepted|rejected|revoked&conflict=1``."""

    def get(self, request: Request) -> Response:
        if not may_administer(request.user):
            return Response(
                {"error": "only admins decide which nodes are trusted"},
                status=status.HTTP_403_FORBIDDEN,
            )
        enrolments = Enrolment.objects.order_by("identity")
        state = request.query_params.get("state", "")
        if state:
            if state not in Enrolment.State.values:
                choices = ", ".join(Enrolment.State.values)
                return Response(
                    {"error": f"unknown state {state[:40]!r}; use one of {choices}"},
                    status=status.HTTP_400_BAD_REQUEST,
                )
            enrolments = enrolments.filter(state=state)
        if request.query_params.get("conflict") in ("1", "true", "yes"):
            enrolments = enrolments.exclude(conflict_key_id="")
        after = request.query_params.get("after", "")[:253]
        if after:
            enrolments = enrolments.filter(identity__gt=after)
        page = list(enrolments[: ENROLMENT_PAGE + 1])
        more = len(page) > ENROLMENT_PAGE
        page = page[:ENROLMENT_PAGE]
        return Response(
            {
                "results": [enrolment_payload(e) for e in page],
                "next_after": page[-1].identity if more and page else None,
            }
        )


class EnrolmentDecisionAPI(APIView):
    """Admins: ``POST /api/enrolment/<identity>/<accept|reject|revoke|rekey|forget>/``."""

    def post(self, request: Request, identity: str, decision: str) -> Response:
        if not may_administer(request.user):
            return Response(
                {"error": "only admins decide which nodes are trusted"},
                status=status.HTTP_403_FORBIDDEN,
            )
        decide = services.ENROLMENT_DECISIONS.get(decision)
        if decide is None:
            choices = ", ".join(services.ENROLMENT_DECISIONS)
            return Response(
                {"error": f"unknown decision {decision[:40]!r}; use one of {choices}"},
                status=status.HTTP_404_NOT_FOUND,
            )
        try:
            enrolment = decide(identity, request.user, request._request)
        except services.EnrolmentError as exc:
            return Response({"error": str(exc)}, status=status.HTTP_409_CONFLICT)
        if enrolment is None:
            return Response({"identity": identity, "state": "forgotten"})
        return Response(enrolment_payload(enrolment))
