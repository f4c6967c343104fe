"""The embedded broker keeps serving a client after its STOMP heart-beats."""

from __future__ import annotations

import queue
import time
from typing import Any

import pytest
import stomp

from agents.protocol import connect
from portal.core.embedded_broker import EmbeddedBroker, HeartbeatTolerantFrameBuffer


def test_buffer_skips_heartbeats_and_keeps_colons_in_header_values() -> None:
    buffer = HeartbeatTolerantFrameBuffer()
    buffer.append(b"\n\n")
    assert buffer.extract_frame() is None
    buffer.append(b"SEND\ndestination:/queue/a\nx-url:http://h:1/\ncontent-length:2\n\nhi\x00\n")
    buffer.append(b"SEND\ndestination:/topic/b\n\nno length\x00")
    first = buffer.extract_frame()
    second = buffer.extract_frame()
    assert (first.cmd, first.headers["x-url"], first.body) == ("SEND", "http://h:1/", b"hi")
    assert (second.cmd, second.headers["destination"], second.body) == (
        "SEND",
        "/topic/b",
        b"no length",
    )
    assert buffer.extract_frame() is None


def test_partial_frames_wait_for_the_rest() -> None:
    buffer = HeartbeatTolerantFrameBuffer()
    buffer.append(b"SEND\ndestination:/queue/a\ncontent-length:5\n\nhe")
    assert buffer.extract_frame() is None
    buffer.append(b"llo\x00")
    frame = buffer.extract_frame()
    assert frame.body == b"hello"


class _Inbox(stomp.ConnectionListener):
    def __init__(self) -> None:
        self.messages: queue.Queue[str] = queue.Queue()

    def on_message(self, frame: Any) -> None:
        self.messages.put(frame.body)


@pytest.mark.integration
def test_frames_sent_after_heartbeats_are_delivered() -> None:
    with EmbeddedBroker() as broker:
        inbox = _Inbox()
        receiver = connect(
            broker.address, None, None, heartbeats=(500, 500), listeners={"in": inbox}
        )
        sender = connect(broker.address, None, None, heartbeats=(500, 500))
        receiver.subscribe("/queue/hb.test", id="1")
        time.sleep(1.6)  # several heart-beats each way before the message
        sender.send("/queue/hb.test", "after heart-beats")
        assert inbox.messages.get(timeout=5) == "after heart-beats"
        sender.disconnect()
        receiver.disconnect()


class _Frames(stomp.ConnectionListener):
    def __init__(self) -> None:
        self.frames: queue.Queue[Any] = queue.Queue()

    def on_message(self, frame: Any) -> None:
        self.frames.put(frame)

    def drain(self, settle: float = 0.5) -> list[Any]:
        """Every frame received until none came for ``settle`` seconds."""
        got = []
        while True:
            try:
                got.append(self.frames.get(timeout=settle))
            except queue.Empty:
                return got


def _subscribers(broker: EmbeddedBroker, count: int) -> list[tuple[stomp.Connection, _Frames]]:
    out = []
    for i in range(count):
        inbox = _Frames()
        conn = connect(broker.address, None, None, listeners={"inbox": inbox})
        conn.subscribe("/queue/mcollective.registration", id=f"c{i}", ack="auto")
        out.append((conn, inbox))
    time.sleep(0.2)  # the subscriptions are in place before anything is sent
    return out


def test_a_queue_message_goes_to_one_subscriber_and_a_group_stays_with_one() -> None:
    with EmbeddedBroker() as broker:
        consumers = _subscribers(broker, 2)
        sender = connect(broker.address, None, None)
        groups = [f"node{n}" for n in range(20)]
        for round_ in range(5):
            for group in groups:
                sender.send(
                    "/queue/mcollective.registration",
                    f"{group} {round_}",
                    headers={"JMSXGroupID": group, "expires": "4102444800000"},
                )
        received = [inbox.drain() for _, inbox in consumers]
        bodies = [[frame.body for frame in frames] for frames in received]
        # every message exactly once, over both consumers
        assert sorted(bodies[0] + bodies[1]) == sorted(f"{g} {r}" for g in groups for r in range(5))
        # each group whole at one consumer, and both consumers got groups
        owners = [{b.split()[0] for b in mine} for mine in bodies]
        assert owners[0].isdisjoint(owners[1])
        assert owners[0] and owners[1]
        assert received[0][0].headers["JMSXGroupID"] in owners[0]
        sender.disconnect()
        for conn, _ in consumers:
            conn.disconnect()


def test_a_group_moves_when_its_subscriber_leaves() -> None:
    with EmbeddedBroker() as broker:
        (first, first_inbox), (second, second_inbox) = _subscribers(broker, 2)
        sender = connect(broker.address, None, None)
        for n in range(10):
            sender.send("/queue/mcollective.registration", f"g{n}", headers={"JMSXGroupID": "g"})
        took = [len(first_inbox.drain()), len(second_inbox.drain())]
        assert sorted(took) == [0, 10]
        owner, other_inbox = (first, second_inbox) if took[0] else (second, first_inbox)
        owner.disconnect()
        time.sleep(0.2)
        sender.send("/queue/mcollective.registration", "after", headers={"JMSXGroupID": "g"})
        assert [f.body for f in other_inbox.drain()] == ["after"]
        sender.disconnect()
        for conn in (first, second):
            if conn.is_connected():
                conn.disconnect()
