"""The saved filters' JSON API, for the job form's picker and "save this filter"."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.shortcuts import get_object_or_404
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.targeting.models import SavedFilter
from portal.targeting.services import (
    SavedFilterError,
    SavedFilterForbidden,
    delete_filter,
    save_filter,
    shareable_roles,
)


def saved_filter_data(saved: SavedFilter, user: User) -> dict[str, Any]:
    """One saved filter as the API shows it to ``user``."""
    return {
        "id": saved.pk,
        "name": saved.name,
        "expression": saved.expression,
        "owner": saved.owner.get_username(),
        "shared_with": saved.shared_with.name if saved.shared_with else None,
        "mine": saved.owner_id == user.pk,
        "created_at": saved.created_at.isoformat(),
    }


def _error(exc: SavedFilterError, code: int) -> Response:
    return Response({"errors": exc.errors, "column": exc.column}, status=code)


class SavedFilterListAPI(APIView):
    """``GET``: the filters the person may use, and the roles they may share with.

    ``POST {"name", "expression", "shared_with": role or null}``: 201 with the new filter;
    400 ``{"errors": {field: message}, "column"}`` (column of an expression's syntax error).
    """

    def get(self, request: Request) -> Response:
        found = SavedFilter.objects.visible_to(request.user).select_related("owner", "shared_with")
        return Response(
            {
                "results": [saved_filter_data(saved, request.user) for saved in found],
                "roles": [group.name for group in shareable_roles(request.user)],
            }
        )

    def post(self, request: Request) -> Response:
        data = request.data if isinstance(request.data, dict) else {}
        shared_with = data.get("shared_with") or None
        try:
            if shared_with is not None and not isinstance(shared_with, str):
                raise SavedFilterError({"shared_with": "must be a role's name or null"})
            saved = save_filter(request.user, data.get("name"), data.get("expression"), shared_with)
        except SavedFilterError as exc:
            return _error(exc, status.HTTP_400_BAD_REQUEST)
        return Response(saved_filter_data(saved, request.user), status=status.HTTP_201_CREATED)


class SavedFilterDetailAPI(APIView):
    """``GET``: one filter the person may use; ``DELETE``: 204, for its owner only (else 403)."""

    def get(self, request: Request, filter_id: int) -> Response:
        saved = get_object_or_404(SavedFilter.objects.visible_to(request.user), pk=filter_id)
        return Response(saved_filter_data(saved, request.user))

    def delete(self, request: Request, filter_id: int) -> Response:
        saved = get_object_or_404(SavedFilter.objects.visible_to(request.user), pk=filter_id)
        try:
            delete_filter(request.user, saved)
        except SavedFilterForbidden as exc:
            return _error(exc, status.HTTP_403_FORBIDDEN)
        return Response(status=status.HTTP_204_NO_CONTENT)
