"""Node policy (actionpolicy files) and the audit log, alone and through the daemon."""

import json

import pytest

from agents.audit import AuditLog
from agents.config import ConfigError, NodeConfig, config_from_dict
from agents.daemon import NodeDaemon
from agents.filters import Filter, Node
from agents.policy import NodePolicy, PolicyDecision, PolicySyntaxError, parse_policy
from agents.protocol import HEADER_REPLY_TO, Reply, Request, Status, encode, reply_queue
from agents.protocol.security import SigningKey, TrustedKeys, seal_request

# The headers a frame arrives with: without a reply-to the node refuses a request unrun.
HEADERS = {HEADER_REPLY_TO: reply_queue("mcollective", "test")}
NODE = Node("web1", {"customer": "acme", "env": "prod"}, ["base", "apache"], ["service"])
ACTIONS = ("status", "start", "stop", "restart")
GOOD = (
    "# service policy\n"
    "policy default deny\n"
    "allow\tuser=alice role=operator\tstatus restart\tcustomer=acme and env=prod\tapache\n"
    "deny\tuser=bob\t*\t*\t*\n"
    "allow\t*\tstatus\t*\t/apa/\n"
)


def decide(text, caller, action, roles=(), node=NODE):
    return parse_policy(text, "/etc/sb/service.policy", ACTIONS).decide(caller, action, node, roles)


@pytest.mark.parametrize(
    ("caller", "action", "roles", "allowed", "line"),
    [
        ("user=alice", "restart", (), True, 3),
        ("user=carol", "restart", ("operator",), True, 3),
        ("user=alicea", "restart", (), False, None),  # exact match, never substring
        ("user=bob", "status", (), False, 4),
        ("user=dave", "status", (), True, 5),
        ("user=dave", "stop", (), False, None),
    ],
)
def test_first_match_wins(caller, action, roles, allowed, line):
    decision = decide(GOOD, caller, action, roles)
    assert (decision.allowed, decision.line) == (allowed, line)
    if line:
        verb = "allowed" if allowed else "denied"
        assert decision.reason == f"{verb} by policy /etc/sb/service.policy line {line}"
    else:
        assert decision.reason == "denied by policy /etc/sb/service.policy default"


def test_facts_and_classes_columns_use_the_node():
    other = Node("db1", {"customer": "globex", "env": "prod"}, ["base", "apache"], [])
    assert decide(GOOD, "user=alice", "restart", node=other).allowed is False
    no_apache = Node("web2", {"customer": "acme", "env": "prod"}, ["base"], [])
    assert decide(GOOD, "user=alice", "restart", node=no_apache).allowed is False


def test_missing_default_line_denies():
    assert decide("allow\tuser=a\t*\t*\t*\n", "user=b", "status").allowed is False
    assert decide("policy default allow\n", "user=b", "status").allowed is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("policy default maybe\n", "line 1: expected 'policy default allow'"),
        ("allow\t*\t*\t*\t*\npolicy default deny\n", "line 2: 'policy default' must come once"),
        (
            "\n# c\npermit\t*\t*\t*\t*\n",
            "line 3: a rule starts with 'allow' or 'deny', got 'permit'",
        ),
        ("allow user=a * * *\n", "line 1: expected 5 tab-separated columns"),
        ("allow\talice\t*\t*\t*\n", "line 1: caller 'alice' must be '*' or key=value"),
        ("allow\t*\tstrat\t*\t*\n", "line 1: unknown action 'strat'; known: restart, start"),
        ("allow\t*\t*\tcustomer=>acme\t*\n", "line 1: facts: unknown operator '=>'"),
        ("allow\t*\t*\t*\t/(a+)+/\n", "line 1: classes: regex /(a+)+/"),
    ],
)
def test_parser_errors_name_the_line(text, message):
    with pytest.raises(PolicySyntaxError) as err:
        parse_policy(text, "p", ACTIONS)
    assert message in str(err.value)
    assert str(err.value).startswith("p line ")


def test_node_policy_files_defaults_and_fail_closed(tmp_path, caplog):
    none = NodePolicy(None)
    assert none.decide("service", "stop", "user=x", NODE).allowed is True
    allow_missing = NodePolicy(tmp_path, default_allow=True)
    deny_missing = NodePolicy(tmp_path, default_allow=False)
    assert allow_missing.decide("service", "stop", "user=x", NODE) == PolicyDecision(
        True, f"allowed by policy_default (no {tmp_path / 'service.policy'})"
    )
    assert deny_missing.decide("service", "stop", "user=x", NODE).allowed is False
    path = tmp_path / "service.policy"
    path.write_text("policy default allow\ndeny\tuser=x\tstop\t*\t*\n")
    assert allow_missing.decide("service", "stop", "user=x", NODE, actions=ACTIONS).line == 2
    path.write_text("policy default allow\nallow user=x\n")  # edited, now broken
    decision = allow_missing.decide("service", "status", "user=y", NODE, actions=ACTIONS)
    assert decision.allowed is False
    assert decision.reason.startswith(f"denied: policy file is invalid ({path} line 2:")
    assert "denying every request" in caplog.text


