from django.urls import path

from portal.audit import views

app_name = "audit"

urlpatterns = [
    path("", views.timeline, name="timeline"),
    path("events/<int:event_id>/", views.event_detail, name="event"),
    path("jobs/<int:job_id>/", views.job_history, name="job"),
    path("nodes/<str:identity>/", views.node_history, name="node"),
    path("charts/", views.chart_page, name="charts"),
    path("export.<str:fmt>", views.export, name="export"),
]
