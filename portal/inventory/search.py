"""Search columns: each node's facts as the filter matcher reads them, computed in Python.

The nodes decide whether a fact term matches by looking the fact up (``lookup_fact``: the
flat key, else a dotted path through nested objects), printing each value with ``str()``
(``true``/``false`` for booleans, one text per element of a list) and, for ``<``/``>`` and
friends, reading that text as a number (``as_number``). Doing that in SQL for every row
costs a correlated sub-plan per row; so each Node also stores the result, written whenever
its facts are (``Node.save``, ``NodeQuerySet.bulk_create``/``bulk_update``). For every fact
name ``lookup_fact`` resolves to a value other than None, dotted nested names included:

* ``fact_text``: a scalar's text (an object's is its Python repr);
* ``fact_number``: a scalar's number, when its text reads as one;
* ``fact_lists``: for a list, one ``{"t": text, "n": number}`` per element (no ``n`` when
  the element's text is not a number).

Scalars and lists are apart so that the common case, a scalar, is one key lookup in SQL.
All three are a function of the facts *as the database returns them*, because the reference
is ``Filter.matches`` on the stored node: on PostgreSQL ``jsonb`` orders object keys and
prints large floats without an exponent (``jsonb_form``), which changes what ``str()`` shows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

# The nodes' own rules; as_text is how fact_matches prints a value before comparing it.
from agents.filters.terms import MISSING, as_number, as_text, lookup_fact

SEARCH_FIELDS = ("fact_text", "fact_number", "fact_lists")


def search_columns(facts: Any, vendor: str) -> dict[str, dict[str, Any]]:
    """The search columns (``SEARCH_FIELDS``) for a node with ``facts`` on ``vendor``."""
    stored = stored_form(facts, vendor)
    texts: dict[str, str] = {}
    numbers: dict[str, float] = {}
    lists: dict[str, list[dict[str, Any]]] = {}
    for name in _candidate_names(stored):
        value = lookup_fact(stored, name)
        if value is MISSING or value is None:
            continue  # a missing or null fact never matches, whatever the operator
        if isinstance(value, list):
            lists[name] = [_element(as_text(v)) for v in value]
            continue
        texts[name] = as_text(value)
        number = as_number(texts[name])
        if number is not None:
            numbers[name] = number
    return {"fact_text": texts, "fact_number": numbers, "fact_lists": lists}


def _element(text: str) -> dict[str, Any]:
    number = as_number(text)
    return {"t": text} if number is None else {"t": text, "n": number}


def stored_form(value: Any, vendor: str) -> Any:
    """``value`` as the database gives it back from a JSON column (a JSON round trip, and
    on PostgreSQL ``jsonb_form``)."""
    plain = json.loads(json.dumps(value))
    return jsonb_form(plain) if vendor == "postgresql" else plain


def jsonb_form(value: Any) -> Any:
    """A JSON value as PostgreSQL's ``jsonb`` returns it: object keys shortest first, then
    by UTF-8 bytes; numbers kept as ``numeric``, so a float printed with ``e+`` comes back an
    integer (``1e+16`` is ``10000000000000000``) and ``-0.0`` comes back ``0.0``."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return {k: jsonb_form(value[k]) for k in keys}
    if isinstance(value, list):
        return [jsonb_form(v) for v in value]
    if isinstance(value, float) and math.isfinite(value):
        text = repr(value)
        if "e+" in text:
            return int(Decimal(text))
        return 0.0 if value == 0 else value
    return value


def _candidate_names(facts: Any) -> Iterator[str]:
    """Every top-level key and every dotted path through nested objects: a superset of the
    names ``lookup_fact`` resolves (it is asked for each, so shadowing follows its rule)."""
    if not isinstance(facts, dict):
        return
    stack: list[tuple[str, Any]] = list(facts.items())
    while stack:
        name, value = stack.pop()
        yield name
        if isinstance(value, dict):
            stack.extend((f"{name}.{key}", child) for key, child in value.items())
