"""The JSON API for scripts: submit a job, read its state and replies."""

from __future__ import annotations

import codecs
from typing import IO, Any

from django.shortcuts import get_object_or_404
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser, get_encoding
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils import json
from rest_framework.views import APIView

from agents.filters import FilterSyntaxError
from portal.jobs.catalog import JobForbidden, JobRequestError
from portal.jobs.forms import JobFormData
from portal.jobs.listing import (
    API_PAGE_SIZE,
    JobListQuery,
    ListFilterError,
    keyset_page,
    matching_jobs,
)
from portal.jobs.models import Job
from portal.jobs.plans import plan_job, planned_nodes
from portal.jobs.presenters import job_snapshot, job_summary
from portal.jobs.services import cancel_job, submit_job
from portal.jobs.summaries import summarize
from portal.jobs.validation import parse_filter_text
from portal.rbac.policy import CANCEL_REFUSED, may_cancel

# Longer integers than any field takes; Python itself stops reading at 4,300 digits.
MAX_JSON_INT_DIGITS = 100


def _read_int(digits: str) -> int:
    """``json``'s integer hook, refusing a number before ``int()`` spends time on its digits."""
    count = len(digits.lstrip("-"))
    if count > MAX_JSON_INT_DIGITS:
        raise ValueError(
            f"a number of {count} digits; numbers of more than {MAX_JSON_INT_DIGITS} digits"
            " are refused"
        )
    return int(digits)


class JobRequestParser(JSONParser):
    """DRF's JSON parser, with what Python's ``json`` cannot read answered as a ``ParseError``.

    Too deep a nesting raises ``RecursionError`` in ``json`` (not a ``ValueError``, which DRF
    would turn into a 400) and a 5,000-digit number a ``ValueError`` whose advice is for Python
    programmers: both become a reason the client can act on.
    """

    def parse(
        self, stream: IO[bytes], media_type: str | None = None, parser_context: Any = None
    ) -> Any:
        encoding = get_encoding(parser_context or {})
        parse_constant = json.strict_constant if self.strict else None
        try:
            return json.load(
                codecs.getreader(encoding)(stream),
                parse_constant=parse_constant,
                parse_int=_read_int,
            )
        except RecursionError:
            raise ParseError(
                "JSON parse error - the request is nested too deeply to read; inputs and"
                " options take flat values"
            ) from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc


class JobRequestSerializer(serializers.Serializer):
    """``{"agent", "action", "inputs", "filter"}``; the filter is a compound expression."""

    agent = serializers.CharField(max_length=64)
    action = serializers.CharField(max_length=64)
    inputs = serializers.DictField(required=False, default=dict)
    filter = serializers.CharField(required=False, allow_blank=True, default="", max_length=4096)
    options = serializers.DictField(required=False, default=dict)
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)


