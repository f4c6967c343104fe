"""Every change to saved filters goes through these functions."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, User
from django.db import IntegrityError, transaction

from agents.filters import Filter, FilterSyntaxError
from portal.targeting.models import MAX_NAME_LENGTH, SavedFilter
from portal.targeting.permissions import SavedFilterPolicy


class SavedFilterError(Exception):
    """A saved filter that cannot be written; ``errors`` maps each bad field to what is wrong.

    ``column`` is the 1-based place of an expression's syntax error, when it has one.
    """

    def __init__(self, errors: dict[str, str], column: int | None = None) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors
        self.column = column


class SavedFilterForbidden(SavedFilterError):
    """A change the person may not make (someone else's filter)."""


def shareable_roles(user: User) -> list[Group]:
    """The roles (groups) ``user`` may share a filter with (``SavedFilterPolicy``)."""
    return SavedFilterPolicy.shareable_roles(user)


def check_expression(expression: Any) -> str:
    """The expression, stripped, once the filter parser (the preview's) accepts it.

    Raises ``SavedFilterError`` with the parser's message and column otherwise.
    """
    if not isinstance(expression, str):
        raise SavedFilterError({"expression": "must be a string"})
    text = expression.strip()
    if not text:
        raise SavedFilterError({"expression": "is empty: write the filter to save"})
    if "\x00" in text:  # no database text can hold it, and no node's fact either
        column = text.index("\x00") + 1
        raise SavedFilterError(
            {"expression": f"has a NUL character at column {column}; remove it"}, column
        )
    try:
        Filter.parse(text)
    except FilterSyntaxError as exc:
        raise SavedFilterError({"expression": exc.message}, exc.column) from None
    except (RecursionError, ValueError) as exc:  # defensive: never a 500 for typed text
        raise SavedFilterError({"expression": f"cannot parse this filter: {exc}"}) from None
    return text


def save_filter(
    owner: User, name: Any, expression: Any, shared_with: str | None = None
) -> SavedFilter:
    """Create ``owner``'s filter ``name`` (unique for them in any case), in one transaction.

    ``shared_with`` names a role the owner has (see ``shareable_roles``), or None for a
    private filter. Raises ``SavedFilterError`` naming every field that is wrong.
    """
    errors: dict[str, str] = {}
    column = None
    if not isinstance(name, str) or not name.strip():
        errors["name"] = "is required"
    elif len(name.strip()) > MAX_NAME_LENGTH:
        errors["name"] = f"is longer than {MAX_NAME_LENGTH} characters"
    elif "\x00" in name:
        errors["name"] = "has a NUL character; remove it"
    else:
        name = name.strip()
        if SavedFilter.objects.filter(owner=owner, name__iexact=name).exists():
            errors["name"] = f"you already have a filter named {name!r}"
    try:
        expression = check_expression(expression)
    except SavedFilterError as exc:
        errors.update(exc.errors)
        column = exc.column
    role = None
    if shared_with:
        role = next((g for g in shareable_roles(owner) if g.name == shared_with), None)
        if role is None:
            mine = ", ".join(g.name for g in shareable_roles(owner)) or "none"
            errors["shared_with"] = (
                f"you can share only with a role you have ({mine}), not {shared_with!r}"
            )
    if errors:
        raise SavedFilterError(errors, column)
    try:
        with transaction.atomic():
            return SavedFilter.objects.create(
                owner=owner, name=name, expression=expression, shared_with=role
            )
    except IntegrityError:  # the same name saved at the same moment by another request
        raise SavedFilterError({"name": f"you already have a filter named {name!r}"}) from None


def delete_filter(user: User, saved: SavedFilter) -> None:
    """Delete ``saved``; only its owner may (``SavedFilterForbidden`` for anyone else)."""
    if not SavedFilterPolicy.may_delete(user, saved):
        raise SavedFilterForbidden(
            {"owner": f"only its owner, {saved.owner.get_username()}, can delete this filter"}
        )
    saved.delete()
