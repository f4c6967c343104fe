import pytest

from agents.ddl import (
    DDLError,
    InputValidationError,
    UnknownAction,
    UnknownAgent,
    load_all,
    load_ddl,
    parse_ddl,
)
from agents.dispatch import dispatch
from agents.plugins import REGISTRY, ActionContext, load_agents
from agents.protocol import Request, Status


def test_load_all_ships_every_standard_agent():
    ddls = load_all()
    assert sorted(ddls) == [
        "echo", "filemgr", "nrpe", "package", "process", "puppet", "rpcutil", "service",
    ]  # fmt: skip
    rpcutil = ddls["rpcutil"]
    assert rpcutil.timeout == 5
    assert rpcutil.action("ping").display == "always"
    assert rpcutil.action("ping").output["pong"].display_as == "Timestamp"
    assert rpcutil.action("get_fact").aggregate[0].function == "summary"
    assert set(REGISTRY) == set(ddls)


# Every shipped action that changes a node, decided by reading each agent. nrpe runcommand is
# not here: it runs only the checks the node's own configuration lists, and checks observe.
CHANGES_NODE = {
    "echo": set(),
    "filemgr": {"touch", "remove"},
    "nrpe": set(),
    "package": {"install", "update", "uninstall"},
    "process": set(),
    "puppet": {"runonce", "enable", "disable"},
    "rpcutil": set(),
    "service": {"start", "stop", "restart"},
}


def test_shipped_ddls_mark_every_action_that_changes_a_node():
    marked = {
        name: {action for action, spec in ddl.actions.items() if spec.changes_node}
        for name, ddl in load_all().items()
    }
    assert marked == CHANGES_NODE


def _ddl_with(**action_fields):
    meta = {
        "name": "x", "description": "d", "author": "a", "version": "1", "license": "l",
        "timeout": 5,
    }  # fmt: skip
    return {"metadata": meta, "actions": {"go": {"description": "go", **action_fields}}}


def test_changes_node_defaults_to_false_and_reads_true():
    assert parse_ddl(_ddl_with()).action("go").changes_node is False
    assert parse_ddl(_ddl_with(changes_node=True)).action("go").changes_node is True
    assert parse_ddl(_ddl_with(changes_node=False)).action("go").changes_node is False


@pytest.mark.parametrize("value", ["true", "false", 1, 0, None, [], {}])
def test_changes_node_must_be_a_json_boolean(value):
    with pytest.raises(DDLError, match="ddl: action go: 'changes_node' must be true or false"):
        parse_ddl(_ddl_with(changes_node=value))


def test_unknown_agent_and_action():
    with pytest.raises(UnknownAgent):
        load_ddl("nope")
    with pytest.raises(UnknownAgent):
        load_ddl("../etc")
    with pytest.raises(UnknownAction, match="known: agent_inventory"):
        load_ddl("rpcutil").action("nope")


def test_validate_inputs_coerces_and_applies_defaults():
    echo = load_ddl("echo").action("echo")
    assert echo.validate_inputs({"message": "hi", "times": "3", "shout": "yes"}) == {
        "message": "hi",
        "times": 3,
        "shout": True,
        "separator": " ",
    }


@pytest.mark.parametrize(
    ("data", "errors", "status"),
    [
        ({}, {"message": "is required"}, Status.MISSING_DATA),
        (
            {"message": "a; rm -rf /"},
            {"message": "must not contain shell metacharacters"},
            Status.INVALID_DATA,
        ),
        (
            {"message": "x" * 201},
            {"message": "must be at most 200 characters"},
            Status.INVALID_DATA,
        ),
        (
            {"message": "x", "times": "many"},
            {"times": "must be a whole number"},
            Status.INVALID_DATA,
        ),
        ({"message": "x", "times": True}, {"times": "must be a whole number"}, Status.INVALID_DATA),
        (
            {"message": "x", "shout": "perhaps"},
            {"shout": "must be true or false"},
            Status.INVALID_DATA,
        ),
        ({"message": "x", "separator": "+"}, {"separator": "must be one of"}, Status.INVALID_DATA),
        (
            {"message": "x", "extra": 1},
            {"extra": "unknown input for action echo"},
            Status.INVALID_DATA,
        ),
        ({"extra": 1}, {"extra": "unknown input", "message": "is required"}, Status.INVALID_DATA),
    ],
)
def test_validate_inputs_errors(data, errors, status):
    with pytest.raises(InputValidationError) as err:
        load_ddl("echo").action("echo").validate_inputs(data)
    assert set(err.value.errors) == set(errors)
    for field, message in errors.items():
        assert message in err.value.errors[field]
    assert err.value.status == status


