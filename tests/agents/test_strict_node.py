"""The node as the last line of defence: every refusal in ``NodeDaemon.handle_frame``.

Each refused frame must move exactly its counter, be logged once with its reason, and change
nothing: no action runs (recording agents prove it), no reply is sent (a fake connection
records every send), no audit line is written. Over real brokers:
tests/integration/test_node_refusals.py.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agents.config import ConfigError, NodeConfig, config_from_dict
from agents.daemon import COUNTERS, HEADER_DESTINATION, NodeDaemon
from agents.plugins.base import ActionContext, AgentSettings, Handler, shipped_ddl
from agents.plugins.echo.agent import EchoAgent
from agents.plugins.rpcutil.agent import RpcutilAgent
from agents.protocol import (
    HEADER_REPLY_TO,
    Request,
    Status,
    broadcast_topic,
    directed_queue,
    encode,
    reply_queue,
)
from agents.protocol.security import (
    SECURE_REQUEST_PROTOCOL,
    SigningKey,
    TrustedKeys,
    open_reply,
    seal_request,
)

PORTAL_KEY = SigningKey.generate()
REPLY_TO = reply_queue("mcollective", "strict")
MAX_TTL = 600
MAX_AGE = 900.0
# What the node counts for each frame; refusals must move their own counter and these only.
QUIET_COUNTERS = ("passed", "replies", "duplicates", "filtered", "errors", "denied")


class Recording:
    """Mixin for a real agent that records each action it runs, so a test can prove none ran."""

    ran: list[str]

    def actions(self) -> dict[str, Handler]:
        handlers: dict[str, Handler] = super().actions()  # type: ignore[misc]
        return {name: self._recorded(name, handler) for name, handler in handlers.items()}

    def _recorded(self, name: str, handler: Handler) -> Handler:
        def run(ctx: ActionContext, inputs: dict[str, Any]) -> dict[str, Any]:
            self.ran.append(name)
            return handler(ctx, inputs)

        return run


class RecordingEcho(Recording, EchoAgent):
    def __init__(self) -> None:
        super().__init__(AgentSettings(backend="simulated"))
        self.ran = []


class RecordingRpcutil(Recording, RpcutilAgent):
    def __init__(self) -> None:
        super().__init__(AgentSettings(backend="simulated"))
        self.ran = []


class FakeConnection:
    """Stands in for the node's STOMP connection: records every frame the node sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.transport = SimpleNamespace(running=True)

    def send(self, destination: str, body: str, **_: Any) -> None:
        self.sent.append((destination, body))

    def is_connected(self) -> bool:
        return True

    def disconnect(self) -> None:
        pass


@dataclass
class StrictNode:
    daemon: NodeDaemon
    conn: FakeConnection
    echo: RecordingEcho
    rpcutil: RecordingRpcutil
    audit_log: Path

    def ran(self) -> list[str]:
        return self.echo.ran + self.rpcutil.ran

    def moved(self, before: dict[str, int]) -> dict[str, int]:
        """The counters that changed since ``before``, by how much."""
        after = self.daemon.stats()
        return {name: after[name] - before[name] for name in after if after[name] != before[name]}


@pytest.fixture
def node(tmp_path: Path) -> Iterator[StrictNode]:
    echo, rpcutil = RecordingEcho(), RecordingRpcutil()
    config = NodeConfig(
        identity="strict-1.example.net",
        backend="simulated",
        collectives=["mcollective", "dc_a"],
        audit_log=str(tmp_path / "audit.log"),
        max_ttl=MAX_TTL,
        max_age=MAX_AGE,
    )
    daemon = NodeDaemon(
        config,
        agents={"echo": echo, "rpcutil": rpcutil},
        trusted_keys=TrustedKeys([PORTAL_KEY.public_key]),
        signing_key=SigningKey.generate(),
    )
    conn = FakeConnection()
    # The daemon sends its replies on its connection; a recording one shows every send.
    daemon._conn = conn  # type: ignore[assignment]
    yield StrictNode(daemon, conn, echo, rpcutil, tmp_path / "audit.log")
    daemon.stop()


def make_request(agent: str = "echo", collective: str = "mcollective", **fields: Any) -> Request:
    action = {"echo": "echo", "rpcutil": "ping"}[agent]
    data = {"message": "hello"} if agent == "echo" else {}
    request = Request.new(
        collective=collective, agent=agent, action=action, callerid="user=test", data=data
    )
    return replace(request, **fields)


