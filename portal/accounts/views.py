"""The Users pages (admins), the API tokens pages (everyone's own; admins everyone's) and the
second factor's pages (the login's second step, one's own enrolment).

Thin: every change goes through ``portal.accounts.users``, ``portal.accounts.tokens`` or
``portal.accounts.second_factor``, which record it; each form answers with a message saying
what happened or why not. Who may open the admin pages is ``policy.may_administer``
(``rbac.views.admin_only``).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import Group, User
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from portal.accounts import second_factor, tokens, users
from portal.accounts.models import ApiToken
from portal.rbac.policy import may_administer
from portal.rbac.views import admin_only

PAGE_SIZE = 50
TOKEN_STATES = ("active", "expired", "revoked")


def _errors_message(request: HttpRequest, errors: dict[str, str]) -> None:
    messages.error(request, "Not saved: " + "; ".join(errors.values()))


@admin_only
@require_http_methods(["GET"])
def user_list(request: HttpRequest) -> HttpResponse:
    """Every person's account, searched and filtered, 50 a page, each with their roles."""
    try:
        query = users.UserListQuery.from_params(request.GET)
    except users.UserError as exc:
        _errors_message(request, exc.errors)
        query, status = users.UserListQuery(), 400
    else:
        status = 200
    listing = second_factor.with_enrolment(query.apply(users.people()))
    page = Paginator(listing, PAGE_SIZE).get_page(request.GET.get("page"))
    for person in page:  # from the prefetched roles: no query per row
        person.otp_required = second_factor.required_by_roles(  # type: ignore[attr-defined]
            person, [role.name for role in person.groups.all()]
        )
    context = {
        "page": page,
        "query": query,
        "roles": Group.objects.order_by("name").values_list("name", flat=True),
        "sources": users.SOURCES,
        "last_login_choices": users.LAST_LOGIN_CHOICES,
        "source_of": users.SOURCE_LOCAL,
    }
    return render(request, "accounts/users.html", context, status=status)


@admin_only
@require_http_methods(["GET", "POST"])
def user_create(request: HttpRequest) -> HttpResponse:
    """A new account: details, roles, and a password or a set-password link by e-mail."""
    form = {"username": "", "first_name": "", "last_name": "", "email": "", "roles": [],
            "password_mode": "link"}  # fmt: skip
    errors: dict[str, str] = {}
    if request.method == "POST":
        post = request.POST
        form = {name: post.get(name, "") for name in ("username", "first_name", "last_name",
                                                      "email", "password_mode")}  # fmt: skip
        form["roles"] = post.getlist("roles")
        send_link = form["password_mode"] != "password"  # noqa: S105 (a choice, not a secret)
        spec = users.UserSpec(
            form["username"], form["first_name"], form["last_name"], form["email"],
            tuple(form["roles"]),
        )  # fmt: skip
        try:
            user = users.create_user(
                spec,
                password=None if send_link else post.get("password", ""),
                actor=request.user,
                request=request,
            )
        except users.UserError as exc:
            errors = exc.errors
            _errors_message(request, errors)
        else:
            messages.success(request, f"Account {user.username} created.")
            if send_link:
                _send_link(request, user)
            return redirect("accounts:user", pk=user.pk)
    context = {"form": form, "errors": errors, "roles": Group.objects.order_by("name")}
    return render(request, "accounts/user_new.html", context, status=400 if errors else 200)


def _send_link(request: HttpRequest, user: User) -> None:
    try:
        users.send_password_link(user, actor=request.user, request=request)  # type: ignore[arg-type]
    except users.UserError as exc:
        _errors_message(request, exc.errors)
    else:
        messages.success(request, f"A set-password link was sent to {user.email}.")


# The forms of one account's page, each posted with its name in "form".
USER_FORMS = ("details", "roles", "password", "link", "deactivate", "reactivate", "otp-reset")


