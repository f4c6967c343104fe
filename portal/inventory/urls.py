from django.urls import path

from portal.inventory import api, views

app_name = "inventory"

urlpatterns = [
    path("", views.node_list, name="list"),
    path("<str:identity>/", views.node_detail, name="detail"),
]

# Outside /inventory/: an identity may be any host name, "enrolment" included.
enrolment_urlpatterns = [
    path("", views.enrolment, name="enrolment"),
    path("<str:identity>/<str:decision>/", views.enrolment_decide, name="enrolment-decide"),
]

api_urlpatterns = [
    path("inventory/preview/", api.InventoryPreviewAPI.as_view(), name="inventory-preview"),
    path("inventory/facts/", api.FactNamesAPI.as_view(), name="inventory-facts"),
    path("inventory/values/", api.SeenValuesAPI.as_view(), name="inventory-values"),
    path("inventory/fact-choices/", api.FactChoicesAPI.as_view(), name="inventory-fact-choices"),
    path("enrolment/", api.EnrolmentListAPI.as_view(), name="enrolment"),
    path(
        "enrolment/<str:identity>/<str:decision>/",
        api.EnrolmentDecisionAPI.as_view(),
        name="enrolment-decide",
    ),
]
