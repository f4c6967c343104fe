"""Odd job requests answer a 400 with the reason on every door (API, form, CLI), never a 500.

Each case was measured as a 500 with Django's technical page (issue 14, item 6): a filter that
only passes the length limit before the grant's scope is ANDed to it, a non-finite or huge
number in the options, a limit of 5,000 digits, inputs nested 2,000 deep. The property test at
the end throws random JSON at ``POST /api/jobs/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, Group, User
from django.core.exceptions import PermissionDenied
from django.core.management import CommandError, call_command
from django.http import Http404
from django.test import Client
from django.utils import timezone
from django.views import defaults
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from agents.filters.compound import MAX_COMPOUND_LENGTH
from portal.accounts.services import issue_token
from portal.inventory.models import Node
from portal.jobs.models import Job
from portal.jobs.options import ExecutionOptions, OptionsError
from tests.conftest import grant_every_agent

pytestmark = pytest.mark.django_db(transaction=True)

# Valid on its own (4,090 characters); ANDed with the scope ``customer=acme`` it is not.
LONG_FILTER = "customer=" + "a" * 4081
NINES = "9" * 5000


@pytest.fixture
def scoped_operator(db: None) -> User:
    """An operator whose only role may run everything, but only on ``customer=acme``."""
    user = User.objects.create_user("scoped", password="pw-scoped-123")
    user.groups.add(Group.objects.get_or_create(name="operator")[0])
    user.groups.add(grant_every_agent("acme-noc", scope="customer=acme"))
    return user


def _api(user: User) -> APIClient:
    # raise_request_exception=False: a regression shows as the 500 a client would get.
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Token {issue_token(user.username)}")
    return client


def _browser(user: User) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def _post_raw(client: APIClient, body: str) -> Any:
    """POST a JSON text as it is: literals like ``1e999`` never go through Python's encoder."""
    return client.post("/api/jobs/", data=body, content_type="application/json")


def _form_error(response: Any, field: str) -> str:
    """The message the form shows for ``field`` (its error paragraph), or "" if none."""
    html = response.content.decode()
    marker = f'data-field="{field}">'
    start = html.find(marker)
    if start < 0:
        return ""
    start += len(marker)
    return html[start : html.index("</p>", start)]


# -- 1. the filter with the scope over the length limit -----------------------------------------


def test_long_filter_with_scope_is_a_400_on_the_api(scoped_operator, queued_tasks) -> None:
    assert len(LONG_FILTER) == 4090
    response = _api(scoped_operator).post(
        "/api/jobs/", {"agent": "rpcutil", "action": "ping", "filter": LONG_FILTER}, format="json"
    )
    assert response.status_code == 400, response.content
    message = response.json()["errors"]["filter"]
    assert message.startswith("the filter with your scope is ")
    assert message.endswith(f"characters, over {MAX_COMPOUND_LENGTH}; shorten the filter")
    length = int(message.split(" is ")[1].split()[0])
    assert length > MAX_COMPOUND_LENGTH
    assert Job.objects.count() == 0
    queued_tasks.assert_not_called()


def test_long_filter_with_scope_is_a_400_on_the_form(scoped_operator, queued_tasks) -> None:
    response = _browser(scoped_operator).post(
        "/jobs/new/", {"agent_action": "rpcutil.ping", "filter": LONG_FILTER}
    )
    assert response.status_code == 400
    assert "the filter with your scope is " in _form_error(response, "filter")
    assert "shorten the filter" in _form_error(response, "filter")
    assert Job.objects.count() == 0


def test_long_filter_with_scope_is_a_command_error(scoped_operator) -> None:
    with pytest.raises(CommandError, match=r"the filter with your scope is \d+ characters"):
        call_command("rpc", "rpcutil", "ping", "-S", LONG_FILTER, "--user", "scoped")
    assert Job.objects.count() == 0


def test_long_filter_is_fine_for_an_unscoped_operator(operator, queued_tasks) -> None:
    """The limit is the nodes' own: only the scope's addition is refused, not the length."""
    now = timezone.now()
    Node.objects.create(
        identity="long.example",
        facts={"customer": LONG_FILTER.partition("=")[2]},
        first_seen=now,
        last_seen=now,
        registered_at=now,
    )
    response = _api(operator).post(
        "/api/jobs/", {"agent": "rpcutil", "action": "ping", "filter": LONG_FILTER}, format="json"
    )
    assert response.status_code == 201, response.content


# -- 2. and 3. non-finite and huge numbers in the options ---------------------------------------

