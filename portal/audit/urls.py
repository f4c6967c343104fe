from django.urls import path

from portal.audit import views

app_name = "audit"

# The history of one job and of one node join the replies: ``portal.jobs.history`` serves them
# and ``portal/urls.py`` files them in this namespace as ``audit:job`` and ``audit:node``.

urlpatterns = [
    path("", views.timeline, name="timeline"),
    path("events/<int:event_id>/", views.event_detail, name="event"),
    path("charts/", views.chart_page, name="charts"),
    path("export.<str:fmt>", views.export, name="export"),
]
