"""Admin pages: the role x agent matrix, one grant's editor, roles' settings.

Thin: every change goes through ``portal.rbac.services`` (which records it for the audit
history) and answers with a message saying what was done or why not; who may see these pages
is ``policy.may_administer``. People's roles are set on the Users page (``portal.accounts``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import Group, User
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from portal.rbac import services
from portal.rbac.grants import read_grants
from portal.rbac.models import Agent, Grant, RoleSettings
from portal.rbac.policy import may_administer


def admin_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    @login_required
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not may_administer(request.user):
            return HttpResponseForbidden("only admins change roles and grants")
        return view(request, *args, **kwargs)

    return wrapper


@admin_only
@require_http_methods(["GET", "POST"])
def matrix(request: HttpRequest) -> HttpResponse:
    """Every role against every agent; POST creates a role."""
    errors: dict[str, str] = {}
    if request.method == "POST":
        try:
            role = services.create_role(
                request.POST.get("name", ""), actor=request.user, request=request
            )
        except services.GrantError as exc:
            errors = exc.errors
            messages.error(request, "Role not created: " + "; ".join(errors.values()))
        else:
            messages.success(request, f"Role {role.name} created.")
            return redirect("rbac:matrix")
    return _matrix_page(request, errors, status=400 if errors else 200)


def _matrix_page(request: HttpRequest, errors: dict[str, str], status: int = 200) -> HttpResponse:
    agents = list(Agent.objects.all())
    grants = {(grant.group_id, grant.content_object_id): grant for grant in read_grants()}
    settings_by_role = {s.role_id: s for s in RoleSettings.objects.all()}
    rows = []
    for role in Group.objects.order_by("name"):
        cells = []
        for agent in agents:
            grant = grants.get((role.pk, agent.pk))
            actions = None
            if grant is not None:
                actions = "all" if grant.all_actions else ", ".join(grant.action_names())
            cells.append({"agent": agent, "grant": grant, "actions": actions})
        rows.append({"role": role, "cells": cells, "settings": settings_by_role.get(role.pk)})
    context = {"agents": agents, "rows": rows, "errors": errors}
    return render(request, "rbac/matrix.html", context, status=status)


@admin_only
@require_http_methods(["GET", "POST"])
def grant_edit(request: HttpRequest, role: str, agent: str) -> HttpResponse:
    """One role's grant of one agent: actions, scope, approval; or revoke it."""
    group = get_object_or_404(Group, name=role)
    agent_row = get_object_or_404(Agent, name=agent)
    grant = read_grants(role_ids=[group.pk], agent=agent_row.name).first()
    errors: dict[str, str] = {}
    form = {
        "all_actions": grant.all_actions if grant else False,
        "actions": grant.action_names() if grant and not grant.all_actions else [],
        "scope": grant.scope if grant else "",
        "approval": grant.approval if grant else Grant.Approval.NEVER,
        "approval_above": grant.approval_above if grant else None,
    }
    if request.method == "POST":
        if request.POST.get("revoke"):
            if services.revoke_grant(role, agent, actor=request.user, request=request):
                messages.success(request, f"Role {role} may no longer run {agent}.")
            else:
                messages.error(request, f"Role {role} had no grant of {agent} to revoke.")
            return redirect("rbac:matrix")
        form = {
            "all_actions": request.POST.get("all_actions") == "on",
            "actions": request.POST.getlist("actions"),
            "scope": request.POST.get("scope", ""),
            "approval": request.POST.get("approval", Grant.Approval.NEVER),
            "approval_above": request.POST.get("approval_above", "").strip() or None,
        }
        above = form["approval_above"]
        if above is not None and not str(above).isdigit():
            errors["approval_above"] = "a whole number of nodes"
        else:
            spec = services.GrantSpec(
                role=role,
                agent=agent,
                actions=None if form["all_actions"] else tuple(form["actions"]),
                scope=form["scope"],
                approval=form["approval"],
                approval_above=int(above) if above is not None else None,
            )
            try:
                services.set_grant(spec, actor=request.user, request=request)
            except services.GrantError as exc:
                errors = exc.errors
            else:
                messages.success(request, f"Grant of {agent} to role {role} saved.")
                return redirect("rbac:matrix")
        if errors:
            messages.error(request, "Grant not saved: " + "; ".join(errors.values()))
    context = {
        "role": group,
        "agent": agent_row,
        "grant": grant,
        "form": form,
        "errors": errors,
        "approvals": Grant.Approval.choices,
    }
    return render(request, "rbac/grant_edit.html", context, status=400 if errors else 200)


@admin_only
@require_http_methods(["POST"])
def role_settings(request: HttpRequest, role: str) -> HttpResponse:
    """Save one role's settings; the answer is the matrix with a message (400 if refused)."""
    confirm_above = request.POST.get("confirm_above", "").strip()
    if confirm_above and not confirm_above.isdigit():
        return _settings_refused(request, role, "confirm above: a whole number of nodes")
    try:
        services.update_role_settings(
            role,
            confirm_above=int(confirm_above) if confirm_above else None,
            reason_required=request.POST.get("reason_required") == "on",
            may_approve=request.POST.get("may_approve") == "on",
            may_cancel_any=request.POST.get("may_cancel_any") == "on",
            sees_all_nodes=request.POST.get("sees_all_nodes") == "on",
            actor=request.user,
            request=request,
        )
    except services.GrantError as exc:
        return _settings_refused(request, role, "; ".join(exc.errors.values()))
    messages.success(request, f"Settings of role {role} saved.")
    return redirect("rbac:matrix")


def _settings_refused(request: HttpRequest, role: str, reason: str) -> HttpResponse:
    messages.error(request, f"Settings of role {role} not saved: {reason}")
    return _matrix_page(request, {}, status=400)


@admin_only
@require_http_methods(["GET", "POST"])
def operators(request: HttpRequest) -> HttpResponse:
    """The old roles-per-operator page, replaced by the Users page (which lists, searches and
    pages people and sets their roles): GET goes there; the POST it took still sets one
    operator's roles, for bookmarks and scripts."""
    if request.method == "POST":
        operator = get_object_or_404(User, pk=request.POST.get("operator", "0") or 0)
        try:
            services.set_operator_roles(
                operator, request.POST.getlist("roles"), actor=request.user, request=request
            )
        except services.GrantError as exc:
            messages.error(request, "Roles not saved: " + "; ".join(exc.errors.values()))
        else:
            messages.success(request, f"Roles of {operator.username} saved.")
    return redirect("accounts:users")