def frame_headers(
    request: Request, *, destination: str | None = "", reply_to: str | None = REPLY_TO
) -> dict[str, str]:
    """A MESSAGE frame's headers: by default on the request's own topic, with a reply-to."""
    headers: dict[str, str] = {}
    if destination == "":
        destination = broadcast_topic(request.collective, request.agent)
    if destination is not None:
        headers[HEADER_DESTINATION] = destination
    if reply_to is not None:
        headers[HEADER_REPLY_TO] = reply_to
    return headers


def seal_text(text: str) -> str:
    """A request sealed around any inner text, to get it past the signature check."""
    signature = base64.b64encode(PORTAL_KEY.sign(text.encode())).decode()
    wrapper = {
        "protocol": SECURE_REQUEST_PROTOCOL,
        "signer": PORTAL_KEY.key_id,
        "message": text,
        "signature": signature,
    }
    return json.dumps(wrapper)


def assert_refused(
    node: StrictNode,
    caplog: pytest.LogCaptureFixture,
    headers: dict[str, str],
    body: str | bytes,
    counters: dict[str, int],
    reason: str,
    level: int = logging.WARNING,
) -> None:
    """``body`` is refused: exactly ``counters`` move (besides total), one log line at
    ``level`` gives ``reason``, and nothing runs, replies or is audited."""
    before = node.daemon.stats()
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="agents.daemon"):
        assert node.daemon.handle_frame(headers, body) is None
    assert node.moved(before) == {"total": 1, **counters}
    logged = [r for r in caplog.records if r.name == "agents.daemon" and r.levelno >= logging.INFO]
    assert [(r.levelno, reason in r.getMessage()) for r in logged] == [(level, True)], [
        r.getMessage() for r in logged
    ]
    assert node.ran() == []
    assert node.conn.sent == []
    assert node.audit_log.read_text() == ""


# -- the request that passes, for contrast ---------------------------------------------------


@pytest.mark.parametrize(
    "destination",
    [
        "",  # the request's own topic
        directed_queue("mcollective"),
        "topic://mcollective.echo.agent",  # ActiveMQ's JMS spelling of the same topic
        None,  # an in-process call: no STOMP frame, so no destination header
    ],
)
def test_a_request_where_it_belongs_runs_and_is_answered(
    node: StrictNode, destination: str | None
) -> None:
    request = make_request()
    before = node.daemon.stats()
    reply = node.daemon.handle_frame(
        frame_headers(request, destination=destination), seal_request(request, PORTAL_KEY)
    )
    assert reply is not None and reply.statuscode == Status.OK
    assert node.ran() == ["echo"]
    assert [dest for dest, _ in node.conn.sent] == [REPLY_TO]
    assert open_reply(node.conn.sent[0][1])[0] == reply
    assert node.moved(before) == {"total": 1, "validated": 1, "passed": 1, "replies": 1}
    assert len(node.audit_log.read_text().splitlines()) == 1


# -- 1. the destination must match the request -----------------------------------------------


@pytest.mark.parametrize(
    ("agent", "collective", "destination"),
    [
        ("rpcutil", "mcollective", broadcast_topic("mcollective", "echo")),
        ("echo", "dc_a", broadcast_topic("mcollective", "echo")),
        ("echo", "mcollective", broadcast_topic("dc_a", "echo")),
        ("echo", "dc_a", directed_queue("mcollective")),
        ("echo", "mcollective", REPLY_TO),
        ("echo", "mcollective", "topic://mcollective.rpcutil.agent"),
        ("echo", "mcollective", "/topic/mcollective.echo.agent "),  # not the same name
        ("echo", "mcollective", "/queue/mcollective.echo.agent"),  # a queue is not the topic
        ("echo", "mcollective", ""),  # present and empty is not absent
    ],
)
def test_a_request_on_another_destination_is_refused(
    node: StrictNode,
    caplog: pytest.LogCaptureFixture,
    agent: str,
    collective: str,
    destination: str,
) -> None:
    request = make_request(agent, collective)
    headers = {HEADER_DESTINATION: destination, HEADER_REPLY_TO: REPLY_TO}
    assert_refused(
        node,
        caplog,
        headers,
        seal_request(request, PORTAL_KEY),
        {"unvalidated": 1, "wrong_destination": 1},
        f"arrived on {destination!r}",
    )


