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

from portal.jobs.models import Job
from portal.jobs.services import (
    JobForbidden,
    JobRequestError,
    cancel_job,
    job_snapshot,
    job_summary,
    parse_filter_text,
    submit_job,
)
from portal.jobs.summaries import summarize
from portal.rbac.policy import may_cancel

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
        jobs = Job.objects.visible_to(request.user)[:100]
        return Response({"results": [job_summary(job) for job in jobs]})

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


class JobCancelAPI(APIView):
    def post(self, request: Request, job_id: int) -> Response:
        """Ask the job to stop; 202 with its state (it may take a second to stop)."""
        job = get_object_or_404(Job.objects.visible_to(request.user), pk=job_id)
        if not may_cancel(request.user, job):
            return Response(
                {"errors": {"job": "only the job's requester or an admin may cancel it"}},
                status=status.HTTP_403_FORBIDDEN,
            )
        cancelled = cancel_job(job, request.user, request=request._request)
        return Response(job_summary(cancelled), status=status.HTTP_202_ACCEPTED)


class JobDetailAPI(APIView):
    def get(self, request: Request, job_id: int) -> Response:
        job = get_object_or_404(Job.objects.visible_to(request.user), pk=job_id)
        data = job_snapshot(job)
        data["summaries"] = summarize(job) if job.is_finished else []
        return Response(data)
