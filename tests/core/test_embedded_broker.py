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