def test_audit_log_writes_one_json_line_and_rotates(tmp_path):
    log = AuditLog(tmp_path / "audit.log", max_bytes=2048, backups=2)
    request = Request.new(
        collective="m", agent="service", action="stop", callerid="user=a", data={"service": "x"}
    )
    reply = Reply.for_request(request, senderid="n1", statuscode=1, statusmsg="denied")
    for _ in range(20):
        log.record("n1", request, reply, PolicyDecision(False, "denied by policy p line 3", "p", 3))
    log.close()
    line = json.loads((tmp_path / "audit.log").read_text().splitlines()[0])
    assert set(line) == {
        "time", "identity", "requestid", "callerid", "senderid", "collective", "agent",
        "action", "inputs", "statuscode", "statusmsg", "policy",
    }  # fmt: skip
    assert line["inputs"] == {"service": "x"} and line["statuscode"] == 1
    assert line["policy"] == {
        "decision": "deny", "reason": "denied by policy p line 3", "source": "p", "line": 3,
    }  # fmt: skip
    assert (tmp_path / "audit.log.1").exists() and not (tmp_path / "audit.log.3").exists()
    assert (tmp_path / "audit.log").stat().st_mode & 0o777 == 0o600


PORTAL_KEY = SigningKey.generate()
TRUSTED = TrustedKeys([PORTAL_KEY.public_key])


def frame(agent, action, data=None, callerid="user=alice", flt=None, roles=None, signed=True):
    request = Request.new(
        collective="mcollective", agent=agent, action=action, callerid=callerid,
        data=data or {}, filter=flt, roles=roles,
    )  # fmt: skip
    return request, seal_request(request, PORTAL_KEY) if signed else encode(request)


def test_roles_count_only_in_signed_requests(tmp_path):
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "rpcutil.policy").write_text(
        "policy default deny\nallow\trole=operator\tping\t*\t*\n"
    )
    config = NodeConfig(
        identity="n1", backend="simulated", policy_dir=str(tmp_path / "policy"),
        require_signatures=False,
    )  # fmt: skip
    daemon = NodeDaemon(config, trusted_keys=TRUSTED)
    try:
        _, signed = frame("rpcutil", "ping", callerid="user=bob", roles=["operator"])
        assert daemon.handle_frame(HEADERS, signed).statuscode == Status.OK
        # The same claim without the portal's signature is worth nothing.
        _, unsigned = frame(
            "rpcutil", "ping", callerid="user=bob", roles=["operator"], signed=False
        )
        assert daemon.handle_frame(HEADERS, unsigned).statuscode == Status.ABORTED
    finally:
        daemon.stop()


def test_daemon_pipeline_filter_policy_validate_call_audit(tmp_path):
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "service.policy").write_text(
        "policy default deny\nallow\tuser=alice\tstatus stop\t*\t*\n"
    )
    config = NodeConfig(
        identity="n1", facts={"customer": "acme"}, backend="simulated",
        policy_dir=str(tmp_path / "policy"), policy_default="deny",
        audit_log=str(tmp_path / "audit.log"),
    )  # fmt: skip
    daemon = NodeDaemon(config, trusted_keys=TRUSTED)
    try:
        # filtered: no reply, no audit line
        _, body = frame("service", "status", {"service": "cron"}, flt=Filter.parse("customer=x"))
        assert daemon.handle_frame(HEADERS, body) is None
        # policy before validation: a denied request with bad inputs is still "denied"
        _, body = frame("service", "start", {"service": "bad name"})
        denied = daemon.handle_frame(HEADERS, body)
        assert denied.statuscode == Status.ABORTED
        assert denied.statusmsg.endswith("service.policy default")
        _, body = frame("service", "stop", {"service": "bad name"})
        assert daemon.handle_frame(HEADERS, body).statuscode == Status.INVALID_DATA
        _, body = frame("service", "stop", {"service": "cron"})
        assert daemon.handle_frame(HEADERS, body).data == {"status": "stopped"}
        # no policy file for rpcutil and policy_default deny
        _, body = frame("rpcutil", "ping")
        assert daemon.handle_frame(HEADERS, body).statuscode == Status.ABORTED
        stats = daemon.stats()
        assert (stats["filtered"], stats["denied"], stats["validated"]) == (1, 2, 5)
    finally:
        daemon.stop()
    lines = [json.loads(x) for x in (tmp_path / "audit.log").read_text().splitlines()]
    assert [(x["action"], x["statuscode"], x["policy"]["decision"]) for x in lines] == [
        ("start", 1, "deny"), ("stop", 4, "allow"), ("stop", 0, "allow"), ("ping", 1, "deny"),
    ]  # fmt: skip
    assert lines[2]["policy"]["line"] == 2 and lines[2]["callerid"] == "user=alice"


def test_config_keys_are_validated(tmp_path):
    config = config_from_dict(
        {"policy_dir": "policy", "audit_log": "a.log", "nrpe_commands": {"c": ["/bin/true"]}},
        tmp_path,
    )
    assert config.policy_dir == str(tmp_path / "policy")
    assert config.audit_log == str(tmp_path / "a.log")
    for raw, message in (
        ({"backend": "fake"}, "backend must be one of auto, simulated"),
        ({"policy_default": "maybe"}, "policy_default must be allow or deny"),
        ({"nrpe_commands": {"c": ["true"]}}, "'true' must be an absolute path"),
        ({"nrpe_commands": {"c": []}}, "must be a non-empty list"),
        ({"nrpe_commands": {"a b": ["/bin/true"]}}, "bad check name"),
        ({"audit_backups": 0}, "audit_backups >= 1"),
    ):
        with pytest.raises(ConfigError, match=message):
            config_from_dict(raw, tmp_path)