@admin_only
@require_http_methods(["GET", "POST"])
def user_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One account: details, roles, password, deactivate or reactivate; its API tokens."""
    user = get_object_or_404(users.people(), pk=pk)
    actor: User = request.user  # type: ignore[assignment]
    errors: dict[str, str] = {}
    which = request.POST.get("form", "")
    if request.method == "POST":
        post = request.POST
        try:
            if which == "details":
                spec = users.UserSpec(user.username, post.get("first_name", ""),
                                      post.get("last_name", ""), post.get("email", ""))  # fmt: skip
                changed = users.update_user(user, spec, actor=actor, request=request)
                messages.success(request, f"Saved {', '.join(changed)}." if changed
                                 else "Nothing changed.")  # fmt: skip
            elif which == "roles":
                users.set_roles(user, post.getlist("roles"), actor=actor, request=request)
                messages.success(request, f"Roles of {user.username} saved.")
            elif which == "password":
                users.set_password(user, post.get("password", ""), actor=actor, request=request)
                messages.success(request, f"Password of {user.username} set; their sessions ended.")
            elif which == "link":
                users.send_password_link(user, actor=actor, request=request)
                messages.success(request, f"A set-password link was sent to {user.email}.")
            elif which == "deactivate":
                users.deactivate_user(user, actor=actor, request=request)
                messages.success(request, f"{user.username} is deactivated and signed out"
                                 " everywhere; their API tokens are revoked.")  # fmt: skip
            elif which == "reactivate":
                users.reactivate_user(user, actor=actor, request=request)
                messages.success(request, f"{user.username} may sign in again.")
            elif which == "otp-reset":
                second_factor.reset_second_factor(user, actor=actor, request=request)
                messages.success(request, f"Second factor of {user.username} reset: they"
                                 " enrol again at their next login if their roles require"
                                 " it.")  # fmt: skip
            else:
                errors = {"form": f"unknown form {which!r}"}
                _errors_message(request, errors)
        except users.UserError as exc:
            errors = exc.errors
            _errors_message(request, errors)
        if not errors:
            return redirect("accounts:user", pk=user.pk)
        user.refresh_from_db()
    context = {
        "person": user,
        "person_roles": set(user.groups.values_list("name", flat=True)),
        "roles": Group.objects.order_by("name"),
        "is_self": user.pk == actor.pk,
        "errors": errors,
        "failed_form": which if errors else "",
        "tokens": ApiToken.objects.for_listing().filter(user=user)[:PAGE_SIZE],
        "self_deactivation": users.SELF_DEACTIVATION,
        "self_demotion": users.SELF_DEMOTION,
        "otp_enrolled": second_factor.is_enrolled(user),
        "otp_required": second_factor.is_required(user),
    }
    return render(request, "accounts/user_detail.html", context, status=400 if errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def my_tokens(request: HttpRequest) -> HttpResponse:
    """The signed-in person's API tokens; POST makes one, shown this once on the answer."""
    owner: User = request.user  # type: ignore[assignment]
    issued = None
    errors: dict[str, str] = {}
    form = {"name": "", "expires_days": str(tokens.DEFAULT_EXPIRY_DAYS)}
    if request.method == "POST":
        form = {"name": request.POST.get("name", ""),
                "expires_days": request.POST.get("expires_days", "")}  # fmt: skip
        days = form["expires_days"]
        if days not in {str(choice) for choice in tokens.EXPIRY_DAYS}:
            errors = {"expires": f"choose {', '.join(map(str, tokens.EXPIRY_DAYS))} days"}
        else:
            try:
                issued = tokens.create_token(
                    owner, form["name"], int(days), actor=owner, request=request
                )
            except tokens.TokenError as exc:
                errors = exc.errors
        if errors:
            _errors_message(request, errors)
        else:
            messages.success(request, f"Token {form['name'].strip()!r} made. Copy it now: it is"
                             " shown only this once.")  # fmt: skip
            form = {"name": "", "expires_days": str(tokens.DEFAULT_EXPIRY_DAYS)}
    context = {
        "issued": issued,
        "form": form,
        "errors": errors,
        "expiry_days": tokens.EXPIRY_DAYS,
        "tokens": ApiToken.objects.for_listing().filter(user=owner)[:200],
    }
    response = render(request, "accounts/tokens.html", context, status=400 if errors else 200)
    if issued is not None:
        response["Cache-Control"] = "no-store"  # the secret must not stay in a cache
    return response


