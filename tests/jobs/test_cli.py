"""``manage.py rpc`` refuses bad requests before anything is stored or sent."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from portal.jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ghost", "ping"], "unknown agent 'ghost'"),
        (["rpcutil", "ghost"], "agent 'rpcutil' has no action 'ghost'"),
        (["rpcutil", "get_fact"], "inputs.fact: is required"),
        (["rpcutil", "get_fact", "fact"], "input 'fact' is not key=value"),
        (["rpcutil", "ping", "-F", "customer"], "filter: fact filter:"),
        (["rpcutil", "ping", "-S", "(customer=acme"], "filter:"),
        (["rpcutil", "ping", "-I", "/(a+)+/"], "filter:"),
    ],
)
def test_bad_requests_exit_non_zero_with_the_reason(operator, args, message) -> None:
    with pytest.raises(CommandError) as caught:
        call_command("rpc", *args, "--user", operator.username)
    assert message in str(caught.value)
    assert Job.objects.count() == 0


def test_unknown_operator_is_refused(db) -> None:
    with pytest.raises(CommandError, match="no operator named 'nobody'"):
        call_command("rpc", "rpcutil", "ping", "--user", "nobody")
