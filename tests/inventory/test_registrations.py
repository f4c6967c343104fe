"""The registration consumer against the embedded broker and simulated nodes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from django.conf import settings
from django.db import connection

from agents.protocol import connect, registration_queue
from agents.simulator import Simulator
from portal.broker.gateway import BrokerSettings
from portal.core.embedded_broker import EmbeddedBroker
from portal.inventory.models import Node
from portal.inventory.registrations import READY_LINE, RegistrationConsumer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

TOKEN = "registration-test-token"


@pytest.fixture(autouse=True)
def auto_accept_by_token(settings):
    """These tests are about the consumer's plumbing: the nodes enrol by token at once
    (tests/inventory/test_enrolment.py covers enrolment itself)."""
    settings.SWITCHBOARD_AUTO_ACCEPT = ["token"]
    settings.SWITCHBOARD_ENROLMENT_TOKEN = TOKEN


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    server = EmbeddedBroker(port=0).start()
    yield server
    server.stop()


class RunningConsumer:
    """A consumer on its own thread, as the management command runs it in the foreground."""

    def __init__(self, address: str) -> None:
        self.consumer = RegistrationConsumer(
            BrokerSettings(address, "", "", "mcollective", connect_timeout=2.0),
            flush_interval=0.2,
        )
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.consumer.run()
        finally:
            connection.close()  # this thread's connection, before the test database goes

    def start(self) -> RunningConsumer:
        self.thread.start()
        assert self.consumer.ready.wait(10), "consumer never subscribed"
        return self

    def stop(self) -> None:
        self.consumer.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def consumer(broker: EmbeddedBroker) -> Iterator[RunningConsumer]:
    running = RunningConsumer(broker.address).start()
    yield running
    running.stop()


def inventory() -> dict[str, tuple[dict, list[str], list[str]]]:
    return {n.identity: (n.facts, n.classes, n.agents) for n in Node.objects.all()}


def fleet(sim: Simulator) -> dict[str, tuple[dict, list[str], list[str]]]:
    return {n.identity: (n.facts, list(n.classes), list(n.agents)) for n in sim.nodes}


def test_simulated_fleet_lands_in_the_inventory(broker, consumer):
    with Simulator(20, broker.address, register_interval=0.5, seed=7, enrolment_token=TOKEN) as sim:
        wait_for(lambda: Node.objects.count() == 20)
        wait_for(lambda: inventory() == fleet(sim))
        first = {n.identity: n.last_seen for n in Node.objects.all()}
        # Periodic registrations move last_seen; first_seen stays.
        wait_for(lambda: all(n.last_seen > first[n.identity] for n in Node.objects.all()))
    assert all(n.first_seen < n.last_seen for n in Node.objects.all())
    assert consumer.consumer.stats.malformed == 0


def test_malformed_frames_are_counted_not_fatal(broker, consumer):
    conn = connect(broker.address, None, None)
    try:
        queue = registration_queue("mcollective")
        conn.send(queue, "not json")
        conn.send(queue, '{"protocol": "switchboard:registration:2"}')
        conn.send(queue, '{"protocol": "switchboard:registration:1", "identity": "x"}')
        with Simulator(3, broker.address, register_interval=0, enrolment_token=TOKEN) as sim:
            wait_for(lambda: inventory() == fleet(sim))
    finally:
        conn.disconnect()
    assert consumer.consumer.stats.malformed == 3


def test_reconnects_when_the_broker_comes_back(broker):
    port = broker.port
    running = RunningConsumer(broker.address).start()
    try:
        broker.stop()
        wait_for(lambda: not running.consumer._connected(), timeout=30)
        revived = EmbeddedBroker(port=port).start()
        try:
            wait_for(lambda: running.consumer.stats.connects == 2, timeout=30)
            with Simulator(5, revived.address, register_interval=0, enrolment_token=TOKEN) as sim:
                wait_for(lambda: inventory() == fleet(sim))
        finally:
            running.stop()
            revived.stop()
    finally:
        if running.thread.is_alive():
            running.stop()


def test_stop_flushes_what_is_buffered(broker):
    running = RunningConsumer(broker.address)
    running.consumer.flush_interval = 3600  # only stop() will flush
    running.start()
    with Simulator(4, broker.address, register_interval=0, enrolment_token=TOKEN):
        wait_for(lambda: running.consumer.stats.received == 4)
    assert Node.objects.count() == 0
    running.stop()
    assert Node.objects.count() == 4


def test_management_command_prints_ready_and_stops_on_sigterm(broker):
    env = {
        **os.environ,
        "STOMP_BROKERS": broker.address,
        "DATABASE_URL": _database_url(),
        "SWITCHBOARD_AUTO_ACCEPT": "token",
        "SWITCHBOARD_ENROLMENT_TOKEN": TOKEN,
    }
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "consume_registrations"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # log lines come first, on the same pipe
            seen.append(line)
            if line.strip() == READY_LINE:
                break
        else:
            raise AssertionError("".join(seen))
        with Simulator(2, broker.address, register_interval=0, enrolment_token=TOKEN) as sim:
            wait_for(lambda: inventory() == fleet(sim))
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "registration consumer stopped: 2 received, 0 malformed" in out
    assert "2 auto-accepted; refused: none" in out


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    host = db["HOST"] or "127.0.0.1"
    return f"postgresql://{db['USER']}:{db['PASSWORD']}@{host}:{db['PORT'] or 5432}/{db['NAME']}"