@login_required
@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """Revoke a token: one's own, or anyone's for an admin. Back to the page it came from."""
    token = get_object_or_404(ApiToken.objects.select_related("user"), pk=pk)
    actor: User = request.user  # type: ignore[assignment]
    admin = may_administer(actor)
    if token.user_id != actor.pk and not admin:
        return HttpResponseForbidden("only admins revoke other people's tokens")
    if tokens.revoke_token(token, actor=actor, request=request):
        messages.success(request, f"Token {token.name!r} ({token.prefix}…) of"
                         f" {token.user.username} revoked.")  # fmt: skip
    else:
        messages.error(request, f"Token {token.name!r} ({token.prefix}…) was already revoked.")
    back = request.POST.get("next", "")
    allowed = {reverse("accounts:tokens"), reverse("accounts:all-tokens")}
    if admin:
        allowed.add(reverse("accounts:user", kwargs={"pk": token.user_id}))
    return redirect(back if back.split("?", 1)[0] in allowed else reverse("accounts:tokens"))


@admin_only
@require_http_methods(["GET"])
def all_tokens(request: HttpRequest) -> HttpResponse:
    """Everyone's API tokens, newest first, by owner and state, 50 a page."""
    rows = ApiToken.objects.for_listing()
    owner = request.GET.get("user", "").strip()
    state = request.GET.get("state", "").strip()
    if owner:
        rows = rows.filter(user__username__icontains=owner)
    if state == "active":
        rows = rows.live()
    elif state == "revoked":
        rows = rows.filter(revoked_at__isnull=False)
    elif state == "expired":
        rows = rows.expired()
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"page": page, "owner": owner, "state": state, "states": TOKEN_STATES}
    return render(request, "accounts/all_tokens.html", context)


def _next_page(request: HttpRequest) -> str:
    """Where the login was going (a path on this site only), else the jobs list."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("jobs:list")


@require_http_methods(["GET", "POST"])
def second_factor_verify(request: HttpRequest) -> HttpResponse:
    """The login's second step: a code from the person's app, or a recovery code."""
    if not request.user.is_authenticated:
        return redirect("login")
    if second_factor.pending(request.session) != second_factor.PENDING_VERIFY:
        return redirect(_next_page(request))
    person: User = request.user  # type: ignore[assignment]
    if not second_factor.is_enrolled(person):
        # Reset by an admin since the password step: what is owed now (nothing, or enrolment).
        second_factor.mark_login(person, request.session)
        return redirect(_next_page(request))
    error = ""
    if request.method == "POST":
        try:
            second_factor.verify_code(person, request.POST.get("code", ""), request)
        except second_factor.SecondFactorError as exc:
            error = str(exc)
        else:
            return redirect(_next_page(request))
    context = {"error": error, "next": _next_page(request)}
    return render(request, "registration/second_factor.html", context, status=400 if error else 200)


@login_required
@require_http_methods(["GET", "POST"])
def my_second_factor(request: HttpRequest) -> HttpResponse:
    """One's own second factor: enrol an authenticator app (QR code, first code), then the
    recovery codes shown once; an enrolled person may make a fresh set of codes."""
    person: User = request.user  # type: ignore[assignment]
    codes: list[str] = []
    error = ""
    which = request.POST.get("form", "")
    if request.method == "POST":
        try:
            if which == "confirm":
                codes = second_factor.confirm_enrolment(
                    person, request.POST.get("code", ""), request=request
                )
                messages.success(request, "Second factor enrolled. Keep the recovery codes below.")
            elif which == "codes":
                codes = second_factor.regenerate_recovery_codes(person, request=request)
                messages.success(request, "New recovery codes made; the old ones no longer work.")
            else:
                error = f"unknown form {which!r}"
        except second_factor.SecondFactorError as exc:
            error = str(exc)
        if error:
            messages.error(request, "Not saved: " + error)
    enrolled = second_factor.is_enrolled(person)
    context = {
        "enrolled": enrolled,
        "required": second_factor.is_required(person),
        "forced": second_factor.pending(request.session) == second_factor.PENDING_ENROL,
        "codes": codes,
        "enrolment": None if enrolled else second_factor.start_enrolment(person),
    }
    response = render(request, "accounts/second_factor.html", context, status=400 if error else 200)
    response["Cache-Control"] = "no-store"  # the secret and the codes must not stay in a cache
    return response
