"""The Users page: only admins; search, filters and paging in constant queries; create, edit,
roles, password, deactivate (signed out everywhere at once) and reactivate; a message for every
form; an audit event with the admin for every change; system accounts never listed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import Group, User
from django.contrib.sessions.models import Session
from django.core import mail
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from portal.accounts.models import ApiToken
from portal.accounts.sessions import SESSION_ENDED_TYPE, session_group
from portal.accounts.tokens import create_token
from portal.audit.models import AuditEvent
from tests.accounts.conftest import logged_in, messages_of

pytestmark = pytest.mark.django_db

USERS = "/access/users/"


def detail(user: User) -> str:
    return f"/access/users/{user.pk}/"


def events(kind: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(kind=kind).order_by("pk"))


def can_log_in(username: str, password: str) -> bool:
    """Through the login form, as a person would (django-axes wants the request)."""
    return Client().post("/login/", {"username": username, "password": password}).status_code == 302


def listed(response) -> list[str]:
    return [person.username for person in response.context["page"]]


# -- who may open what ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", [USERS, "/access/users/new/", "/access/users/1/", "/access/tokens/"]
)
def test_only_admins_reach_the_users_pages_and_everyones_tokens(
    path: str, operator: User, admin: User
) -> None:
    manager = User.objects.create_user("boss", password="pw-boss-123")
    manager.groups.add(Group.objects.get_or_create(name="manager")[0])
    for user in (operator, manager):
        assert logged_in(user).get(path).status_code == 403
    anonymous = Client().get(path)
    assert anonymous.status_code == 302 and anonymous.url.startswith("/login/")
    assert logged_in(admin).get(path).status_code in (200, 404)
    superuser = User.objects.create_superuser("su", password="pw-su-123")
    assert logged_in(superuser).get(USERS).status_code == 200


def test_the_access_pages_link_to_each_other(admin_client: Client) -> None:
    for path in ("/access/", USERS, "/access/tokens/"):
        page = admin_client.get(path).content.decode()
        assert 'href="/access/users/"' in page and 'href="/access/tokens/"' in page
    # The old roles-per-operator page is the Users page now.
    old = admin_client.get("/access/operators/")
    assert (old.status_code, old.url) == (302, USERS)


# -- the list -------------------------------------------------------------------------------------


@pytest.fixture
def people(admin: User) -> dict[str, User]:
    now = timezone.now()
    night = Group.objects.create(name="night-shift")
    alice = User.objects.create_user(
        "alice", email="alice@example.net", first_name="Alice", last_name="Liddell",
        last_login=now - timedelta(days=2),
    )  # fmt: skip
    alice.groups.add(night)
    bob = User.objects.create_user("bob", email="bob@corp.example", first_name="Robert",
                                   last_login=now - timedelta(days=200))  # fmt: skip
    carol = User.objects.create_user("carol", is_active=False)
    # django-guardian's anonymous user (its migrations make one).
    User.objects.get_or_create(username="AnonymousUser")
    return {"alice": alice, "bob": bob, "carol": carol}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["alice", "bob", "carol", "root"]),
        ({"q": "liddell"}, ["alice"]),
        ({"q": "CORP.example"}, ["bob"]),
        ({"q": "Robert"}, ["bob"]),
        ({"role": "night-shift"}, ["alice"]),
        ({"role": "admin"}, ["root"]),
        ({"active": "no"}, ["carol"]),
        ({"active": "yes", "q": "o"}, ["bob", "root"]),
        ({"last_login": "recent"}, ["alice", "root"]),  # root: just now (force_login)
        ({"last_login": "stale"}, ["bob", "carol"]),
        ({"last_login": "never"}, ["carol"]),
        ({"source": "local"}, ["alice", "bob", "carol", "root"]),
        ({"q": "AnonymousUser"}, []),
    ],
)
def test_search_and_filters(
    admin_client: Client, people: dict[str, User], params: dict[str, str], expected: list[str]
) -> None:
    response = admin_client.get(USERS, params)
    assert response.status_code == 200
    assert listed(response) == expected


def test_a_bad_filter_is_a_400_saying_which(admin_client: Client, people: dict[str, User]) -> None:
    response = admin_client.get(USERS, {"active": "maybe", "source": "ldap"})
    assert response.status_code == 400
    (message,) = messages_of(response)
    assert "active must be yes or no" in message and "source must be one of local" in message


def test_system_accounts_never_appear(admin_client: Client, people: dict[str, User]) -> None:
    page = admin_client.get(USERS).content.decode()
    assert "AnonymousUser" not in page
    anonymous = User.objects.get(username="AnonymousUser")
    assert admin_client.get(detail(anonymous)).status_code == 404
    form = {"username": "AnonymousUser", "password_mode": "password", "password": "Xq9!long-pass"}
    response = admin_client.post("/access/users/new/", form)
    assert response.status_code == 400 and "reserved" in messages_of(response)[0]


def _list_queries(client: Client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(USERS, {"q": "user"}).status_code == 200
    return len(queries)


def test_the_list_runs_the_same_queries_for_5_or_120_users(
    admin_client: Client, django_assert_max_num_queries
) -> None:
    roles = [Group.objects.get_or_create(name=name)[0] for name in ("operator", "night-shift")]

    def add(count: int, start: int) -> None:
        users = User.objects.bulk_create(
            User(username=f"user{n:04}") for n in range(start, start + count)
        )
        through = User.groups.through
        through.objects.bulk_create(
            through(user_id=u.pk, group_id=r.pk) for u in users for r in roles
        )

    add(5, 0)
    few = _list_queries(admin_client)
    add(115, 5)
    many = _list_queries(admin_client)
    assert few == many
    with django_assert_max_num_queries(10):
        response = admin_client.get(USERS, {"q": "user", "page": "2"})
    assert len(listed(response)) == 50 and "page 2 of 3" in response.content.decode()
    assert 'data-user="user0050"' in response.content.decode()
    assert "night-shift, operator" in response.content.decode()


# -- creating -------------------------------------------------------------------------------------


def test_create_with_a_password_and_roles(admin_client: Client, admin: User) -> None:
    Group.objects.get_or_create(name="operator")
    response = admin_client.post(
        "/access/users/new/",
        {"username": "dave", "first_name": "Dave", "email": "dave@example.net",
         "roles": ["operator"], "password_mode": "password", "password": "Xq9!long-pass"},
        follow=True,
    )  # fmt: skip
    assert response.status_code == 200
    assert messages_of(response) == ["Account dave created."]
    dave = User.objects.get(username="dave")
    assert dave.check_password("Xq9!long-pass") and dave.first_name == "Dave"
    assert list(dave.groups.values_list("name", flat=True)) == ["operator"]
    assert can_log_in("dave", "Xq9!long-pass")
    (created,) = events("user.created")
    assert (created.actor, created.data["user"]) == ("root", "dave")
    assert created.data["after"]["roles"] == ["operator"]
    assert created.data["after"]["password"] == "set"
    assert "Xq9!long-pass" not in str(created.data)
    (roles,) = events("operator.roles_changed")
    assert (roles.actor, roles.data["after"]) == (
        "root",
        {"operator": "dave", "roles": ["operator"]},
    )
    assert mail.outbox == []


def test_create_with_a_set_password_link(admin_client: Client) -> None:
    response = admin_client.post(
        "/access/users/new/",
        {"username": "erin", "email": "erin@example.net", "password_mode": "link"},
        follow=True,
    )
    assert messages_of(response) == [
        "Account erin created.", "A set-password link was sent to erin@example.net.",
    ]  # fmt: skip
    erin = User.objects.get(username="erin")
    assert not erin.has_usable_password()
    (message,) = mail.outbox
    assert message.to == ["erin@example.net"]
    link = next(line for line in message.body.splitlines() if "/account/reset/" in line)
    path = link.split("testserver", 1)[1]
    # Django's reset view swaps the token for a session marker, then takes the new password.
    form = Client()
    page = form.get(path, follow=True)
    assert page.status_code == 200 and "Set your password" in page.content.decode()
    done = form.post(page.redirect_chain[-1][0], {"new_password1": "Zz8#fresh-one",
                     "new_password2": "Zz8#fresh-one"}, follow=True)  # fmt: skip
    assert "Password set" in done.content.decode()
    assert can_log_in("erin", "Zz8#fresh-one")
    assert form.get(path, follow=True).context["validlink"] is False  # spent
    (sent,) = events("user.password_reset")
    assert (sent.actor, sent.data) == (
        "root", {"user": "erin", "method": "link", "email": "erin@example.net"},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("form", "field", "says"),
    [
        ({"username": ""}, "username", "1 to 150"),
        ({"username": "bad name"}, "username", "letters"),
        ({"username": "root"}, "username", "exists"),
        ({"email": ""}, "email", "needed to send"),
        ({"email": "nope"}, "email", "not an e-mail"),
        ({"password_mode": "password", "password": "123"}, "password", "too short"),
        ({"roles": ["ghosts"]}, "roles", "no role named ghosts"),
    ],
)  # fmt: skip
def test_create_refuses_bad_input_saying_why(
    admin_client: Client, form: dict, field: str, says: str
) -> None:
    base = {"username": "frank", "password_mode": "link", "email": "f@example.net"}
    response = admin_client.post("/access/users/new/", {**base, **form})
    assert response.status_code == 400
    assert says in response.context["errors"][field]
    (message,) = messages_of(response)
    assert message.startswith("Not saved: ") and says in message
    assert not User.objects.filter(username="frank").exists()
    assert events("user.created") == []


# -- one account's forms --------------------------------------------------------------------------


def test_edit_details_records_only_the_changed_fields(
    admin_client: Client, people: dict[str, User]
) -> None:
    alice = people["alice"]
    response = admin_client.post(detail(alice), {"form": "details", "first_name": "Alice",
                                 "last_name": "Pleasance", "email": "alice@example.net"},
                                 follow=True)  # fmt: skip
    assert messages_of(response) == ["Saved last_name."]
    (changed,) = events("user.changed")
    assert (changed.actor, changed.data) == (
        "root", {"user": "alice", "before": {"last_name": "Liddell"},
                 "after": {"last_name": "Pleasance"}},
    )  # fmt: skip
    same = admin_client.post(detail(alice), {"form": "details", "first_name": "Alice",
                             "last_name": "Pleasance", "email": "alice@example.net"},
                             follow=True)  # fmt: skip
    assert messages_of(same) == ["Nothing changed."] and len(events("user.changed")) == 1
    bad = admin_client.post(detail(alice), {"form": "details", "email": "not-an-address"})
    assert bad.status_code == 400 and "not an e-mail address" in messages_of(bad)[0]


def test_roles_are_assigned_with_the_existing_audit_kind(
    admin_client: Client, people: dict[str, User]
) -> None:
    bob = people["bob"]
    response = admin_client.post(detail(bob), {"form": "roles", "roles": ["night-shift"]},
                                 follow=True)  # fmt: skip
    assert messages_of(response) == ["Roles of bob saved."]
    assert list(bob.groups.values_list("name", flat=True)) == ["night-shift"]
    (event,) = events("operator.roles_changed")
    assert (event.actor, event.data["before"]["roles"], event.data["after"]["roles"]) == (
        "root", [], ["night-shift"],
    )  # fmt: skip


def test_an_admin_keeps_their_own_admin_role_and_account(admin_client: Client, admin: User) -> None:
    page = admin_client.get(detail(admin)).content.decode()
    assert "cannot deactivate your own account" in page
    assert "cannot take the admin role from yourself" in page
    refused = admin_client.post(detail(admin), {"form": "roles", "roles": ["operator"]})
    assert refused.status_code == 400
    assert "cannot take the admin role from yourself" in messages_of(refused)[0]
    assert list(admin.groups.values_list("name", flat=True)) == ["admin"]
    refused = admin_client.post(detail(admin), {"form": "deactivate"})
    assert refused.status_code == 400
    assert "cannot deactivate your own account" in messages_of(refused)[0]
    admin.refresh_from_db()
    assert admin.is_active
    # Adding a role to themselves is fine.
    Group.objects.create(name="night-shift")
    kept = admin_client.post(detail(admin), {"form": "roles", "roles": ["admin", "night-shift"]})
    assert kept.status_code == 302


def test_an_admin_sets_a_password(admin_client: Client, people: dict[str, User]) -> None:
    bob = people["bob"]
    weak = admin_client.post(detail(bob), {"form": "password", "password": "bob"})
    assert weak.status_code == 400 and "too short" in messages_of(weak)[0]
    response = admin_client.post(detail(bob), {"form": "password", "password": "Yy7$another-one"},
                                 follow=True)  # fmt: skip
    assert messages_of(response) == ["Password of bob set; their sessions ended."]
    assert can_log_in("bob", "Yy7$another-one")
    (event,) = events("user.password_reset")
    assert (event.actor, event.data) == ("root", {"user": "bob", "method": "set"})


def test_a_link_needs_an_address(admin_client: Client, people: dict[str, User]) -> None:
    carol = people["carol"]
    response = admin_client.post(detail(carol), {"form": "link"})
    assert response.status_code == 400 and "no e-mail address" in messages_of(response)[0]
    assert mail.outbox == []


@pytest.fixture
def in_memory_layer():
    layers = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with override_settings(CHANNEL_LAYERS=layers):
        yield get_channel_layer()


def test_deactivation_signs_the_person_out_everywhere_at_once(
    admin_client: Client, operator: User, in_memory_layer, django_capture_on_commit_callbacks
) -> None:
    browser, laptop = logged_in(operator), logged_in(operator)
    other = logged_in(User.objects.create_user("someone", password="pw-someone-1"))
    assert Session.objects.count() == 4  # the admin's, two of noc's, someone's
    tokens = [create_token(operator, name, 30, actor=operator) for name in ("a", "b")]
    socket = async_to_sync(in_memory_layer.new_channel)()
    async_to_sync(in_memory_layer.group_add)(session_group(operator.pk), socket)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(detail(operator), {"form": "deactivate"}, follow=True)
    assert messages_of(response) == [
        "noc is deactivated and signed out everywhere; their API tokens are revoked."
    ]
    operator.refresh_from_db()
    assert not operator.is_active
    # Sessions: gone from the store; pages answer with the login.
    assert Session.objects.count() == 2
    for client in (browser, laptop):
        assert client.get("/jobs/new/").status_code == 302
    assert other.get("/jobs/new/").status_code == 200
    # Tokens: revoked, by the admin; refused.
    assert set(ApiToken.objects.values_list("revoked_by__username", flat=True)) == {"root"}
    for issued in tokens:
        answer = Client(HTTP_AUTHORIZATION=f"Token {issued.secret}").get("/api/jobs/")
        assert answer.status_code == 401
    # WebSockets: the person's group was told to close.
    message = async_to_sync(in_memory_layer.receive)(socket)
    assert message == {"type": SESSION_ENDED_TYPE, "session": "", "reason": "deactivated"}
    (event,) = events("user.deactivated")
    assert (event.actor, event.data["user"], event.data["sessions_ended"]) == ("root", "noc", 2)
    assert event.data["tokens_revoked"] == sorted(t.token.prefix for t in tokens)

    again = admin_client.post(detail(operator), {"form": "deactivate"})
    assert again.status_code == 400 and "already deactivated" in messages_of(again)[0]

    response = admin_client.post(detail(operator), {"form": "reactivate"}, follow=True)
    assert messages_of(response) == ["noc may sign in again."]
    assert can_log_in("noc", "pw-noc-123")
    for issued in tokens:  # a token never outlives the deactivation
        answer = Client(HTTP_AUTHORIZATION=f"Token {issued.secret}").get("/api/jobs/")
        assert answer.status_code == 401
    (event,) = events("user.reactivated")
    assert (event.actor, event.data) == ("root", {"user": "noc", "tokens_revoked": []})


def test_a_deactivation_elsewhere_revokes_the_tokens_too(operator: User) -> None:
    """The Django admin or a script saving is_active=False: the receiver revokes them."""
    issued = create_token(operator, "a", 30, actor=operator)
    operator.is_active = False
    operator.save()
    operator.is_active = True
    operator.save()
    answer = Client(HTTP_AUTHORIZATION=f"Token {issued.secret}").get("/api/jobs/")
    assert answer.status_code == 401 and "revoked" in answer.json()["detail"]


def test_an_unknown_form_is_refused(admin_client: Client, operator: User) -> None:
    response = admin_client.post(detail(operator), {"form": "promote"})
    assert response.status_code == 400 and "unknown form" in messages_of(response)[0]
