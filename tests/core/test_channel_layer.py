"""The STOMP-backed channel layer carries group messages between processes."""

from __future__ import annotations

import asyncio

import pytest

from portal.core.channel_layers import StompChannelLayer
from portal.core.embedded_broker import EmbeddedBroker

# A real STOMP broker on a real socket, in this process.
pytestmark = pytest.mark.integration


async def _receive(layer: StompChannelLayer, channel: str, timeout: float = 5.0) -> dict:
    return await asyncio.wait_for(layer.receive(channel), timeout)


def test_group_send_reaches_a_member_held_by_another_layer() -> None:
    async def scenario(address: str) -> None:
        browser_side = StompChannelLayer(brokers=address)  # the ASGI server's layer
        worker_side = StompChannelLayer(brokers=address)  # the Celery worker's layer
        channel = await browser_side.new_channel()
        await browser_side.group_add("job.1", channel)
        await worker_side.group_send("job.1", {"type": "job.frame", "n": 1})
        assert await _receive(browser_side, channel) == {"type": "job.frame", "n": 1}
        await browser_side.group_discard("job.1", channel)
        await worker_side.group_send("job.1", {"type": "job.frame", "n": 2})
        with pytest.raises(TimeoutError):  # no longer a member: nothing arrives
            await _receive(browser_side, channel, timeout=0.5)
        await browser_side.close()
        await worker_side.close()

    with EmbeddedBroker() as broker:
        asyncio.run(scenario(broker.address))


def test_members_get_messages_again_after_the_broker_restarts() -> None:
    broker = EmbeddedBroker().start()
    port = broker.port

    async def scenario() -> None:
        browser_side = StompChannelLayer(brokers=broker.address)
        channel = await browser_side.new_channel()
        await browser_side.group_add("job.2", channel)
        broker.stop()
        await asyncio.sleep(0.5)
        EmbeddedBroker(port=port).start()
        worker_side = StompChannelLayer(brokers=f"127.0.0.1:{port}")
        for _ in range(50):  # the browser side resubscribes in the background
            await worker_side.group_send("job.2", {"type": "job.frame", "n": 3})
            try:
                assert await _receive(browser_side, channel, timeout=0.2) == {
                    "type": "job.frame",
                    "n": 3,
                }
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("no message after the broker restarted")
        await browser_side.close()
        await worker_side.close()

    asyncio.run(scenario())