def test_a_refused_destination_does_not_use_up_the_request_id(node: StrictNode) -> None:
    request = make_request()
    body = seal_request(request, PORTAL_KEY)
    wrong = frame_headers(request, destination=broadcast_topic("mcollective", "rpcutil"))
    assert node.daemon.handle_frame(wrong, body) is None
    assert node.daemon.handle_frame(frame_headers(request), body) is not None
    assert node.ran() == ["echo"]


# -- 2. maximum ttl and maximum age ----------------------------------------------------------


@pytest.mark.parametrize("ttl", [MAX_TTL + 1, 10**9, 10**400])
def test_a_ttl_over_max_ttl_is_refused(
    node: StrictNode, caplog: pytest.LogCaptureFixture, ttl: int
) -> None:
    request = make_request(ttl=ttl)
    assert_refused(
        node,
        caplog,
        frame_headers(request),
        seal_request(request, PORTAL_KEY),
        {"validated": 1, "ttl_too_long": 1},
        f"is over max_ttl {MAX_TTL} s",
    )


def test_a_ttl_of_max_ttl_is_accepted(node: StrictNode) -> None:
    request = make_request(ttl=MAX_TTL)
    assert node.daemon.handle_frame(frame_headers(request), seal_request(request, PORTAL_KEY))
    assert node.ran() == ["echo"]


@pytest.mark.parametrize(
    "age",
    # Past its ttl as well: too_old, not ttl_expired, names the graver reason (a replay).
    [MAX_AGE + 5, 10 * 365 * 86400.0],
)
def test_a_msgtime_older_than_max_age_is_refused(
    node: StrictNode, caplog: pytest.LogCaptureFixture, age: float
) -> None:
    request = make_request(msgtime=time.time() - age)
    assert_refused(
        node,
        caplog,
        frame_headers(request),
        seal_request(request, PORTAL_KEY),
        {"validated": 1, "too_old": 1},
        f"is more than max_age {MAX_AGE} s ago",
    )


def test_max_age_refuses_an_old_request_whose_ttl_still_runs() -> None:
    """max_age holds whatever the ttl says: a 10 min old request with a 30 min ttl is too old
    for a node that accepts 5 min."""
    config = NodeConfig(identity="n1", backend="simulated", max_age=300, max_ttl=3600)
    daemon = NodeDaemon(config, agents={}, trusted_keys=TrustedKeys([PORTAL_KEY.public_key]))
    try:
        request = make_request(ttl=1800, msgtime=time.time() - 600)
        assert (
            daemon.handle_frame(frame_headers(request), seal_request(request, PORTAL_KEY)) is None
        )
        assert daemon.stats()["too_old"] == 1 and daemon.stats()["ttl_expired"] == 0
    finally:
        daemon.stop()


@pytest.mark.parametrize(
    ("fields", "counter"),
    [
        # JSON integers of any size decode; none may overflow a float sum and vanish.
        ({"ttl": 10**400, "msgtime": 10**400}, "ttl_too_long"),
        ({"msgtime": 10**400}, "ttl_expired"),  # stamped in the future
        ({"msgtime": -(10**400)}, "too_old"),
        ({"msgtime": -1.7e308}, "too_old"),
        ({"msgtime": 1.7e308}, "ttl_expired"),
    ],
)
def test_absurd_numbers_are_counted_never_lost(
    node: StrictNode, fields: dict[str, Any], counter: str
) -> None:
    request = make_request(**fields)
    before = node.daemon.stats()
    assert (
        node.daemon.handle_frame(frame_headers(request), seal_request(request, PORTAL_KEY)) is None
    )
    assert node.moved(before) == {"total": 1, "validated": 1, counter: 1}
    assert node.ran() == [] and node.conn.sent == []


