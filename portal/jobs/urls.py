from django.urls import path

from portal.jobs import api, views

app_name = "jobs"

urlpatterns = [
    path("", views.job_list, name="list"),
    path("jobs/new/", views.job_new, name="new"),
    path("jobs/<int:job_id>/", views.job_detail, name="detail"),
    path("jobs/<int:job_id>/cancel/", views.job_cancel, name="cancel"),
    path("jobs/<int:job_id>/decide/", views.job_decide, name="decide"),
    path("approvals/", views.approval_list, name="approvals"),
]

api_urlpatterns = [
    path("jobs/", api.JobListAPI.as_view(), name="api-jobs"),
    path("jobs/plan/", api.JobPlanAPI.as_view(), name="api-job-plan"),
    path("jobs/<int:job_id>/", api.JobDetailAPI.as_view(), name="api-job"),
    path("jobs/<int:job_id>/cancel/", api.JobCancelAPI.as_view(), name="api-job-cancel"),
]