def test_regex_validation_on_get_fact():
    action = load_ddl("rpcutil").action("get_fact")
    assert action.validate_inputs({"fact": "os.family"}) == {"fact": "os.family"}
    with pytest.raises(InputValidationError):
        action.validate_inputs({"fact": "bad fact"})


AGENTS = load_agents()


def context(request):
    return ActionContext(
        identity="web1",
        facts={"os": {"family": "debian"}, "customer": "acme"},
        classes=["base", "apache"],
        agents=sorted(AGENTS),
        collectives=["mcollective"],
        main_collective="mcollective",
        version="0.1.0",
        started_at=100.0,
        stats={"total": 3},
        request=request,
    )


def run(agent, action, data=None):
    request = Request.new(
        collective="mcollective", agent=agent, action=action, callerid="user=t", data=data or {}
    )
    return request, dispatch(request, AGENTS, "web1", context)


def test_rpcutil_ping():
    request, reply = run("rpcutil", "ping")
    assert reply.statuscode == Status.OK
    assert reply.data == {"pong": request.msgtime}
    assert reply.requestid == request.requestid and reply.senderid == "web1"


def test_rpcutil_inventory_and_facts():
    _, reply = run("rpcutil", "inventory")
    assert reply.data["agents"] == sorted(AGENTS)
    assert reply.data["classes"] == ["apache", "base"]
    assert reply.data["collectives"] == ["mcollective"]
    assert reply.data["data_plugins"] == []
    _, reply = run("rpcutil", "get_fact", {"fact": "os.family"})
    assert reply.data == {"fact": "os.family", "value": "debian"}
    _, reply = run("rpcutil", "get_fact", {"fact": "missing"})
    assert reply.data == {"fact": "missing", "value": None}
    _, reply = run("rpcutil", "get_facts", {"facts": "customer, os.family"})
    assert reply.data == {"values": {"customer": "acme", "os.family": "debian"}}
    _, reply = run("rpcutil", "daemon_stats")
    assert reply.data["total"] == 3 and reply.data["replies"] == 0
    assert reply.data["starttime"] == 100.0


@pytest.mark.parametrize(
    ("agent", "action", "data", "status", "message"),
    [
        ("rpcutil", "nope", {}, Status.UNKNOWN_ACTION, "agent rpcutil has no action 'nope'"),
        ("ghost", "runonce", {}, Status.UNKNOWN_ACTION, "unknown agent 'ghost' on web1"),
        ("rpcutil", "get_fact", {}, Status.MISSING_DATA, "invalid inputs: fact: is required"),
        ("echo", "echo", {"message": "a|b"}, Status.INVALID_DATA, "shell metacharacters"),
        ("echo", "fail", {"kind": "aborted"}, Status.ABORTED, "failed on request"),
        (
            "echo",
            "fail",
            {"kind": "crash"},
            Status.UNKNOWN_ERROR,
            "RuntimeError: crashed on request",
        ),
        ("echo", "sleep", {"seconds": 99}, Status.ABORTED, "between 0 and 10"),
    ],
)
def test_dispatch_failures(agent, action, data, status, message):
    _, reply = run(agent, action, data)
    assert reply.statuscode == status
    assert message in reply.statusmsg


def test_input_errors_are_returned_per_field():
    _, reply = run("echo", "echo", {"times": "x"})
    assert reply.data == {"errors": {"message": "is required", "times": "must be a whole number"}}
