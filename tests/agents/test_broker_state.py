"""A node's broker link: a refused login or a lost broker is logged with its reason, retried
with back-off, and shown in the node's state (``broker_state()``, rpcutil daemon_stats)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator

import pytest
import stomp

from agents.config import NodeConfig
from agents.daemon import NodeDaemon
from agents.plugins import ActionContext
from agents.plugins.rpcutil.agent import RpcutilAgent
from agents.protocol import BrokerUnavailable
from agents.protocol.security import TrustedKeys
from portal.core.embedded_broker import EmbeddedBroker

LOGIN, PASSCODE = "node", "node-pw"

# A real STOMP broker on a real socket, in this process.
pytestmark = pytest.mark.integration


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def node_for(port: int, passcode: str = PASSCODE) -> NodeDaemon:
    return NodeDaemon(
        NodeConfig(
            identity="link",
            brokers=[("127.0.0.1", port)],
            login=LOGIN,
            passcode=passcode,
            register_interval=0,
            connect_timeout=5.0,  # a loaded 2-core machine: the refusal must come in time
        ),
        trusted_keys=TrustedKeys([]),
    )


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    server = EmbeddedBroker(port=0, login=LOGIN, passcode=PASSCODE).start()
    yield server
    server.stop()


def test_a_refused_login_is_reported_with_the_brokers_reason(broker: EmbeddedBroker) -> None:
    node = node_for(broker.port, passcode="wrong")
    try:
        with pytest.raises(BrokerUnavailable, match="broker refused the connection"):
            node.start()
        state = node.broker_state()
        assert state["connected"] is False
        assert "broker refused the connection" in state["last_error"]
    finally:
        node.stop()


def test_the_link_state_follows_a_lost_and_a_refusing_broker(
    broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agents.daemon")
    port = broker.port
    node = node_for(port)
    node.start(register_periodically=False)
    try:
        up = node.broker_state()
        assert (up["connected"], up["broker"], up["last_error"]) == (True, f"127.0.0.1:{port}", "")

        broker.stop()
        wait_until(lambda: not node.broker_state()["connected"])
        down = node.broker_state()
        assert down["since"] >= up["since"] and down["last_error"]
        wait_until(lambda: "lost the broker connection" in caplog.text)  # logged just after

        # The broker comes back with another password (a rotation the node has not had yet):
        # the node keeps trying, and says why it cannot get in.
        rotated = EmbeddedBroker(port=port, login=LOGIN, passcode="rotated").start()
        try:
            wait_until(lambda: "refused" in node.broker_state()["last_error"])
            assert not node.is_connected()
            wait_until(lambda: "retrying in" in caplog.text)
        finally:
            rotated.stop()

        # The right broker again: the node reconnects by itself, and the state says so.
        restored = EmbeddedBroker(port=port, login=LOGIN, passcode=PASSCODE).start()
        try:
            wait_until(lambda: node.broker_state()["connected"], timeout=40)
            again = node.broker_state()
            assert again["reconnects"] == 1 and again["since"] > down["since"]
            assert again["broker"] == f"127.0.0.1:{port}"
            # The operator sees it through rpcutil daemon_stats.
            stats = RpcutilAgent().daemon_stats(
                ActionContext(
                    identity="link", facts={}, classes=[], agents=[], collectives=[],
                    main_collective="mcollective", version="x", started_at=0.0,
                    broker=node.broker_state(),
                ),
                {},
            )  # fmt: skip
            assert stats["broker"] == f"127.0.0.1:{port}"
            assert stats["broker_since"] == again["since"]
        finally:
            restored.stop()
    finally:
        node.stop()


class _DroppedWhileSubscribing(stomp.Connection):
    """Logs in, then the broker is gone before the first SUBSCRIBE goes out."""

    def subscribe(self, *args: object, **kwargs: object) -> None:
        raise stomp.exception.NotConnectedException()


def test_a_connection_lost_while_subscribing_is_retried_like_a_missing_broker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        "agents.daemon.build_connection",
        lambda brokers, **_: _DroppedWhileSubscribing(brokers),
    )
    monkeypatch.setattr("agents.daemon.start_connection", lambda *args, **kwargs: None)
    node = node_for(61999)
    lost = "lost the connection to 127.0.0.1:61999 while subscribing: NotConnectedException"
    with pytest.raises(BrokerUnavailable, match=re.escape(lost)):
        node.start()
    assert node.broker_state()["connected"] is False
    assert "while subscribing" in node.broker_state()["last_error"]
