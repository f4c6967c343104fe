"""``manage.py demo``: the whole system on 127.0.0.1 with nothing outside this checkout."""

from __future__ import annotations

import os
import shutil
import signal
import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from agents.protocol import parse_brokers
from agents.protocol.security import SigningKey, public_path
from portal.accounts.services import ensure_demo_users
from portal.core import stack
from portal.core.supervisor import ChildFailed, Supervisor
from portal.jobs.lifecycle import interrupt_unfinished_jobs


def simulated_datacenters() -> dict[str, str]:
    """Where the simulated nodes connect: ``SWITCHBOARD_SIM_DATACENTERS`` or the one broker.

    The variable reads ``a=host:port[,host:port];b=host:port`` so that, on the ActiveMQ
    network, each datacenter's nodes talk only to their own broker. By default both simulated
    datacenters share the portal's broker.
    """
    spec = os.environ.get("SWITCHBOARD_SIM_DATACENTERS", "").strip()
    if not spec:
        return {"a": settings.STOMP_BROKERS, "b": settings.STOMP_BROKERS}
    datacenters = {}
    for part in spec.split(";"):
        name, sep, brokers = part.partition("=")
        if not sep or not name.strip() or not brokers.strip():
            raise CommandError(
                f"SWITCHBOARD_SIM_DATACENTERS: {part!r} is not name=host:port[,host:port]"
            )
        datacenters[name.strip()] = brokers.strip()
    return datacenters


class Command(BaseCommand):
    help = "Run Switchboard's embedded profile: broker, worker, simulated nodes and the portal."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument(
            "--port", type=int, default=int(os.environ.get("SWITCHBOARD_PORT", 8000))
        )
        parser.add_argument(
            "--nodes", type=int, default=int(os.environ.get("SWITCHBOARD_NODES", 60))
        )

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        logins = ensure_demo_users(os.environ.get("SWITCHBOARD_DEMO_PASSWORD") or None)
        interrupted = interrupt_unfinished_jobs("the demo was restarted while the job ran")
        if interrupted:
            self.stdout.write(
                f"marked {interrupted} unfinished job(s) from a previous run interrupted"
            )
        self._clear_celery_queue()
        # The nodes must know the portal's public key before the first request.
        SigningKey.load_or_create(settings.SWITCHBOARD_SIGNING_KEY)
        # The demo's own fleet enrols by token so that it is up in one command; production
        # leaves auto-acceptance off and an admin accepts each new node (/enrolment/). The
        # children (consumer, portal, nodes) inherit these.
        os.environ.setdefault("SWITCHBOARD_AUTO_ACCEPT", "token")
        os.environ.setdefault(
            "SWITCHBOARD_ENROLMENT_TOKEN", stack.demo_enrolment_token(settings.VAR_DIR)
        )

        stomp_host, stomp_port = parse_brokers(settings.STOMP_BROKERS)[0]
        # SIGTERM is turned into the same clean stop as Ctrl-C.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        with Supervisor(settings.VAR_DIR / "logs") as sup:
            try:
                if settings.EMBEDDED_BROKER:
                    stack.start_embedded_broker(sup, stomp_host, stomp_port)
                stack.start_worker(sup)
                # Before the nodes: they register when they start, then every 5 minutes.
                stack.start_registration_consumer(sup)
                stack.start_simulator(
                    sup,
                    simulated_datacenters(),
                    options["nodes"],
                    trusted_key=public_path(settings.SWITCHBOARD_SIGNING_KEY),
                    sub_collectives=True,
                    enrolment_token=os.environ["SWITCHBOARD_ENROLMENT_TOKEN"],
                )
                stack.start_asgi(sup, options["host"], options["port"])
            except ChildFailed as exc:
                raise CommandError(str(exc)) from exc
            self._print_banner(options, logins, sup)
            try:
                while True:
                    sup.check()
                    time.sleep(0.5)
            except KeyboardInterrupt:
                self.stdout.write("\nstopping…")
            except ChildFailed as exc:
                raise CommandError(str(exc)) from exc
        self.stdout.write("stopped; no process left behind.")

    def _clear_celery_queue(self) -> None:
        """Forget tasks queued by a previous demo: their jobs were just marked interrupted."""
        if settings.CELERY_BROKER_URL == "filesystem://":
            shutil.rmtree(settings.CELERY_QUEUE_DIR, ignore_errors=True)
            for key in ("data_folder_in", "control_folder"):
                os.makedirs(settings.CELERY_BROKER_TRANSPORT_OPTIONS[key], exist_ok=True)

    def _print_banner(self, options: dict[str, Any], logins: list[Any], sup: Supervisor) -> None:
        url = f"http://{options['host']}:{options['port']}/"
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"Switchboard is up: {url}"))
        where = "; ".join(f"datacenter {n} on {b}" for n, b in simulated_datacenters().items())
        self.stdout.write(f"  {options['nodes']} simulated nodes: {where}")
        self.stdout.write(f"  portal and worker on {settings.STOMP_BROKERS}")
        self.stdout.write(
            "  new nodes are auto-accepted by the demo's enrolment token"
            f" (SWITCHBOARD_AUTO_ACCEPT={os.environ.get('SWITCHBOARD_AUTO_ACCEPT', '')});"
            f" others wait at {url}enrolment/"
        )
        self.stdout.write(f"  logs in {sup.log_dir}")
        self.stdout.write("  demo logins:")
        for login in logins:
            self.stdout.write(f"    {login.username:<8} {login.password:<16} ({login.role})")
        self.stdout.write("  Ctrl-C stops everything.")