# (raw JSON value of the option, the option, words the reason must contain)
API_OPTION_CASES = [
    ("1e999", "ttl", "must be a finite number"),
    ("-1e999", "ttl", "must be a finite number"),
    ("1e999", "batch_sleep", "must be a finite number"),
    ("1e999", "batch_size", "must be a finite number"),
    ("1e999", "limit_seed", "must be a finite number"),
    ("1e999", "limit", "must be a finite number"),
    ("1e300", "ttl", "between 1 and 3600"),
    ('"1e999"', "ttl", "must be an integer"),
    ('"nan"', "batch_sleep", "between 0 and 3600"),
    ('"inf"', "batch_sleep", "between 0 and 3600"),
    (f'"{NINES}"', "ttl", "between 1 and 3600"),
    (f'"{NINES}"', "batch_size", "between 0 and 1000000"),
    (f'"{NINES}"', "batch_sleep", "between 0 and 3600"),
    (f'"{NINES}"', "limit_seed", "between 0 and"),
    (f'"{NINES}"', "limit", "at most 1000000 nodes"),
    (f'"{NINES}%"', "limit", "at most 100%"),
    ("2.5", "limit", "a node count like 25"),
    ("[1]", "ttl", "must be an integer"),
    ('{"a": 1}', "limit", "must be a node count like 25"),
    ("[[[]]]", "discovery", "must be one of"),
    ("true", "ttl", "between 1 and 3600"),
]


@pytest.mark.parametrize(("value", "option", "reason"), API_OPTION_CASES)
def test_odd_numbers_in_options_are_a_400_on_the_api(
    operator, queued_tasks, value, option, reason
) -> None:
    body = f'{{"agent": "rpcutil", "action": "ping", "options": {{"{option}": {value}}}}}'
    response = _post_raw(_api(operator), body)
    assert response.status_code == 400, response.content
    assert reason in response.json()["errors"][f"options.{option}"]
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    ("raw", "field", "reason"),
    [
        ({"ttl": float("inf")}, "options.ttl", "between 1 and 3600"),
        ({"ttl": float("nan")}, "options.ttl", "between 1 and 3600"),
        ({"batch_sleep": float("-inf")}, "options.batch_sleep", "between 0 and 3600"),
        ({"batch_size": 10**5000}, "options.batch_size", "between 0 and 1000000"),
        ({"limit": 10**5000}, "options.limit", "a node count like 25"),
        ({"limit": NINES}, "options.limit", "at most 1000000 nodes"),
        ({"limit": "0" * 5000 + "5"}, None, ""),
        ({"\ud800": 1}, "options.'\\ud800'", "unknown option"),
    ],
)
def test_options_parse_answers_options_error_for_any_value(raw, field, reason) -> None:
    """The one parser the three doors share, called directly (no JSON or DRF in front)."""
    if field is None:
        assert ExecutionOptions.parse(raw).limit == "0" * 5000 + "5"
        return
    with pytest.raises(OptionsError) as caught:
        ExecutionOptions.parse(raw)
    assert reason in caught.value.errors[field]


def test_a_number_of_5000_digits_is_a_400_on_the_api(operator, queued_tasks) -> None:
    """Python refuses to read it (int max str digits): said in the answer, without a hint to
    call ``sys.set_int_max_str_digits`` that means nothing to the client."""
    body = f'{{"agent": "rpcutil", "action": "ping", "options": {{"limit": {NINES}}}}}'
    response = _post_raw(_api(operator), body)
    assert response.status_code == 400, response.content
    message = response.json()["errors"]["json"]
    assert "a number of 5000 digits" in message
    assert "sys." not in message
    assert Job.objects.count() == 0


FORM_OPTION_CASES = [
    ("ttl", "1e999", "must be an integer"),
    ("ttl", NINES, "between 1 and 3600"),
    ("batch_sleep", "1e999", "between 0 and 3600"),
    ("batch_sleep", "nan", "between 0 and 3600"),
    ("batch_size", NINES, "between 0 and 1000000"),
    ("limit", NINES, "at most 1000000 nodes"),
    ("limit_seed", NINES, "between 0 and"),
]


@pytest.mark.parametrize(("option", "value", "reason"), FORM_OPTION_CASES)
def test_odd_numbers_in_options_are_a_400_on_the_form(
    operator, queued_tasks, option, value, reason
) -> None:
    post = {"agent_action": "rpcutil.ping", "filter": "", f"option:{option}": value}
    response = _browser(operator).post("/jobs/new/", post)
    assert response.status_code == 400
    assert reason in _form_error(response, f"options.{option}")
    assert Job.objects.count() == 0


