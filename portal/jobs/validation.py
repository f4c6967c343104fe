"""Checks on what a request carries, before anything is planned or stored: the filter's
parts, the inputs against the action's DDL, the execution options' values, the reason."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from agents.ddl import ActionDDL, InputValidationError
from agents.filters import Filter, FilterSyntaxError, parse_fact_term
from agents.protocol.envelope import is_unicode
from portal.jobs.catalog import JobRequestError
from portal.rbac.policy import ConfirmationRules

# How deep lists and objects may nest in a job's inputs and options. No DDL input takes more
# than a flat value; the bound keeps recursive code (JSON encoders, reprs, the audit's
# canonical form) far from Python's recursion limit whatever a client sends.
MAX_VALUE_DEPTH = 32


def build_filter(
    compound: str = "",
    *,
    facts: Sequence[str] = (),
    classes: Sequence[str] = (),
    identities: Sequence[str] = (),
    agents: Sequence[str] = (),
) -> Filter:
    """A filter from ``mco``-style parts; raises ``JobRequestError`` on the field at fault."""
    parts_text = (compound, *facts, *classes, *identities, *agents)
    if any("\x00" in part for part in parts_text):
        # PostgreSQL cannot store or compare text with NUL in it: refused here, not a 500.
        raise JobRequestError({"filter": "a filter cannot contain a NUL character"})
    if any(not is_unicode(part) for part in parts_text):
        raise JobRequestError({"filter": LONE_SURROGATE})
    try:
        fact_terms = [parse_fact_term(term) for term in facts]
    except FilterSyntaxError as exc:
        raise JobRequestError({"filter": f"fact filter: {exc}"}) from exc
    parts = Filter(
        fact=fact_terms,
        cf_class=list(classes),
        agent=list(agents),
        identity=list(identities),
        compound=compound.strip() or None,
    )
    try:
        # from_dict is the validation the nodes apply to what they receive.
        return Filter.from_dict(parts.to_dict())
    except FilterSyntaxError as exc:
        raise JobRequestError({"filter": str(exc)}) from exc


def parse_filter_text(text: str) -> Filter:
    """The compound expression an operator typed; an empty text matches every node."""
    return build_filter(text)


LONE_SURROGATE = (
    "contains a lone surrogate (a \\ud800-\\udfff escape or undecodable bytes), which is not"
    " text; send valid UTF-8"
)


def _value_problem(value: Any) -> str | None:
    """Why a request value cannot be stored and sent as JSON, or ``None`` when it can.

    Walks lists and objects with an explicit stack, not recursion, so depth itself is safe.
    """
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "cannot contain a NUL character"
            if not is_unicode(item):
                return LONE_SURROGATE
        elif isinstance(item, float) and not math.isfinite(item):
            return "must be a finite number (JSON has no infinity or NaN)"
        elif isinstance(item, Mapping | list | tuple):
            if depth >= MAX_VALUE_DEPTH:
                return f"is nested deeper than {MAX_VALUE_DEPTH} levels"
            if isinstance(item, Mapping):
                stack.extend((key, depth + 1) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
    return None


def check_values(field: str, values: Mapping[str, Any]) -> None:
    """Refuse values no store or node can take: NUL, lone surrogates, infinities, deep nesting.

    Raises ``JobRequestError`` naming ``<field>.<name>`` (or ``<field>`` when the name itself
    is at fault), before anything echoes the names or stores the values.
    """
    errors: dict[str, str] = {}
    for name, value in values.items():
        name_problem = _value_problem(name)
        if name_problem is not None:
            errors[field] = f"a name {name_problem}"
            continue
        problem = _value_problem(value)
        if problem is not None:
            errors[f"{field}.{name}"] = problem
    if errors:
        raise JobRequestError(errors)


def validate_inputs(action_ddl: ActionDDL, inputs: object) -> dict[str, Any]:
    """The inputs cleaned by the DDL (defaults applied, types coerced), or ``JobRequestError``.

    Takes any value a request carried: the DDL says what is wrong with one that is not an
    object ("inputs must be an object")."""
    try:
        return action_ddl.validate_inputs(inputs)
    except InputValidationError as exc:
        raise JobRequestError({f"inputs.{name}": msg for name, msg in exc.errors.items()}) from exc


def check_reason(reason: str, rules: ConfirmationRules) -> str:
    """The reason or ticket, stripped; ``JobRequestError`` when it cannot be stored, or none
    is given and the policy's ``rules`` ask for one (the role does, or the action changes the
    nodes). The one check of a reason, for the confirmation page and ``submit_job``."""
    reason = reason.strip()
    if "\x00" in reason:
        raise JobRequestError({"reason": "cannot contain a NUL character"})
    if not is_unicode(reason):
        raise JobRequestError({"reason": LONE_SURROGATE})
    if missing := rules.reason_error(reason):
        raise JobRequestError({"reason": missing})
    if len(reason) > 500:
        raise JobRequestError({"reason": "at most 500 characters"})
    return reason
