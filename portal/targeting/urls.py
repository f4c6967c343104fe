"""The saved filters' API, under ``/api/`` (``portal/urls.py``)."""

from django.urls import path

from portal.targeting import api

app_name = "targeting"

urlpatterns = [
    path("saved-filters/", api.SavedFilterListAPI.as_view(), name="saved-filters"),
    path("saved-filters/<int:filter_id>/", api.SavedFilterDetailAPI.as_view(), name="saved-filter"),
]
