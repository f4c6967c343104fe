"""The API tokens pages: a person makes a named, expiring token (shown once), sees when each
was last used and revokes them; admins see and revoke everyone's. The Access pages' other
forms (roles, grants, settings) answer with a message too."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from portal.accounts.models import ApiToken
from portal.accounts.tokens import create_token
from portal.audit.models import AuditEvent
from portal.rbac.services import GrantSpec, set_grant, sync_catalog
from tests.accounts.conftest import logged_in, messages_of

pytestmark = pytest.mark.django_db

MINE = "/account/tokens/"
EVERYONE = "/access/tokens/"


def revoke_url(token: ApiToken) -> str:
    return f"/account/tokens/{token.pk}/revoke/"


def test_the_user_menu_links_to_the_tokens_page(operator: User) -> None:
    assert f'href="{MINE}"' in logged_in(operator).get("/jobs/new/").content.decode()
    assert Client().get(MINE).status_code == 302  # to the login page


def test_a_token_is_made_shown_once_and_works(operator: User) -> None:
    client = logged_in(operator)
    response = client.post(MINE, {"name": "nightly-report", "expires_days": "30"})
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    secret = response.context["issued"].secret
    page = response.content.decode()
    assert secret in page and "shown only this once" in page
    assert messages_of(response) == [
        "Token 'nightly-report' made. Copy it now: it is shown only this once."
    ]
    again = client.get(MINE).content.decode()
    assert secret not in again and secret[:12] in again and "nightly-report" in again
    api = Client(HTTP_AUTHORIZATION=f"Token {secret}")
    assert api.get("/api/jobs/").status_code == 200
    used = ApiToken.objects.get().last_used
    assert used is not None
    assert f'<time datetime="{used.isoformat()}' in client.get(MINE).content.decode()
    (event,) = AuditEvent.objects.filter(kind="token.created")
    assert (event.actor, event.data["user"], event.data["name"]) == ("noc", "noc", "nightly-report")


@pytest.mark.parametrize(
    ("form", "says"),
    [
        ({"name": "", "expires_days": "30"}, "give the token a name"),
        ({"name": "x", "expires_days": "0"}, "choose 30, 90, 365 days"),
        ({"name": "x", "expires_days": "never"}, "choose 30, 90, 365 days"),
        ({"name": "x" * 101, "expires_days": "90"}, "give the token a name"),
    ],
)
def test_a_bad_token_form_says_why(operator: User, form: dict[str, str], says: str) -> None:
    response = logged_in(operator).post(MINE, form)
    assert response.status_code == 400
    (message,) = messages_of(response)
    assert says in message and response.context["issued"] is None
    assert not ApiToken.objects.exists()


def test_one_revokes_ones_own_tokens_but_not_others(operator: User, other_operator: User) -> None:
    mine = create_token(operator, "mine", 30, actor=operator).token
    theirs = create_token(other_operator, "theirs", 30, actor=other_operator).token
    client = logged_in(operator)
    response = client.post(revoke_url(mine), {"next": MINE}, follow=True)
    assert messages_of(response) == [f"Token 'mine' ({mine.prefix}…) of noc revoked."]
    assert response.redirect_chain[-1][0] == MINE
    again = client.post(revoke_url(mine), follow=True)
    assert messages_of(again) == [f"Token 'mine' ({mine.prefix}…) was already revoked."]
    assert client.post(revoke_url(theirs)).status_code == 403
    theirs.refresh_from_db()
    assert theirs.revoked_at is None
    # An outside "next" is not followed.
    other = create_token(operator, "other", 30, actor=operator).token
    assert client.post(revoke_url(other), {"next": "https://evil.example/"}).url == MINE


def test_admins_list_and_revoke_everyones_tokens(
    admin_client: Client, operator: User, other_operator: User, django_assert_max_num_queries
) -> None:
    a = create_token(operator, "a", 30, actor=operator).token
    create_token(other_operator, "b", 30, actor=other_operator)
    page = admin_client.get(EVERYONE).content.decode()
    assert 'data-token="' + a.prefix in page and "noc2" in page
    filtered = admin_client.get(EVERYONE, {"user": "noc2"})
    assert [t.user.username for t in filtered.context["page"]] == ["noc2"]
    with django_assert_max_num_queries(10):
        admin_client.get(EVERYONE)
    response = admin_client.post(revoke_url(a), {"next": EVERYONE}, follow=True)
    assert response.redirect_chain[-1][0] == EVERYONE
    assert messages_of(response) == [f"Token 'a' ({a.prefix}…) of noc revoked."]
    a.refresh_from_db()
    assert a.revoked_by.username == "root"
    revoked = admin_client.get(EVERYONE, {"state": "revoked"}).context["page"]
    assert [t.name for t in revoked] == ["a"]
    active = admin_client.get(EVERYONE, {"state": "active"}).context["page"]
    assert [t.name for t in active] == ["b"]
    (event,) = AuditEvent.objects.filter(kind="token.revoked")
    assert (event.actor, event.data["user"], event.data["name"]) == ("root", "noc", "a")
    # An account's page lists its tokens, and revoking there comes back to it.
    b = ApiToken.objects.get(name="b")
    back = f"/access/users/{other_operator.pk}/"
    assert b.prefix in admin_client.get(back).content.decode()
    assert admin_client.post(revoke_url(b), {"next": back}).url == back


# -- the other Access forms answer with a message ------------------------------------------------


def test_the_role_and_grant_forms_confirm_or_say_why(admin_client: Client) -> None:
    sync_catalog()
    Group.objects.create(name="acme-noc")
    set_grant(GrantSpec("acme-noc", "service", ("status",), "customer=acme"), actor=None)
    created = admin_client.post("/access/", {"name": "night-shift"}, follow=True)
    assert messages_of(created) == ["Role night-shift created."]
    refused = admin_client.post("/access/", {"name": "night shift"})
    assert refused.status_code == 400 and "without spaces" in messages_of(refused)[0]

    saved = admin_client.post("/access/roles/night-shift/settings/", {"confirm_above": "5"},
                              follow=True)  # fmt: skip
    assert messages_of(saved) == ["Settings of role night-shift saved."]
    bad = admin_client.post("/access/roles/night-shift/settings/", {"confirm_above": "many"})
    assert bad.status_code == 400
    assert messages_of(bad) == [
        "Settings of role night-shift not saved: confirm above: a whole number of nodes"
    ]

    url = "/access/roles/acme-noc/grants/service/"
    granted = admin_client.post(url, {"actions": ["status"], "approval": "never"}, follow=True)
    assert messages_of(granted) == ["Grant of service to role acme-noc saved."]
    wrong = admin_client.post(url, {"actions": ["status"], "scope": "customer=acme and ("})
    assert wrong.status_code == 400 and messages_of(wrong)[0].startswith("Grant not saved: ")
    revoked = admin_client.post(url, {"revoke": "1"}, follow=True)
    assert messages_of(revoked) == ["Role acme-noc may no longer run service."]
    nothing = admin_client.post(url, {"revoke": "1"}, follow=True)
    assert messages_of(nothing) == ["Role acme-noc had no grant of service to revoke."]