@pytest.mark.parametrize(("option", "value", "reason"), FORM_OPTION_CASES)
def test_odd_numbers_in_options_are_a_command_error(operator, option, value, reason) -> None:
    flag = "--" + option.replace("_", "-").replace("batch-size", "batch")
    with pytest.raises(CommandError) as caught:
        call_command("rpc", "rpcutil", "ping", flag, value, "--user", operator.username)
    assert f"options.{option}: " in str(caught.value)
    assert reason in str(caught.value)
    assert Job.objects.count() == 0


# -- 4. deep nesting -----------------------------------------------------------------------------


def _nested(depth: int, leaf: str = '"x"', kind: str = "list") -> str:
    if kind == "list":
        return "[" * depth + leaf + "]" * depth
    return '{"a": ' * depth + leaf + "}" * depth


@pytest.mark.parametrize("kind", ["list", "object"])
def test_inputs_nested_2000_deep_are_a_400_on_the_api(operator, queued_tasks, kind) -> None:
    inputs = f'{{"fact": {_nested(2000, kind=kind)}}}'
    body = f'{{"agent": "rpcutil", "action": "get_fact", "inputs": {inputs}}}'
    response = _post_raw(_api(operator), body)
    assert response.status_code == 400, response.content
    assert "nested too deeply" in response.json()["errors"]["json"]
    assert Job.objects.count() == 0


@pytest.mark.parametrize("where", ["inputs", "options"])
def test_values_nested_past_the_bound_are_a_400_naming_the_field(
    operator, queued_tasks, where
) -> None:
    """Deep enough to matter, not so deep the JSON parser gives up: the field is named."""
    name = "fact" if where == "inputs" else "ttl"
    body = (
        f'{{"agent": "rpcutil", "action": "get_fact", "inputs": {{"fact": "os"}},'
        f' "{where}": {{"{name}": {_nested(100)}}}}}'
    )
    response = _post_raw(_api(operator), body)
    assert response.status_code == 400, response.content
    assert "nested deeper than 32 levels" in response.json()["errors"][f"{where}.{name}"]


@pytest.mark.parametrize(
    ("fields", "key", "reason"),
    [
        ({"inputs": {"fact": "o\x00s"}}, "inputs.fact", "nul character"),
        ({"inputs": {"fact": "\ud800"}}, "inputs.fact", "lone surrogate"),
        ({"inputs": {"\ud800": "os", "fact": "os"}}, "inputs", "lone surrogate"),
        ({"options": {"\udcff": "1"}}, "options", "lone surrogate"),
        # DRF's CharField refuses surrogates itself ("Surrogate characters are not allowed").
        ({"reason": "ticket \udcff"}, "reason", "surrogate"),
        ({"filter": 'customer="\ud800"'}, "filter", "surrogate"),
    ],
)
def test_text_no_store_can_keep_is_a_400(operator, queued_tasks, fields, key, reason) -> None:
    """NUL (PostgreSQL refuses it), lone surrogates (no UTF-8 for them: SQLite and the JSON
    answer refuse them) and infinities (not JSON) are refused with the field named."""
    payload = {"agent": "rpcutil", "action": "get_fact", "inputs": {"fact": "os"}, **fields}
    # ensure_ascii: the surrogates travel as \\u escapes, as a client would send them.
    body = json.dumps(payload, ensure_ascii=True)
    response = _post_raw(_api(operator), body)
    assert response.status_code == 400, response.content
    assert reason in response.json()["errors"][key].lower()
    assert Job.objects.count() == 0


def test_an_infinite_input_is_a_400(operator, queued_tasks) -> None:
    body = '{"agent": "rpcutil", "action": "get_fact", "inputs": {"fact": 1e999}}'
    response = _post_raw(_api(operator), body)
    assert response.status_code == 400, response.content
    assert "finite" in response.json()["errors"]["inputs.fact"]


def test_a_lone_surrogate_from_the_command_line_is_a_command_error(
    fleet: list[str], operator
) -> None:
    """Undecodable bytes in argv arrive as lone surrogates (surrogateescape)."""
    with pytest.raises(CommandError, match=r"reason: .*lone surrogate"):
        call_command("rpc", "rpcutil", "ping", "--reason", "x\udcff", "--user", operator.username)


# -- never a 500, whatever the JSON ---------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**4000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=st.characters(codec=None, categories=None), max_size=30),
    st.sampled_from(["\x00", "\ud800", "\udfff", "a\udcffb", "1e999", NINES[:400], "10%", ""]),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
_names = st.sampled_from(["rpcutil", "service", "ghost", "", "\ud800", "\x00"])
_payloads = st.fixed_dictionaries(
    {},
    optional={
        "agent": _names | _json,
        "action": st.sampled_from(["ping", "get_fact", "status", "x\ud800"]) | _json,
        "inputs": st.dictionaries(st.sampled_from(["fact", "service", "x"]), _json) | _json,
        "filter": st.sampled_from(["", "customer=acme", 'a="\ud800"', "(" * 70]) | _json,
        "options": st.dictionaries(
            st.sampled_from(["ttl", "limit", "batch_size", "batch_sleep", "limit_seed", "z"]),
            _json,
        )
        | _json,
        "reason": _json,
    },
)