def test_a_request_past_its_ttl_is_still_ttl_expired_at_info(
    node: StrictNode, caplog: pytest.LogCaptureFixture
) -> None:
    request = make_request(ttl=60, msgtime=time.time() - 120)
    assert_refused(
        node,
        caplog,
        frame_headers(request),
        seal_request(request, PORTAL_KEY),
        {"validated": 1, "ttl_expired": 1},
        "outside its ttl",
        level=logging.INFO,
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"max_ttl": 0}, "max_ttl must be a positive number of seconds"),
        ({"max_ttl": -60}, "max_ttl must be a positive number of seconds"),
        ({"max_age": 0.0}, "max_age must be a positive number of seconds"),
        ({"max_age": math.nan}, "max_age must be a positive number of seconds"),
        ({"max_age": math.inf}, "max_age must be a positive number of seconds"),
        ({"max_ttl": True}, "max_ttl must be a number of seconds, not True"),
        ({"max_ttl": "3600"}, "max_ttl must be a number of seconds, not '3600'"),
    ],
)
def test_max_ttl_and_max_age_are_validated(
    tmp_path: Path, raw: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"identity": "n1", **raw}, tmp_path)


def test_max_ttl_and_max_age_defaults() -> None:
    config = NodeConfig(identity="n1")
    assert (config.max_ttl, config.max_age) == (3600, 3600.0)


# -- 3. no reply destination -----------------------------------------------------------------


@pytest.mark.parametrize("reply_to", [None, ""])
def test_a_request_without_reply_to_is_refused_before_it_runs(
    node: StrictNode, caplog: pytest.LogCaptureFixture, reply_to: str | None
) -> None:
    request = make_request()
    assert_refused(
        node,
        caplog,
        frame_headers(request, reply_to=reply_to),
        seal_request(request, PORTAL_KEY),
        {"validated": 1, "no_reply_to": 1},
        "no reply-to header",
    )
    # Refused unrun, so its id is not used up: sent again properly, it runs.
    body = seal_request(request, PORTAL_KEY)
    assert node.daemon.handle_frame(frame_headers(request), body) is not None


@pytest.mark.parametrize("reply_to", [None, REPLY_TO])
def test_a_fire_and_forget_request_runs_and_is_not_answered(
    node: StrictNode, reply_to: str | None
) -> None:
    request = make_request(reply_wanted=False)
    before = node.daemon.stats()
    reply = node.daemon.handle_frame(
        frame_headers(request, reply_to=reply_to), seal_request(request, PORTAL_KEY)
    )
    assert reply is not None and reply.statuscode == Status.OK
    assert node.ran() == ["echo"]
    assert node.conn.sent == []
    assert node.moved(before) == {"total": 1, "validated": 1, "passed": 1}
    assert len(node.audit_log.read_text().splitlines()) == 1


def test_reply_wanted_is_carried_and_absent_means_true() -> None:
    request = make_request()
    wire = json.loads(encode(request))
    assert wire["reply_wanted"] is True
    del wire["reply_wanted"]
    headers = frame_headers(request, reply_to=None)
    daemon = NodeDaemon(
        NodeConfig(identity="n1", backend="simulated"),
        agents={"echo": RecordingEcho()},
        trusted_keys=TrustedKeys([PORTAL_KEY.public_key]),
    )
    try:
        assert daemon.handle_frame(headers, seal_text(json.dumps(wire))) is None
        assert daemon.stats()["no_reply_to"] == 1
    finally:
        daemon.stop()


# -- 4. valid Unicode ------------------------------------------------------------------------

LONE = "\ud800"
SURROGATE_FIELDS: dict[str, Callable[[], Request]] = {
    "data value": lambda: make_request(data={"message": LONE}),
    "data key": lambda: make_request(data={"message": "hi", LONE: 1}),
    "filter": lambda: make_request(filter={"identity": [LONE]}),
    "filter fact": lambda: make_request(
        filter={"fact": [{"fact": "os", "operator": "==", "value": LONE}]}
    ),
    "callerid": lambda: make_request(callerid=f"user={LONE}"),
    "roles": lambda: make_request(roles=["operator", LONE]),
    "requestid": lambda: make_request(requestid=f"id{LONE}"),
    "senderid": lambda: make_request(senderid=LONE),
    "action": lambda: make_request(action=LONE),
}


