"""Actions that change nodes (DDL ``changes_node``) ask for more by default: the typed count
above a lower threshold, a reason on every path, and a page that says so."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from portal.accounts.services import issue_token
from portal.jobs.models import Job
from portal.rbac.policy import (
    REASON_FOR_CHANGE,
    REASON_FOR_ROLE,
    ConfirmationRules,
    confirmation_rules,
)
from portal.rbac.services import update_role_settings

pytestmark = pytest.mark.django_db(transaction=True)

# The acme nodes of the rbac fleet: acme_operator's scope.
ACME = 4
RESTART = {"agent_action": "service.restart", "input:service.restart:service": "nginx"}


def _settings(role: str, *, confirm_above: int | None = None, reason: bool = False) -> None:
    update_role_settings(
        role, confirm_above=confirm_above, reason_required=reason, may_approve=False, actor=None
    )


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


# -- the one decision ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role_above", "role_reason", "changes_node", "expected"),
    [
        # No role setting: the defaults (SWITCHBOARD_CONFIRM_ABOVE is 25 in the tests).
        (None, False, False, ConfirmationRules(False, 25, False, "")),
        (None, False, True, ConfirmationRules(True, 1, True, REASON_FOR_CHANGE)),
        # A role may be stricter for both kinds...
        (0, False, True, ConfirmationRules(True, 0, True, REASON_FOR_CHANGE)),
        (3, True, False, ConfirmationRules(False, 3, True, REASON_FOR_ROLE)),
        (3, True, True, ConfirmationRules(True, 1, True, REASON_FOR_ROLE)),
        # ...but never looser for an action that changes nodes.
        (50, False, False, ConfirmationRules(False, 50, False, "")),
        (50, False, True, ConfirmationRules(True, 1, True, REASON_FOR_CHANGE)),
    ],
)
def test_confirmation_rules(
    make_operator: Callable[..., User],
    settings,
    role_above: int | None,
    role_reason: bool,
    changes_node: bool,
    expected: ConfirmationRules,
) -> None:
    settings.SWITCHBOARD_CONFIRM_ABOVE = 25
    user = make_operator("op", "ops")
    _settings("ops", confirm_above=role_above, reason=role_reason)
    assert confirmation_rules(user, changes_node) == expected


def test_the_strictest_role_wins_and_the_risky_threshold_is_a_setting(
    make_operator: Callable[..., User], settings
) -> None:
    settings.SWITCHBOARD_CONFIRM_ABOVE = 25
    settings.SWITCHBOARD_CONFIRM_RISKY_ABOVE = 5
    user = make_operator("op", "ops")
    assert confirmation_rules(user, True).confirm_above == 5
    user.groups.add(make_operator("other", "strict").groups.get())
    _settings("strict", confirm_above=2)
    assert confirmation_rules(user, True).confirm_above == 2
    assert confirmation_rules(user, False).confirm_above == 2


def test_the_rules_answer_for_a_count_and_a_reason() -> None:
    rules = ConfirmationRules(True, 1, True, REASON_FOR_CHANGE)
    assert [rules.must_type_count(n) for n in (0, 1, 2)] == [False, False, True]
    assert rules.typed_count_error(2, " 2 ") == ""
    assert rules.typed_count_error(2, "3") == "type 2 to run on 2 nodes"
    assert rules.typed_count_error(1, "") == ""
    assert ConfirmationRules(True, 0, True).typed_count_error(1, "") == "type 1 to run on 1 node"
    assert rules.reason_error("  ") == REASON_FOR_CHANGE
    assert rules.reason_error("INC-1") == ""
    assert ConfirmationRules(False, 25, False).reason_error("") == ""


# -- the web form ----------------------------------------------------------------------------------


def test_the_form_marks_actions_that_change_nodes(acme_operator: User) -> None:
    page = _client(acme_operator).get("/jobs/new/").content.decode()
    assert re.search(r'<option value="service.restart"\s+data-changes-node>', page)
    assert re.search(r'<option value="service.status"\s*>', page)
    restart = page[page.index('data-action="service.restart"') :]
    restart = restart[: restart.index("</fieldset>")]
    assert "Changes the nodes." in restart
    status = page[page.index('data-action="service.status"') :]
    assert "Changes the nodes." not in status[: status.index("</fieldset>")]


def test_a_restart_asks_for_the_count_and_a_reason(
    acme_operator: User, fleet: list[str], queued_tasks
) -> None:
    client = _client(acme_operator)
    page = client.post("/jobs/new/", {**RESTART, "filter": ""})
    assert page.status_code == 200
    html = page.content.decode()
    assert "This action changes the nodes." in html
    assert 'name="typed_count"' in html  # 4 nodes > 1, though the default threshold is 25
    assert '<input id="reason" name="reason"' in html and "required autofocus" in html
    # Enter "clicks" the first submit button: for this action it is disabled, so nothing runs.
    assert html.index('class="implicit-submit-guard" disabled') < html.index(
        '<button type="submit">Run on 4 nodes</button>'
    )

    confirmed = {**RESTART, "filter": "", "confirmed": "1", "planned_count": str(ACME)}
    no_reason = client.post("/jobs/new/", {**confirmed, "typed_count": str(ACME)})
    assert no_reason.status_code == 400
    assert REASON_FOR_CHANGE in no_reason.content.decode()
    no_count = client.post("/jobs/new/", {**confirmed, "reason": "INC-7"})
    assert no_count.status_code == 400
    assert "type 4 to run on 4 nodes" in no_count.content.decode()
    assert not Job.objects.exists()
    queued_tasks.assert_not_called()

    done = client.post("/jobs/new/", {**confirmed, "typed_count": "4", "reason": "INC-7"})
    assert done.status_code == 302
    job = Job.objects.get()
    assert (job.agent, job.action, job.reason) == ("service", "restart", "INC-7")


def test_on_one_node_a_restart_needs_a_reason_but_no_typed_count(
    acme_operator: User, fleet: list[str], queued_tasks
) -> None:
    client = _client(acme_operator)
    one = {**RESTART, "filter": "identity:acme-a-web", "confirmed": "1", "planned_count": "1"}
    page = client.post("/jobs/new/", one)
    assert page.status_code == 400
    html = page.content.decode()
    assert REASON_FOR_CHANGE in html and 'name="typed_count"' not in html
    assert client.post("/jobs/new/", {**one, "reason": "INC-8"}).status_code == 302


def test_a_read_only_action_keeps_the_plain_confirmation(
    acme_operator: User, fleet: list[str], queued_tasks
) -> None:
    status = {"agent_action": "service.status", "input:service.status:service": "nginx"}
    page = _client(acme_operator).post("/jobs/new/", {**status, "filter": ""}).content.decode()
    assert "changes the nodes" not in page and "implicit-submit-guard" not in page
    assert 'name="typed_count"' not in page
    confirmed = _client(acme_operator).post(
        "/jobs/new/", {**status, "confirmed": "1", "planned_count": str(ACME)}
    )
    assert confirmed.status_code == 302


def test_a_role_threshold_makes_a_restart_stricter_still(
    acme_operator: User, fleet: list[str], queued_tasks
) -> None:
    _settings("acme-noc", confirm_above=0)
    page = _client(acme_operator).post("/jobs/new/", {**RESTART, "filter": "identity:acme-a-web"})
    assert 'name="typed_count"' in page.content.decode()  # even on one node


# -- the API and the CLI ---------------------------------------------------------------------------


def test_the_api_refuses_a_restart_without_a_reason(
    acme_operator: User, fleet: list[str], queued_tasks
) -> None:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {issue_token(acme_operator.username)}")
    body = {"agent": "service", "action": "restart", "inputs": {"service": "nginx"}}
    response = api.post("/api/jobs/", body, format="json")
    assert response.status_code == 400
    assert response.json() == {"errors": {"reason": REASON_FOR_CHANGE}}
    assert not Job.objects.exists()
    assert api.post("/api/jobs/", {**body, "reason": "INC-9"}, format="json").status_code == 201


def test_the_cli_refuses_a_restart_without_a_reason(acme_operator: User, fleet: list[str]) -> None:
    with pytest.raises(CommandError, match="this action changes the nodes"):
        call_command("rpc", "service", "restart", "service=nginx", "--user", "acmeop")
    assert not Job.objects.exists()