def _to_json(value: Any) -> str:
    """JSON text with escapes for every non-ASCII character and the non-finite numbers."""
    return json.dumps(value, ensure_ascii=True, allow_nan=True)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.one_of(
        _payloads.map(_to_json),
        _json.map(_to_json),
        st.integers(1, 3000).map(lambda depth: f'{{"agent": "rpcutil", "inputs": {"[" * depth}'),
        st.integers(1, 3000).map(
            lambda depth: (
                f'{{"agent": "rpcutil", "action": "get_fact", "inputs": {{"fact": '
                f"{_nested(depth)}}}}}"
            )
        ),
        st.sampled_from(["", "{", "nul\x00", '{"agent": NaN}', f"{{{NINES}}}", "\ud800"]),
    )
)
def test_random_json_never_gets_a_500(operator, queued_tasks, body: str) -> None:
    client = _api(operator)
    response = client.post(
        "/api/jobs/",
        data=body.encode("utf-8", "surrogatepass"),
        content_type="application/json",
    )
    assert response.status_code in (201, 400, 403), (response.status_code, body[:200])
    answer = response.json()
    if response.status_code == 400:
        assert answer["errors"], answer


# -- 5. the portal's own error pages, DEBUG off by default ---------------------------------------


def test_debug_is_off_unless_asked_for_in_every_profile(tmp_path) -> None:
    """Read in fresh processes: the settings module, not the test runner's override."""
    script = "from django.conf import settings; print(settings.DEBUG)"
    base = {k: v for k, v in os.environ.items() if k != "DEBUG"}
    base |= {"DJANGO_SETTINGS_MODULE": "portal.settings", "SWITCHBOARD_VAR_DIR": str(tmp_path)}
    for extra, expected in [
        ({}, "False"),
        ({"SWITCHBOARD_PROFILE": "embedded"}, "False"),
        ({"DEBUG": "1"}, "True"),
    ]:
        result = subprocess.run(
            [sys.executable, "-c", f"import django; django.setup(); {script}"],
            env=base | extra,
            capture_output=True,
            text=True,
            check=True,
        )
        assert result.stdout.strip() == expected, (extra, result.stderr)


def test_static_files_are_served_with_debug_off(client) -> None:
    """The embedded profile serves static/ without collectstatic (WhiteNoise's finders)."""
    from django.conf import settings as django_settings

    assert django_settings.DEBUG is False
    for path in ("/static/switchboard/switchboard.css", "/static/switchboard/job_detail.js"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert b"".join(response.streaming_content)


def test_a_missing_page_is_the_portals_404(operator) -> None:
    response = _browser(operator).get("/jobs/987654/")
    assert response.status_code == 404
    html = response.content.decode()
    assert 'id="error-page" data-status="404"' in html
    assert "nothing you may see" in html
    assert "Log out" in html  # the portal's own page, with its navigation
    assert "Traceback" not in html and "SECRET_KEY" not in html


def test_an_error_is_the_portals_500_without_a_traceback(operator, monkeypatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug with a secret in its message")

    monkeypatch.setattr("portal.jobs.api.submit_job", broken)
    response = _api(operator).post(
        "/api/jobs/", {"agent": "rpcutil", "action": "ping"}, format="json"
    )
    assert response.status_code == 500
    html = response.content.decode()
    assert 'id="error-page" data-status="500"' in html
    assert "a secret" not in html and "Traceback" not in html and "RuntimeError" not in html


@pytest.mark.parametrize(
    ("view", "status", "words"),
    [
        ("bad_request", 400, "could not read this request"),
        ("permission_denied", 403, "none of your roles may approve jobs"),
        ("page_not_found", 404, "nothing you may see"),
        ("server_error", 500, "went wrong on the portal"),
    ],
)
def test_each_error_page_renders_with_or_without_a_request(rf, view, status, words) -> None:
    """Django renders 400 and 500 without a request context: no page may need one."""
    request = rf.get("/somewhere/")
    request.user = AnonymousUser()
    handler = getattr(defaults, view)
    if view == "server_error":
        response = handler(request)
    else:
        exception = PermissionDenied("none of your roles may approve jobs")
        response = handler(request, exception if status == 403 else Http404("x"))
    assert response.status_code == status
    assert words in response.content.decode()
    assert f'data-status="{status}"' in response.content.decode()