def assert_never_logged_or_audited(node: StrictNode, caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        record.getMessage().encode("utf-8")  # raises on a lone surrogate
    assert node.audit_log.read_text() == ""


@pytest.mark.parametrize("field", sorted(SURROGATE_FIELDS))
def test_a_lone_surrogate_anywhere_is_invalid(
    node: StrictNode, caplog: pytest.LogCaptureFixture, field: str
) -> None:
    request = SURROGATE_FIELDS[field]()
    assert_refused(
        node,
        caplog,
        frame_headers(request),
        seal_request(request, PORTAL_KEY),
        {"unvalidated": 1, "invalid": 1},
        "not valid Unicode",
    )
    assert_never_logged_or_audited(node, caplog)


def _wrapper(**fields: str) -> str:
    """A sealed request with some of its wrapper's fields replaced."""
    return json.dumps(json.loads(seal_request(make_request(), PORTAL_KEY)) | fields)


@pytest.mark.parametrize(
    "body",
    [
        # In the sealed wrapper itself: JSON escapes that decode to a lone surrogate (the
        # signed bytes are the message's UTF-8, which such a string does not have).
        pytest.param(
            lambda: _wrapper(message=encode(make_request()) + LONE), id="in the wrapper's message"
        ),
        pytest.param(lambda: _wrapper(signer=LONE), id="in the signer"),
        pytest.param(lambda: _wrapper(signature=LONE), id="in the signature"),
        pytest.param(lambda: _wrapper(**{LONE: "x"}), id="in a key of the wrapper"),
        # Raw bytes: a surrogate encoded the CESU-8 way, which JSON decoding lets through.
        pytest.param(
            lambda: (
                seal_request(make_request(data={"message": "xx"}), PORTAL_KEY)
                .encode()
                .replace(b"xx", b"\xed\xa0\x80")
            ),
            id="as bytes",
        ),
    ],
)
def test_a_lone_surrogate_around_the_request_runs_nothing(
    node: StrictNode, caplog: pytest.LogCaptureFixture, body: Callable[[], str | bytes]
) -> None:
    headers = frame_headers(make_request())
    invalid = {"unvalidated": 1, "invalid": 1}
    assert_refused(node, caplog, headers, body(), invalid, "not valid Unicode")
    assert_never_logged_or_audited(node, caplog)


# -- 5. counters, reporting, the safety net --------------------------------------------------


def test_every_counter_is_declared_by_rpcutil_daemon_stats() -> None:
    declared = shipped_ddl("rpcutil").action("daemon_stats").output
    assert set(COUNTERS) <= set(declared)
    for name in ("wrong_destination", "ttl_too_long", "too_old", "no_reply_to"):
        assert name in COUNTERS


def test_daemon_stats_reports_the_refusals(node: StrictNode) -> None:
    refused = make_request(ttl=MAX_TTL + 1)
    node.daemon.handle_frame(frame_headers(refused), seal_request(refused, PORTAL_KEY))
    request = make_request("rpcutil", action="daemon_stats")
    reply = node.daemon.handle_frame(frame_headers(request), seal_request(request, PORTAL_KEY))
    assert reply is not None and reply.statuscode == Status.OK
    assert reply.data["ttl_too_long"] == 1
    for name in ("wrong_destination", "too_old", "no_reply_to", "signature_refused"):
        assert reply.data[name] == 0


def test_total_is_validated_plus_unvalidated(node: StrictNode) -> None:
    good = make_request()
    frames = [
        (frame_headers(good), seal_request(good, PORTAL_KEY)),
        (frame_headers(good, destination=REPLY_TO), seal_request(make_request(), PORTAL_KEY)),
        (frame_headers(good), seal_request(make_request(ttl=10**400), PORTAL_KEY)),
        (frame_headers(good), seal_request(make_request(msgtime=1.0), PORTAL_KEY)),
        (frame_headers(good, reply_to=None), seal_request(make_request(), PORTAL_KEY)),
        (frame_headers(good), "not json"),
        (frame_headers(good), seal_request(make_request(data={"message": LONE}), PORTAL_KEY)),
    ]
    for headers, body in frames:
        node.daemon.handle_frame(headers, body)
    stats = node.daemon.stats()
    assert stats["total"] == len(frames) == stats["validated"] + stats["unvalidated"]


def test_a_bug_in_the_node_is_counted_and_logged_not_lost(
    node: StrictNode, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(requestid: str, expires_at: float) -> bool:
        raise RuntimeError("a bug")

    monkeypatch.setattr(node.daemon, "_first_sighting", broken)
    request = make_request()
    with caplog.at_level(logging.WARNING, logger="agents.daemon"):
        assert (
            node.daemon.handle_frame(frame_headers(request), seal_request(request, PORTAL_KEY))
            is None
        )
    assert node.daemon.stats()["errors"] == 1
    [record] = [r for r in caplog.records if r.name == "agents.daemon"]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert node.ran() == [] and node.conn.sent == []