class JobListAPI(APIView):
    parser_classes = [JobRequestParser, FormParser, MultiPartParser]

    def get(self, request: Request) -> Response:
        """The jobs the caller may see, newest first, filtered as the jobs page is (``mine``,
        ``role``, ``status``, ``agent``, ``action``, ``requester``, ``q``, ``since``,
        ``until``), ``limit`` a page (100 unless asked, at most 200). ``next`` is the URL of
        the older page (null on the last), ``previous`` of the newer one. A bad parameter is
        a 400 ``{"errors": {parameter: message}}``."""
        try:
            query = JobListQuery.from_params(
                request.query_params, request.user,
                default_limit=API_PAGE_SIZE, limit_allowed=True,
            )  # fmt: skip
        except ListFilterError as exc:
            return Response({"errors": exc.errors}, status=status.HTTP_400_BAD_REQUEST)
        jobs = matching_jobs(request.user, query).select_related(
            "created_by", "cancelled_by", "approval__decided_by"
        )
        page = keyset_page(jobs, query)

        def link(**cursor: int | None) -> str | None:
            if all(value is None for value in cursor.values()):
                return None
            with_limit = query.limit != API_PAGE_SIZE
            return request.build_absolute_uri(
                request.path + query.query_string(with_limit=with_limit, **cursor)
            )

        return Response(
            {
                "results": [job_summary(job) for job in page.jobs],
                "next": link(after=page.older),
                "previous": link(before=page.newer),
            }
        )

    def post(self, request: Request) -> Response:
        try:
            data = request.data
        except ParseError as exc:
            # In the shape of every other refusal here, not DRF's {"detail": ...}.
            return Response({"errors": {"json": str(exc.detail)}}, status=exc.status_code)
        payload = JobRequestSerializer(data=data)
        if not payload.is_valid():
            errors = {field: " ".join(map(str, msgs)) for field, msgs in payload.errors.items()}
            return Response({"errors": errors}, status=status.HTTP_400_BAD_REQUEST)
        fields: dict[str, Any] = payload.validated_data
        try:
            job = submit_job(
                user=request.user,
                agent=fields["agent"],
                action=fields["action"],
                inputs=fields["inputs"],
                filter=parse_filter_text(fields["filter"]),
                filter_text=fields["filter"],
                source=Job.Source.API,
                options=fields["options"],
                reason=fields["reason"],
                request=request._request,
            )
        except JobForbidden as exc:
            return Response({"errors": exc.errors}, status=status.HTTP_403_FORBIDDEN)
        except JobRequestError as exc:
            return Response({"errors": exc.errors}, status=status.HTTP_400_BAD_REQUEST)
        return Response(job_snapshot(job), status=status.HTTP_201_CREATED)


class JobPlanAPI(APIView):
    """``GET ?agent_action=&filter=&option:<name>=``: the plan the form would submit, for the
    form's live count: the nodes after the scope, the collective and the limit, and what the
    confirmation will ask. Inputs are not checked (the operator is still typing them), and
    a refusal here is not recorded: nothing was asked to run."""

    def get(self, request: Request) -> Response:
        form = JobFormData.from_post(request.query_params)
        try:
            job_filter = parse_filter_text(form.filter_text)
            plan = plan_job(
                request.user, form.agent, form.action, job_filter,
                filter_text=form.filter_text, inputs=None, options=form.options,
                record_refusals=False,
            )  # fmt: skip
        except JobForbidden as exc:
            return Response({"error": _first(exc.errors), "errors": exc.errors}, status=403)
        except JobRequestError as exc:
            body: dict[str, Any] = {"error": _first(exc.errors), "errors": exc.errors}
            if isinstance(exc.__cause__, FilterSyntaxError) and exc.__cause__.column:
                body["column"] = exc.__cause__.column
            return Response(body, status=status.HTTP_400_BAD_REQUEST)
        nodes = planned_nodes(plan)
        return Response({**plan.describe(), "nodes": nodes})


def _first(errors: dict[str, str]) -> str:
    return "; ".join(f"{field}: {message}" for field, message in errors.items())


class JobCancelAPI(APIView):
    def post(self, request: Request, job_id: int) -> Response:
        """Stop the job: 202 with its state while a running job stops (within a second),
        200 once it ended (a queued job cancelled, a job withdrawn before approval), 409 for
        a job that had already ended."""
        job = get_object_or_404(Job.objects.visible_to(request.user), pk=job_id)
        if not may_cancel(request.user, job):
            return Response({"errors": {"job": CANCEL_REFUSED}}, status=status.HTTP_403_FORBIDDEN)
        if job.is_finished:
            return Response(
                {"errors": {"job": f"job {job.pk} has already ended ({job.status})"}},
                status=status.HTTP_409_CONFLICT,
            )
        stopped = cancel_job(job, request.user, request=request._request)
        code = status.HTTP_200_OK if stopped.is_finished else status.HTTP_202_ACCEPTED
        return Response(job_summary(stopped), status=code)


class JobDetailAPI(APIView):
    def get(self, request: Request, job_id: int) -> Response:
        job = get_object_or_404(Job.objects.visible_to(request.user), pk=job_id)
        data = job_snapshot(job)
        data["summaries"] = summarize(job) if job.is_finished else []
        return Response(data)
