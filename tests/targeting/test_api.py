"""The saved filters' JSON API (portal/targeting/api.py)."""

from __future__ import annotations

import itertools

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.targeting.models import SavedFilter
from portal.targeting.services import save_filter

pytestmark = pytest.mark.django_db

LIST = "/api/saved-filters/"


def detail(pk: int) -> str:
    return f"{LIST}{pk}/"


def test_list_shows_own_and_shared_filters_and_the_roles_to_share_with(
    alice, bob, client_for, django_assert_max_num_queries
):
    save_filter(alice, "prod", "environment=prod", shared_with="operator")
    save_filter(alice, "dbs", "role=db", shared_with="dba")
    mine = save_filter(bob, "web", "/web/")
    client = client_for(bob)
    with django_assert_max_num_queries(4):  # session, user, filters, roles
        response = client.get(LIST)
    assert response.status_code == 200
    body = response.json()
    assert body["roles"] == ["operator"]
    assert [(f["name"], f["owner"], f["shared_with"], f["mine"]) for f in body["results"]] == [
        ("prod", "alice", "operator", False),
        ("web", "bob", None, True),
    ]
    assert body["results"][1] == {
        "id": mine.pk,
        "name": "web",
        "expression": "/web/",
        "owner": "bob",
        "shared_with": None,
        "mine": True,
        "created_at": mine.created_at.isoformat(),
    }


def test_create(alice, client_for):
    client = client_for(alice)
    response = client.post(
        LIST,
        {"name": "acme web", "expression": "customer=acme and /web/", "shared_with": "dba"},
        content_type="application/json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["name"] == "acme web" and body["shared_with"] == "dba" and body["mine"] is True
    saved = SavedFilter.objects.get(pk=body["id"])
    assert (saved.owner, saved.expression) == (alice, "customer=acme and /web/")


def test_create_private_with_null_or_empty_role(alice, client_for):
    client = client_for(alice)
    for name, role in (("a", None), ("b", "")):
        response = client.post(
            LIST,
            {"name": name, "expression": "customer=acme", "shared_with": role},
            content_type="application/json",
        )
        assert response.status_code == 201
        assert response.json()["shared_with"] is None


@pytest.mark.parametrize(
    ("payload", "errors", "column"),
    [
        (
            {"name": "x", "expression": "customer=acme and"},
            {"expression": "expected a filter term at column 18, found end of filter"},
            18,
        ),
        ({"name": "", "expression": "a"}, {"name": "is required"}, None),
        ({"expression": "a"}, {"name": "is required"}, None),
        ({"name": "x"}, {"expression": "must be a string"}, None),
        ({"name": ["x"], "expression": "a"}, {"name": "is required"}, None),
        (
            {"name": "x", "expression": "a", "shared_with": 3},
            {"shared_with": "must be a role's name or null"},
            None,
        ),
        (
            {"name": "x", "expression": "a", "shared_with": "root"},
            {"shared_with": "you can share only with a role you have (dba, operator), not 'root'"},
            None,
        ),
    ],
)
def test_bad_input_is_a_clear_400(alice, client_for, payload, errors, column):
    response = client_for(alice).post(LIST, payload, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"errors": errors, "column": column}
    assert not SavedFilter.objects.exists()


@pytest.mark.parametrize("body", ["[1, 2]", '"text"', "null", "{not json"])
def test_a_body_that_is_not_an_object_is_a_400(alice, client_for, body):
    response = client_for(alice).post(LIST, body, content_type="application/json")
    assert response.status_code == 400
    assert not SavedFilter.objects.exists()


def test_a_taken_name_is_a_400(alice, client_for):
    save_filter(alice, "web", "/web/")
    response = client_for(alice).post(
        LIST, {"name": "WEB", "expression": "/web/"}, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["errors"] == {"name": "you already have a filter named 'WEB'"}


def test_detail_and_delete(alice, bob, carol, client_for):
    shared = save_filter(alice, "prod", "environment=prod", shared_with="operator")
    assert client_for(bob).get(detail(shared.pk)).json()["name"] == "prod"
    assert client_for(carol).get(detail(shared.pk)).status_code == 404

    refused = client_for(bob).delete(detail(shared.pk))
    assert refused.status_code == 403
    assert refused.json()["errors"] == {"owner": "only its owner, alice, can delete this filter"}
    assert client_for(carol).delete(detail(shared.pk)).status_code == 404
    assert SavedFilter.objects.count() == 1

    assert client_for(alice).delete(detail(shared.pk)).status_code == 204
    assert not SavedFilter.objects.exists()
    assert client_for(alice).delete(detail(shared.pk)).status_code == 404


def test_anonymous_is_refused(alice):
    saved = save_filter(alice, "prod", "environment=prod")
    client = Client()
    assert client.get(LIST).status_code in (401, 403)
    assert client.post(LIST, {"name": "x", "expression": "a"}).status_code in (401, 403)
    assert client.delete(detail(saved.pk)).status_code in (401, 403)
    assert SavedFilter.objects.count() == 1


def test_session_posts_need_the_csrf_token(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post(LIST, {"name": "x", "expression": "a"}, content_type="application/json")
    assert response.status_code == 403
    assert not SavedFilter.objects.exists()


_names = itertools.count()


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    expression=st.one_of(
        st.text(max_size=80),
        st.text(alphabet="()=<>!~/\"' andortcusmer:0123456789.*+?[]\\", max_size=60),
    )
)
def test_any_expression_is_saved_or_refused_with_its_reason(alice, client_for, expression):
    """The save control takes whatever the text mode holds: a 201 or a clear 400, never a 500."""
    response = client_for(alice).post(
        LIST,
        {"name": f"generated {next(_names)}", "expression": expression},
        content_type="application/json",
    )
    assert response.status_code in (201, 400), (expression, response.content[:200])
    if response.status_code == 400:
        body = response.json()
        assert set(body["errors"]) == {"expression"} and body["errors"]["expression"]
        assert body["column"] is None or body["column"] >= 1
    else:
        assert response.json()["expression"] == expression.strip()
