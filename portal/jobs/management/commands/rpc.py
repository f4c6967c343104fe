"""``manage.py rpc AGENT ACTION [key=value ...]``: run an action like ``mco rpc``.

The job goes through ``submit_job`` like a web or API job, then runs in this process (as ``mco``
does), printing replies as they arrive and a summary at the end.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.accounts.services import operator_for_command
from portal.jobs import runner
from portal.jobs.catalog import JobRequestError
from portal.jobs.models import Job, NodeReply
from portal.jobs.presenters import job_counts, job_snapshot
from portal.jobs.services import submit_job
from portal.jobs.summaries import summarize
from portal.jobs.validation import build_filter


def parse_inputs(pairs: Sequence[str]) -> dict[str, str]:
    """``key=value`` words into a dict; the DDL types and validates the values."""
    inputs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CommandError(f"input {pair!r} is not key=value")
        inputs[key] = value
    return inputs


class Command(BaseCommand):
    help = "Run AGENT ACTION on the nodes the filter matches, like 'mco rpc'."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent")
        parser.add_argument("action")
        parser.add_argument("inputs", nargs="*", metavar="key=value")
        parser.add_argument("-F", "--wf", "--with-fact", dest="facts", action="append", default=[])
        parser.add_argument(
            "-C", "--wc", "--with-class", dest="classes", action="append", default=[]
        )
        parser.add_argument(
            "-I", "--wi", "--with-identity", dest="identities", action="append", default=[]
        )
        parser.add_argument(
            "-A", "--wa", "--with-agent", dest="agents", action="append", default=[]
        )
        parser.add_argument("-S", "--select", dest="compound", default="")
        parser.add_argument("--dm", "--discovery-method", dest="discovery", default="")
        parser.add_argument("--batch", dest="batch_size", default="", help="nodes per batch")
        parser.add_argument("--batch-sleep", dest="batch_sleep", default="", help="seconds")
        parser.add_argument("--limit", "--limit-nodes", dest="limit", default="", help="N or N%%")
        parser.add_argument("--limit-seed", dest="limit_seed", default="")
        parser.add_argument("--ttl", dest="ttl", default="", help="request TTL in seconds")
        parser.add_argument(
            "-T", "--target", dest="collective", default="", help="send in this sub-collective"
        )
        parser.add_argument("--user", default="admin", help="the operator the job runs as")
        parser.add_argument("--reason", default="", help="why: a reason or ticket reference")
        parser.add_argument("--json", action="store_true", help="print one JSON object at the end")

    def handle(self, *args: Any, **options: Any) -> None:
        user = operator_for_command(options["user"])
        filter_words = [
            *options["facts"],
            *(f"class:{c}" for c in options["classes"]),
            *(f"identity:{i}" for i in options["identities"]),
            *(f"agent:{a}" for a in options["agents"]),
            options["compound"],
        ]
        try:
            job_filter = build_filter(
                options["compound"],
                facts=options["facts"],
                classes=options["classes"],
                identities=options["identities"],
                agents=options["agents"],
            )
            job = submit_job(
                user=user,
                agent=options["agent"],
                action=options["action"],
                inputs=parse_inputs(options["inputs"]),
                filter=job_filter,
                filter_text=" ".join(w for w in filter_words if w),
                source=Job.Source.CLI,
                options={
                    name: options[name]
                    for name in (
                        "discovery",
                        "batch_size",
                        "batch_sleep",
                        "limit",
                        "limit_seed",
                        "ttl",
                        "collective",
                    )
                    if options[name] != ""
                },
                dispatch=False,
                reason=options["reason"],
            )
        except JobRequestError as exc:
            raise CommandError(str(exc)) from exc
        if job.status == Job.Status.PENDING_APPROVAL:
            # A worker runs it once approved; nothing is sent from here.
            self.stdout.write(f"Job {job.pk} waits for approval: {job.approval.reason}")
            return

        as_json = options["json"]
        on_progress = None if as_json else self._print_replies
        runner.run_job(job.pk, on_progress=on_progress)
        job.refresh_from_db()
        if as_json:
            self._print_json(job)
        else:
            self._print_summary(job)
        if job.status == Job.Status.FAILED:
            sys.exit(1)

    def _print_replies(self, job: Job, replies: Sequence[NodeReply]) -> None:
        for reply in replies:
            status = "OK" if reply.ok else f"FAILED ({reply.statuscode}: {reply.statusmsg})"
            data = json.dumps(reply.data, sort_keys=True)
            self.stdout.write(f"{reply.identity:<32} {status:<10} {data}")

    def _print_summary(self, job: Job) -> None:
        counts = job_counts(job)
        self.stdout.write("")
        self.stdout.write(f"Job {job.pk} {job.status}: {job.agent} {job.action}")
        self.stdout.write(
            f"  discovered {counts['expected']}, replied {counts['replied']}, ok {counts['ok']},"
            f" failed {counts['failed']}, no response {counts['no_response']},"
            f" not sent {counts['not_sent']}"
        )
        if job.error:
            self.stderr.write(f"  {job.error}")
        if job.no_response:
            self.stdout.write("  No response from: " + " ".join(job.no_response))
        if job.not_sent:
            self.stdout.write("  Not sent to: " + " ".join(job.not_sent))
        for summary in summarize(job):
            self._print_aggregate(summary)

    def _print_aggregate(self, summary: dict[str, Any]) -> None:
        """One DDL aggregate, as ``mco`` prints its summary block."""
        self.stdout.write("")
        if "values" in summary:
            self.stdout.write(f"Summary of {summary['display_as']}:")
            shown = [
                (v["value"] if isinstance(v["value"], str) else json.dumps(v["value"]), v["count"])
                for v in summary["values"]
            ]
            width = max((len(text) for text, _ in shown), default=0)
            for text, count in shown:
                self.stdout.write(f"   {text:>{width}} = {count}")
        else:
            label = "Average" if summary["function"] == "average" else "Sum"
            value = "n/a" if summary["value"] is None else f"{summary['value']:g}"
            self.stdout.write(
                f"{label} of {summary['display_as']}: {value} ({summary['count']} nodes)"
            )

    def _print_json(self, job: Job) -> None:
        snapshot = job_snapshot(job)
        self.stdout.write(
            json.dumps(
                {
                    "job": job.pk,
                    "status": job.status,
                    "error": job.error,
                    "discovered": job.discovered_count,
                    "replies": snapshot["replies"],
                    "no_response": job.no_response,
                    "not_sent": job.not_sent,
                    "summaries": summarize(job),
                }
            )
        )
        if job.error:
            self.stderr.write(job.error)
