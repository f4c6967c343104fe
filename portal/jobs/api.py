"""The JSON API for scripts: submit a job, read its state and replies."""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
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


class JobRequestSerializer(serializers.Serializer):
    """``{"agent", "action", "inputs", "filter"}``; the filter is a compound expression."""

    agent = serializers.CharField(max_length=64)
    action = serializers.CharField(max_length=64)
    inputs = serializers.DictField(required=False, default=dict)
    filter = serializers.CharField(required=False, allow_blank=True, default="", max_length=4096)
    options = serializers.DictField(required=False, default=dict)
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)


class JobListAPI(APIView):
    def get(self, request: Request) -> Response:
        jobs = Job.objects.visible_to(request.user)[:100]
        return Response({"results": [job_summary(job) for job in jobs]})

    def post(self, request: Request) -> Response:
        payload = JobRequestSerializer(data=request.data)
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
        return Response(job_summary(cancel_job(job, request.user)), status=status.HTTP_202_ACCEPTED)


class JobDetailAPI(APIView):
    def get(self, request: Request, job_id: int) -> Response:
        job = get_object_or_404(Job.objects.visible_to(request.user), pk=job_id)
        data = job_snapshot(job)
        data["summaries"] = summarize(job) if job.is_finished else []
        return Response(data)
